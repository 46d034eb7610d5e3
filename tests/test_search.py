"""Head auto-search: the same winner whatever the executor, failures reported, and selection that
never reads test labels."""
import dataclasses

import numpy as np
import pytest

from tinysml import search as S
from tinysml.data import WindowSet
from tinysml.distill import pipeline

SPACE = {"linear": {"dropout": [0.0, 0.3]}, "mlp": {"hidden": [16]},
         "hopfield": {"patterns": [8, 2], "dim": [8]}}          # patterns=2 < 4 classes: must fail


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 12)) * 2
    y = rng.integers(0, 4, 200)
    h = (centers[y] + rng.standard_normal((200, 12))).astype(np.float32)
    return h[:150], y[:150], h[150:], y[150:]


def _run(features, executor):
    return S.search(S.candidates(SPACE), *features, num_classes=4, executor=executor, epochs=6, seed=1, log=lambda m: None)


def test_grid_and_sample():
    grid = S.candidates(SPACE)
    assert len(grid) == 5 and grid[0] == {"kind": "linear", "dropout": 0.0}
    assert S.sample(SPACE, 3, seed=0) == S.sample(SPACE, 3, seed=0) and len(S.sample(SPACE, 3)) == 3


def test_same_winner_inline_one_and_two_processes_and_dask(features):
    boards = {"inline": _run(features, "inline")}
    with S.default_executor(1) as ex:
        boards["1 process"] = _run(features, ex)
    with S.default_executor(2) as ex:
        boards["2 processes"] = _run(features, ex)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster, distributed.Client(cluster) as client:
        boards["dask LocalCluster"] = _run(features, client.get_executor())
    ref = boards["inline"]
    for name, board in boards.items():
        assert board.winner["spec"] == ref.winner["spec"], name
        assert [r["spec"] for r in board.rows] == [r["spec"] for r in ref.rows], name
        assert [r["macro_f1"] for r in board.rows] == [r["macro_f1"] for r in ref.rows], name


def test_failing_candidate_is_listed_and_the_search_goes_on(features, tmp_path):
    board = _run(features, "inline")
    failed = [r for r in board.rows if r["error"]]
    assert len(failed) == 1 and failed[0]["spec"]["patterns"] == 2 and "at least as many patterns" in failed[0]["error"]
    assert board.rows[-1] is failed[0] and board.winner["error"] is None and board.winner["macro_f1"] > 0.8
    board.save(str(tmp_path / "lb"))
    assert "at least as many patterns" in (tmp_path / "lb.md").read_text()
    assert (tmp_path / "lb.csv").read_text().count("\n") == 6


def test_selection_never_reads_test_labels(tmp_path, monkeypatch):
    """The whole SMLDist run with search, twice: the second time with the test labels scrambled.
    Everything selected (the searched head, the validation scores) must be identical."""
    from tinysml.data import load as real_load
    cfg = pipeline.SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=2,
                                 student_epochs=2, stage_epochs=1, search=True, search_epochs=3,
                                 search_space={"linear": {"dropout": [0.0]}, "mlp": {"hidden": [16, 32]}})
    first = pipeline.run(cfg, str(tmp_path / "a"), quiet=True, executor="inline")

    def scrambled(name, path=None):
        d = real_load(name, path)
        y = np.random.default_rng(9).permutation(d.test.y)
        return dataclasses.replace(d, test=WindowSet(d.test.X, (y + 1) % d.num_classes, d.test.subjects))

    monkeypatch.setattr(pipeline, "load", scrambled)
    second = pipeline.run(cfg, str(tmp_path / "b"), quiet=True, executor="inline")
    assert first["search"] == second["search"]
    assert first["student"]["val"] == second["student"]["val"] and first["student"]["best_epoch"] == second["student"]["best_epoch"]
    assert first["student"]["test"] != second["student"]["test"]          # the scrambling did reach the test set
