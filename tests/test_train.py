"""The training loop: learning, best-epoch selection, SIGKILL + resume, refusing a foreign checkpoint."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tinysml import io
from tinysml.models import build_model, preset
from tinysml.train import TrainConfig, evaluate, fit

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")


def _run_worker(out, kill_at):
    env = dict(os.environ, TINYSML_BACKEND="numpy")
    return subprocess.run([sys.executable, WORKER, str(out), str(kill_at)], env=env, capture_output=True, text=True)


def test_killed_and_resumed_run_ends_with_identical_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run_worker(straight, -1).returncode == 0
    first = _run_worker(killed, 10)                      # 4 steps per epoch: dies inside epoch 3
    assert first.returncode == -9, first.stderr
    assert (killed / "train.npz").exists() and not (killed / "final.npz").exists()
    assert io.load(killed / "train.npz")["epoch"] == 1   # epochs 0 and 1 were checkpointed
    second = _run_worker(killed, -1)
    assert second.returncode == 0, second.stderr
    a, b = io.load(straight / "final.npz")["state"], io.load(killed / "final.npz")["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def _toy(seed=0, n=48):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 3, 32)).astype(np.float32) * 0.3
    X[np.arange(n), y, :] += np.sin(np.linspace(0, 6, 32)) * 2     # class k lights up channel k
    return X, y


def test_fit_learns_and_keeps_the_best_epoch(tmp_path):
    (X, y), (Xv, yv) = _toy(0), _toy(1, 24)
    model = build_model(preset("har-student", 3, 32, 3))
    result = fit(model, (X, y), (Xv, yv), TrainConfig(epochs=15, batch_size=12, lr=5e-3), progress=False)
    assert len(result.history) == 15
    assert result.best_score == max(h["macro_f1"] for h in result.history)
    assert evaluate(model, Xv, yv)["macro_f1"] == pytest.approx(result.best_score)
    assert result.best_score > 0.9


def test_resume_with_another_config_is_refused(tmp_path):
    (X, y), (Xv, yv) = _toy(0), _toy(1, 24)
    ckpt = tmp_path / "t.npz"
    fit(build_model(preset("har-student", 3, 32, 3)), (X, y), (Xv, yv), TrainConfig(epochs=1), checkpoint=str(ckpt),
        progress=False)
    with pytest.raises(ValueError, match=r"train_config.lr: checkpoint 0.002 vs now 0.01"):
        fit(build_model(preset("har-student", 3, 32, 3)), (X, y), (Xv, yv), TrainConfig(epochs=2, lr=0.01),
            checkpoint=str(ckpt), progress=False)


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 34, 64, 95])
@pytest.mark.parametrize("shuffled", [True, False])
def test_the_progress_bar_counts_the_batches_that_run(n, shuffled):
    """92/92 then 93it was the bug: the bar's total must be what iterate_batches yields."""
    from tinysml.data.batches import count_batches, iterate_batches
    rng = np.random.default_rng(0) if shuffled else None
    X, y = np.zeros((n, 1, 2), np.float32), np.zeros(n, np.int64)
    assert count_batches(n, 32, shuffled) == len(list(iterate_batches(X, y, 32, rng)))
    assert count_batches(n, 32, shuffled, drop_last=True) == len(list(iterate_batches(X, y, 32, rng, drop_last=True)))


def test_a_checkpoint_from_before_a_config_field_existed_still_resumes(tmp_path):
    """A training checkpoint written before MobileNetConfig gained bn_eps (its fingerprint lacks the
    key) resumes: a field added later counts as its default. Another value is still refused."""
    from tinysml.train import _refuse_mismatch
    cfg = build_model(preset("har-student", 6, 100, 4)).config.to_dict()
    old = {k: v for k, v in cfg.items() if k != "bn_eps"}
    identity = {"train_config": {"epochs": 1}, "fingerprint": {"model": cfg}}
    _refuse_mismatch("c.npz", {"train_config": {"epochs": 1}, "fingerprint": {"model": old}}, identity)
    changed = {"train_config": {"epochs": 1}, "fingerprint": {"model": {**cfg, "bn_eps": 1e-3}}}
    with pytest.raises(ValueError, match="fingerprint.model"):
        _refuse_mismatch("c.npz", {"train_config": {"epochs": 1}, "fingerprint": {"model": old}}, changed)


def test_min_steps_makes_an_epoch_pass_over_small_data_again(tmp_path, monkeypatch):
    """A budget that does not starve small datasets: 20 windows at batch 8 are 3 steps a pass; with
    min_steps=10 every epoch runs 4 passes (12 steps), each pass shuffled afresh."""
    from tinysml import optim
    (X, y), (Xv, yv) = _toy(0, 20), _toy(1, 12)
    steps = []
    step = optim.AdamW.step
    monkeypatch.setattr(optim.AdamW, "step", lambda self: (steps.append(1), step(self))[1])
    fit(build_model(preset("har-student", 3, 32, 3)), (X, y), (Xv, yv), TrainConfig(epochs=2, batch_size=8),
        progress=False)
    assert len(steps) == 2 * 3
    steps.clear()
    fit(build_model(preset("har-student", 3, 32, 3)), (X, y), (Xv, yv), TrainConfig(epochs=2, batch_size=8, min_steps=10),
        progress=False)
    assert len(steps) == 2 * 12
    from tinysml.train import epoch_batches
    batches, n = epoch_batches(X, y, 8, np.random.default_rng(0), 10)
    order = np.concatenate([idx for _, _, idx in batches])
    assert n == 12 and len(order) == 80 and all(sorted(order[k * 20:(k + 1) * 20]) == list(range(20)) for k in range(4))
    assert not all((order[:20] == order[20 * k:20 * (k + 1)]).all() for k in range(1, 4))


def test_a_checkpoint_from_before_min_steps_existed_still_resumes(tmp_path):
    from tinysml.train import _refuse_mismatch
    from dataclasses import asdict
    now = asdict(TrainConfig(epochs=3))
    old = {k: v for k, v in now.items() if k != "min_steps"}
    _refuse_mismatch("c.npz", {"train_config": old, "fingerprint": {}}, {"train_config": now, "fingerprint": {}})
    with pytest.raises(ValueError, match="min_steps"):
        _refuse_mismatch("c.npz", {"train_config": old, "fingerprint": {}},
                         {"train_config": {**now, "min_steps": 50}, "fingerprint": {}})
