"""The head search piece by piece: one candidate's training against its documented recipe, the
ranking, the leaderboard's files, how `search` hands out jobs and which executor it owns, and the
grid and sampling of the space. (tests/test_search.py runs the whole search end to end.)"""
import csv

import numpy as np
import pytest

from tinysml import functions as F
from tinysml import search as S
from tinysml.metrics import macro_f1
from tinysml.models.heads import build_head
from tinysml.optim import AdamW
from tinysml.random import manual_seed
from tinysml.tensor import Tensor, no_grad


def _data(n_train=40, n_val=16, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 2
    y = rng.integers(0, classes, n_train + n_val)
    h = (centers[y] + rng.standard_normal((len(y), d))).astype(np.float32)
    return h[:n_train], y[:n_train], h[n_train:], y[n_train:]


def _job(**kw):
    h_train, y_train, h_val, y_val = _data()
    fields = dict(index=5, spec={"kind": "linear"}, h_train=h_train, y_train=y_train, h_val=h_val, y_val=y_val,
                  num_classes=3, epochs=2, lr=1e-2, batch_size=16, seed=3)
    fields.update(kw)
    return S.Job(**fields)


def _by_hand(job):
    """The recipe of train_candidate's docstring, written out: per epoch, (state, val macro-F1)."""
    head = build_head(job.spec, job.h_train.shape[1], job.num_classes, np.random.default_rng([job.seed, job.index]))
    opt = AdamW(head.parameters(), lr=job.lr, weight_decay=1e-2)
    out = []
    for epoch in range(job.epochs):
        order = manual_seed(job.seed, job.index, epoch).permutation(len(job.y_train))
        head.train()
        for batch in np.array_split(order, range(job.batch_size, len(order), job.batch_size)):
            idx = np.sort(batch)
            logits = head(Tensor(job.h_train[idx]))
            loss = F.cross_entropy(logits, job.y_train[idx])
            if job.soft_train is not None:
                loss = (1 - job.kd_weight) * loss + job.kd_weight * F.cross_entropy(logits, job.soft_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with no_grad():
            pred = head(Tensor(job.h_val)).data.argmax(axis=1)
        out.append(({k: v.copy() for k, v in head.state_dict().items()}, macro_f1(job.y_val, pred)))
    return out


def _assert_state(result, expected_state):
    assert result["state"].keys() == expected_state.keys()
    for k, v in expected_state.items():
        np.testing.assert_array_equal(result["state"][k], v, err_msg=k)


@pytest.mark.parametrize("soft", [False, True])
def test_a_candidate_trains_by_its_recipe(soft):
    """AdamW at the job's lr with weight decay 1e-2, batches in the (seed, index, epoch) order, CE or
    the (1 - w, w) mix with the teacher's probabilities; the last epoch's state (epochs=1, then each
    epoch of a two-epoch run compared by hand)."""
    extra = {}
    if soft:
        p = np.random.default_rng(1).dirichlet(np.ones(3), size=40).astype(np.float32)
        extra = dict(soft_train=p, kd_weight=0.3)
    for epochs in (1, 2):
        job = _job(epochs=epochs, **extra)
        hand = _by_hand(job)
        r = S.train_candidate(job)
        assert r["error"] is None, r["error"]
        scores = [f1 for _, f1 in hand]
        best = max(i for i, f1 in enumerate(scores) if f1 == max(scores))        # ties: the later epoch
        assert r["epoch"] == best + 1 and r["macro_f1"] == scores[best]
        _assert_state(r, hand[best][0])


def test_the_mix_with_soft_targets_is_the_documented_one():
    """The soft term changes the result, and kd_weight 0 is plain cross-entropy."""
    p = np.random.default_rng(1).dirichlet(np.ones(3), size=40).astype(np.float32)
    plain = S.train_candidate(_job(epochs=1))
    off = S.train_candidate(_job(epochs=1, soft_train=p, kd_weight=0.0))
    on = S.train_candidate(_job(epochs=1, soft_train=p, kd_weight=0.5))
    _assert_state(off, plain["state"])
    assert any(not np.array_equal(on["state"][k], plain["state"][k]) for k in plain["state"])


def test_equal_epochs_keep_the_later_one():
    """At lr 0 the head never changes, so every epoch scores the same: the last one is kept."""
    r = S.train_candidate(_job(epochs=3, lr=0.0))
    assert r["error"] is None and r["epoch"] == 3


def test_a_candidate_result_has_its_fields():
    import time
    t0 = time.perf_counter()
    r = S.train_candidate(_job(epochs=1))
    took = time.perf_counter() - t0
    head = build_head({"kind": "linear"}, 6, 3, np.random.default_rng(0))
    assert set(r) == {"index", "spec", "params", "error", "seconds", "macro_f1", "accuracy", "epoch", "state"}
    assert r["index"] == 5 and r["spec"] == {"kind": "linear"} and r["params"] == head.num_parameters()
    assert 0 < r["seconds"] <= took
    assert 0 <= r["accuracy"] <= 1


def test_a_head_that_scores_zero_is_a_result_not_a_failure():
    """Validation labels the head never predicts: macro-F1 0 is a score like any other."""
    h_train, y_train, _, _ = _data()
    y_train = np.zeros_like(y_train)
    job = _job(y_train=y_train, h_val=h_train[:16], y_val=np.full(16, 2), epochs=3, lr=0.01)
    r = S.train_candidate(job)
    assert r["error"] is None and r["macro_f1"] == 0.0 and r["accuracy"] == 0.0


def test_failures_are_reported_with_the_same_fields():
    ok = S.train_candidate(_job(epochs=1))
    bad = S.train_candidate(_job(spec={"kind": "no-such-head"}))
    assert set(bad) == set(ok)
    assert bad["error"].startswith("ValueError: unknown head kind 'no-such-head'")
    assert bad["params"] is bad["macro_f1"] is bad["accuracy"] is bad["epoch"] is bad["state"] is None
    assert bad["index"] == 5 and bad["spec"] == {"kind": "no-such-head"} and 0 < bad["seconds"] < 60


def test_zero_epochs_and_a_diverging_loss_are_failures():
    r = S.train_candidate(_job(epochs=0))
    assert r["error"] == "ValueError: a candidate needs at least one epoch, got epochs=0"
    h_train = _data()[0].copy()
    h_train[0, 0] = np.nan
    r = S.train_candidate(_job(h_train=h_train))
    assert r["error"].startswith("FloatingPointError: training diverged: loss nan in epoch 1")


# ---------------------------------------------------------------------------- ranking and files

def _row(index, f1, params, error=None, spec=None, seconds=1.25):
    return {"index": index, "spec": spec or {"kind": "linear", "dropout": 0.1 * index}, "params": params,
            "macro_f1": f1, "accuracy": None if f1 is None else f1 / 2, "epoch": 1, "state": None,
            "error": error, "seconds": seconds}


def _fake_search(rows, monkeypatch, **kw):
    """`search` with train_candidate replaced by the given results; returns (board, jobs, log lines)."""
    jobs, lines = [], []
    by_index = {r["index"]: r for r in rows}

    def fake(job):
        jobs.append(job)
        return by_index[job.index]

    monkeypatch.setattr(S, "train_candidate", fake)
    specs = [by_index[i]["spec"] for i in sorted(by_index)]
    h_train, y_train, h_val, y_val = _data()
    kw.setdefault("executor", "inline")
    board = S.search(specs, h_train, y_train, h_val, y_val, 3, log=lines.append, **kw)
    return board, jobs, lines


def test_ranking_by_score_then_fewer_parameters_then_order_and_failures_last(monkeypatch):
    rows = [_row(0, None, None, error="ValueError: x"), _row(1, 0.5, 30), _row(2, 0.7, 90),
            _row(3, 0.5, 20), _row(4, 0.5, 20), _row(5, 0.0, 10), _row(6, None, None, error="KeyError: y")]
    board, _, _ = _fake_search(rows, monkeypatch)
    assert [r["index"] for r in board.rows] == [2, 3, 4, 1, 5, 0, 6]
    assert board.winner["index"] == 2


def test_the_winner_of_an_all_failed_search_is_an_error_naming_each(monkeypatch):
    rows = [_row(0, None, None, error="ValueError: x"), _row(1, None, None, error="KeyError: y")]
    board, _, _ = _fake_search(rows, monkeypatch)
    with pytest.raises(RuntimeError, match="every candidate failed") as err:
        board.winner
    assert "ValueError: x" in str(err.value) and "KeyError: y" in str(err.value)


def test_the_log_names_each_candidate_as_it_finishes(monkeypatch):
    rows = [_row(0, 0.5, 30, spec={"kind": "mlp", "hidden": 16}), _row(1, None, None, error="ValueError: x")]
    _, _, lines = _fake_search(rows, monkeypatch)
    assert lines == ["[search] 1/2 kind=mlp, hidden=16: val macro-F1 0.5000 (1.2 s)",
                     "[search] 2/2 kind=linear, dropout=0.1: FAILED ValueError: x (1.2 s)"]


def test_the_leaderboard_files(monkeypatch, tmp_path):
    rows = [_row(0, None, None, error="ValueError: x", seconds=0.12345),
            _row(1, 0.5, 30, spec={"kind": "mlp", "hidden": 16}, seconds=2.0)]
    board, _, _ = _fake_search(rows, monkeypatch)
    assert board.markdown() == (
        "| rank | head | val macro-F1 | val accuracy | params | seconds | error |\n"
        "|---|---|---|---|---|---|---|\n"
        "| 1 | `kind=mlp, hidden=16` | 0.5000 | 0.2500 | 30 | 2.0 |  |\n"
        "| 2 | `kind=linear, dropout=0.0` |  |  |  | 0.1 | ValueError: x |")
    board.save(str(tmp_path / "sub" / "lb"))
    assert (tmp_path / "sub" / "lb.md").read_text() == board.markdown() + "\n"
    with open(tmp_path / "sub" / "lb.csv", newline="") as f:
        assert list(csv.reader(f)) == [
            ["rank", "head", "val_macro_f1", "val_accuracy", "params", "seconds", "error"],
            ["1", "kind=mlp, hidden=16", "0.5", "0.25", "30", "2.0", ""],
            ["2", "kind=linear, dropout=0.0", "", "", "", "0.123", "ValueError: x"]]
    assert b"\r\n" in (tmp_path / "sub" / "lb.csv").read_bytes()           # the csv module's own line ends


# ---------------------------------------------------------------------------- jobs and executors

def test_each_job_gets_the_search_settings_and_the_defaults(monkeypatch):
    rows = [_row(0, 0.5, 30), _row(1, 0.6, 30)]
    soft = np.full((40, 3), 1 / 3, np.float32)
    _, jobs, _ = _fake_search(rows, monkeypatch, soft_train=soft, epochs=4, lr=0.5, seed=9)
    assert [j.index for j in jobs] == [0, 1] and [j.spec for j in jobs] == [r["spec"] for r in rows]
    for j in jobs:
        assert j.soft_train is soft and (j.epochs, j.lr, j.seed, j.num_classes) == (4, 0.5, 9, 3)
    _, jobs, _ = _fake_search(rows, monkeypatch)
    assert [(j.soft_train, j.epochs, j.lr, j.seed, j.kd_weight, j.batch_size) for j in jobs] == [(None, 30, 3e-3, 0, 0.5, 64)] * 2


class _RecordingExecutor:
    """A concurrent.futures.Executor that runs each job at once and records whether it was shut down."""
    def __init__(self):
        self.submitted, self.shut = 0, False

    def submit(self, fn, *args):
        import concurrent.futures as cf
        self.submitted += 1
        f = cf.Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True):
        self.shut = True


def test_which_executor_runs_the_jobs_and_who_shuts_it_down(monkeypatch):
    made = []

    def default(workers=None):
        made.append(_RecordingExecutor())
        return made[-1]

    monkeypatch.setattr(S, "default_executor", default)
    one, two = [_row(0, 0.5, 30)], [_row(0, 0.5, 30), _row(1, 0.6, 30)]
    _fake_search(one, monkeypatch, executor=None)                 # one job, no executor: this process
    assert made == []
    _fake_search(two, monkeypatch, executor="inline")
    assert made == []
    board, _, _ = _fake_search(two, monkeypatch, executor=None)     # a pool of its own, shut down after
    assert len(made) == 1 and made[0].submitted == 2 and made[0].shut and len(board.rows) == 2
    given = _RecordingExecutor()
    _fake_search(two, monkeypatch, executor=given)                # the caller's: used, left running
    assert given.submitted == 2 and not given.shut and len(made) == 1
    given = _RecordingExecutor()
    _fake_search(one, monkeypatch, executor=given)                # even for one job
    assert given.submitted == 1 and not given.shut


def test_the_default_executor_spawns_at_most_two_workers(monkeypatch):
    monkeypatch.setattr(S.os, "cpu_count", lambda: 8)
    with S.default_executor() as ex:
        assert ex._max_workers == 2 and ex._mp_context.get_start_method() == "spawn"
    with S.default_executor(3) as ex:
        assert ex._max_workers == 3
    monkeypatch.setattr(S.os, "cpu_count", lambda: None)             # unknown: one worker
    with S.default_executor() as ex:
        assert ex._max_workers == 1
    monkeypatch.setattr(S.os, "cpu_count", lambda: 1)
    with S.default_executor() as ex:
        assert ex._max_workers == 1


def test_a_dask_executor_without_dask_says_what_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError) as err:
        S.dask_executor("tcp://127.0.0.1:1")
    assert str(err.value) == "a dask scheduler needs dask.distributed: pip install 'tinysml[dask]'"


