"""CUDA graphs on a GPU (skipped, with the reason, where there is none): training with the step replayed
as a graph ends where eager training ends, for the teacher's recipe, every distillation method and
the stage phase; dropout draws the same masks; an optimiser state that moves is re-captured; the
eval forward and precise BN's pass replayed equal the eager ones. ``bash bench/gpu_check.sh`` runs this file."""
import os

import numpy as np
import pytest

from helpers import cupy_or_skip
from tinysml import cuda_graph as G

TOL = dict(rtol=2e-4, atol=2e-5)      # float32 weights after a few dozen steps; most cases are bitwise


_gpu = cupy_or_skip


def _data(n=96, C=6, L=128, K=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    X = rng.standard_normal((n, C, L)).astype(np.float32) + y[:, None, None].astype(np.float32) * 0.3
    return X, y


def _fit(graph, head, preset_name="har-student", epochs=3, **config):
    from tinysml.models import build_model, preset
    from tinysml.train import TrainConfig, fit
    X, y = _data()
    model = build_model(preset(preset_name, 6, 128, 4, head=head), seed=0).to("cuda")
    before = dict(G.stats)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=2e-3, seed=0, precise_bn=True, **config)
    result = fit(model, (X[:80], y[:80]), (X[80:], y[80:]), cfg, progress=False, cuda_graph=graph)
    made = {k: G.stats[k] - before.get(k, 0) for k in ("captures", "replays", "fallbacks")}
    return model, result, made


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    worst = max(float(np.abs(sa[k].get() - sb[k].get()).max()) for k in sa)
    for k in sa:
        np.testing.assert_allclose(sa[k].get(), sb[k].get(), **TOL, err_msg=k)
    return worst


@pytest.mark.parametrize("preset_name,head,config", [
    ("har-student", {"kind": "linear"}, {}),
    ("har-teacher", {"kind": "linear"}, {"label_smoothing": 0.1, "augment_jitter": 0.05, "augment_scale": 0.1}),
    ("har-student", {"kind": "mlp", "hidden": 32, "dropout": 0.3}, {}),          # dropout: eager (train.TrainStep)
    ("har-student", {"kind": "mixture", "heads": [{"kind": "hopfield", "patterns": 8, "dim": 16},
                                                  {"kind": "linear"}]}, {}),
])
def test_fit_with_graphs_ends_where_eager_fit_ends(preset_name, head, config):
    _gpu()
    eager, r_eager, made_eager = _fit(False, head, preset_name, **config)
    graphed, r_graph, made = _fit(True, head, preset_name, **config)
    assert made_eager["captures"] == 0
    if head.get("dropout"):                     # steps with an active dropout layer are not captured
        assert made["captures"] == 0 and made["replays"] == 0, made
    else:
        assert made["fallbacks"] == 0 and made["captures"] >= 1 and made["replays"] >= 6, made
    worst = _assert_same_weights(eager, graphed)
    print(f"{preset_name} {head['kind']}: max |weight difference| {worst:.2e}")
    for a, b in zip(r_eager.history, r_graph.history):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, abs(a["loss"])) and a["lr"] == b["lr"]


@pytest.mark.parametrize("variant", ["student alone", "KD (Hinton)", "FitNets", "AT", "SMLDist",
                                     "SMLDist, direct logits loss [ours]"])
def test_every_method_and_the_stage_phase_agree_with_eager(variant, tmp_path, monkeypatch):
    _gpu()
    from tinysml import io
    from tinysml.compare import VARIANTS
    from tinysml.distill.pipeline import SMLDistConfig, run
    base = SMLDistConfig(dataset="basicmotions", device="cuda", teacher_epochs=3, student_epochs=3, stage_epochs=2,
                         batch_size=8, min_steps_per_epoch=6, seed=0, **VARIANTS[variant])
    teacher_dir = tmp_path / "teacher"
    run(SMLDistConfig(**{**base.__dict__, "method": "none", "student_epochs": 0}), str(teacher_dir), quiet=True)
    students = {}
    for graph in ("0", "1"):
        monkeypatch.setenv("TINYSML_CUDA_GRAPHS", graph)
        before = dict(G.stats)
        r = run(base, str(tmp_path / f"graph{graph}"), teacher_checkpoint=str(teacher_dir / "teacher.npz"), quiet=True)
        made = {k: G.stats[k] - before.get(k, 0) for k in ("captures", "replays", "fallbacks")}
        if graph == "1":
            assert made["fallbacks"] == 0 and made["captures"] >= 1 and made["replays"] >= 1, made
        students[graph] = (io.load_model(str(tmp_path / f"graph{graph}" / "student.npz"))[0], r)
    (a, ra), (b, rb) = students["0"], students["1"]
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(v, b.state_dict()[k], **TOL, err_msg=k)
    assert ra["student"]["test"] == rb["student"]["test"]