def test_a_dask_executor_is_the_executor_of_a_client_of_that_address(monkeypatch):
    import sys
    import types
    fake = types.ModuleType("dask.distributed")

    class Client:
        def __init__(self, address):
            self.address = address

        def get_executor(self):
            return ("executor of", self.address)

    fake.Client = Client
    monkeypatch.setitem(sys.modules, "dask", sys.modules.get("dask") or types.ModuleType("dask"))
    monkeypatch.setitem(sys.modules, "dask.distributed", fake)
    assert S.dask_executor("tcp://10.0.0.1:8786") == ("executor of", "tcp://10.0.0.1:8786")


# ---------------------------------------------------------------------------- the space

SPACE = {"linear": {"dropout": [0.0, 0.2]}, "mlp": {"hidden": [8, 16], "dropout": [0.0, 0.5]},
         "hopfield": {"patterns": [4], "dim": [8]}}


def test_the_grid_in_its_order():
    assert S.candidates(SPACE) == [
        {"kind": "linear", "dropout": 0.0}, {"kind": "linear", "dropout": 0.2},
        {"kind": "mlp", "hidden": 8, "dropout": 0.0}, {"kind": "mlp", "hidden": 8, "dropout": 0.5},
        {"kind": "mlp", "hidden": 16, "dropout": 0.0}, {"kind": "mlp", "hidden": 16, "dropout": 0.5},
        {"kind": "hopfield", "patterns": 4, "dim": 8}]


def test_a_sample_is_distinct_specs_of_the_grid_in_its_order():
    grid = S.candidates(SPACE)
    assert S.sample(SPACE, 7) == grid and S.sample(SPACE, 100) == grid
    draws = set()
    for seed in range(30):
        s = S.sample(SPACE, 6, seed=seed)
        positions = [grid.index(spec) for spec in s]
        assert len(s) == 6 and positions == sorted(set(positions)), seed
        draws.add(tuple(positions))
    assert len(draws) > 1                                               # the seed matters
    assert S.sample(SPACE, 3) == S.sample(SPACE, 3, seed=0)