def test_a_loaded_optimiser_state_is_captured_again_not_replayed_stale():
    _gpu()
    import cupy as cp
    from tinysml.functions import cross_entropy
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.train import TrainStep
    X, y = _data(32)
    model = build_model(preset("har-student", 6, 128, 4), seed=0).to("cuda")
    opt = AdamW(model.parameters(), lr=1e-3)
    step = TrainStep(model, lambda m, x, y: cross_entropy(m(x), y), opt, graph=True, batch_size=16)
    for i in range(4):
        step(X[:16], y[:16])
    assert step.graphed.captures == 1 and opt.steps == 4
    opt.load_state_dict(opt.state_dict())                # new state arrays at new addresses
    step(X[:16], y[:16])
    assert step.graphed.captures == 2 and opt.steps == 5
    assert int(opt._device["t"].get()[0]) == 5
    opt.lr = 5e-4                                          # a schedule's change reaches the replayed kernels
    step(X[:16], y[:16])
    assert float(opt._device["lr"].get()[0]) == 5e-4 and step.graphed.captures == 2
    assert np.isfinite(step.epoch_loss())
    cp.cuda.Device().synchronize()


def test_the_replayed_eval_forward_equals_the_eager_one():
    _gpu()
    from tinysml.models import build_model, preset
    from tinysml.train import predict_batched
    X, _ = _data(80)
    model = build_model(preset("har-teacher", 6, 128, 4), seed=0).to("cuda")
    eager = predict_batched(model, X, batch_size=16, cuda_graph=False)
    before = G.stats["replays"]
    graphed = [predict_batched(model, X, batch_size=16, cuda_graph=True) for _ in range(2)]
    assert G.stats["replays"] > before
    np.testing.assert_array_equal(eager, graphed[0])
    np.testing.assert_array_equal(eager, graphed[1])


def test_precise_bn_replayed_on_the_gpu_gives_the_eager_statistics():
    """train.recalibrate_batchnorm's graph: the momentum read from a device scalar (a number would be
    frozen into the graph at its first value), captured once for two passes, the statistics bit for
    bit those of the eager pass; and CuPy rounds an array momentum as it rounds the number."""
    _gpu()
    import cupy as cp
    from tinysml import functions as F
    from tinysml.models import build_model, preset
    from tinysml.tensor import Tensor
    from tinysml.train import recalibrate_batchnorm
    X, _ = _data(7 * 16 + 5)
    eager, graphed = (build_model(preset("har-student", 6, 128, 4), seed=0).to("cuda") for _ in range(2))
    before = dict(G.stats)
    for _ in range(2):
        recalibrate_batchnorm(eager, X, batch_size=16, cuda_graph=False)
        recalibrate_batchnorm(graphed, X, batch_size=16, cuda_graph=True)
    made = {k: G.stats[k] - before.get(k, 0) for k in ("captures", "replays", "fallbacks")}
    assert made == {"captures": 1, "replays": 12, "fallbacks": 0}, made
    a, b = eager.state_dict(), graphed.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].get(), b[k].get(), err_msg=k)
    x = cp.asarray(X[:16])
    gamma, beta = Tensor(cp.ones(6, cp.float32)), Tensor(cp.zeros(6, cp.float32))
    for k in range(1, 30):
        stats = [[cp.full(6, 0.3, cp.float32), cp.full(6, 1.7, cp.float32)] for _ in range(2)]
        F.batch_norm(Tensor(x), gamma, beta, *stats[0], momentum=1.0 / (k + 1))
        F.batch_norm(Tensor(x), gamma, beta, *stats[1], momentum=cp.asarray(1.0 / (k + 1)))
        for u, v in zip(*stats):
            np.testing.assert_array_equal(u.get(), v.get())


def test_graphs_can_be_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("TINYSML_CUDA_GRAPHS", "0")
    assert not G.enabled_by_default()
    monkeypatch.delenv("TINYSML_CUDA_GRAPHS")
    assert G.enabled_by_default()
    assert os.environ.get("TINYSML_CUDA_GRAPHS") is None
