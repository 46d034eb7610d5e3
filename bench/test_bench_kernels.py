"""pytest-benchmark suites: every hot kernel on the student's HAR shapes, a training step and
batch-1 inference, for each CPU backend.

    python -m pytest bench/test_bench_kernels.py --benchmark-only [--benchmark-group-by=group]

Not part of the test run (bench/ is outside ``testpaths``); numbers vary with machine load, so
compare backends within one run.
"""
import numpy as np
import pytest

import tinysml
from tinysml import Tensor, no_grad
from tinysml import functions as F
from tinysml.backend import kernels_for
from tinysml.models import build_model, preset
from tinysml.optim import AdamW

BACKENDS = ["numpy", "numba"]
R = np.random.default_rng(0)
DW = [(64, 72, 32, 5, 1), (64, 144, 32, 5, 2), (64, 240, 16, 3, 2)]       # (B, C, L, K, stride)
PW = [(64, 48, 144, 32), (64, 96, 240, 16)]                                 # (B, C, O, L)


@pytest.fixture(params=BACKENDS)
def kernels(request):
    tinysml.set_backend(request.param)
    yield kernels_for(np.zeros(1, np.float32))
    tinysml.set_backend("numba")


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("B, C, L, K, S", DW)
def test_depthwise_forward(benchmark, kernels, B, C, L, K, S):
    benchmark.group = f"dw fwd {(B, C, L, K, S)}"
    x, w = f32(B, C, L), f32(C, K)
    benchmark(kernels.dw_conv1d_fwd, x, w, None, S, K // 2, 1)


@pytest.mark.parametrize("B, C, L, K, S", DW)
def test_depthwise_backward(benchmark, kernels, B, C, L, K, S):
    benchmark.group = f"dw bwd {(B, C, L, K, S)}"
    x, w = f32(B, C, L), f32(C, K)
    gy = f32(*kernels.dw_conv1d_fwd(x, w, None, S, K // 2, 1).shape)
    benchmark(kernels.dw_conv1d_bwd, gy, x, w, S, K // 2, 1)


@pytest.mark.parametrize("B, C, O, L", PW)
def test_pointwise(benchmark, kernels, B, C, O, L):
    benchmark.group = f"pw fwd+bwd {(B, C, O, L)}"
    x, w, gy = f32(B, C, L), f32(O, C), f32(B, O, L)
    benchmark(lambda: (kernels.pw_conv1d_fwd(x, w, None), kernels.pw_conv1d_bwd(gy, x, w)))


def test_batchnorm_and_activation(benchmark, kernels):
    benchmark.group = "bn + hardswish fwd+bwd (64, 144, 32)"
    x, g, b = f32(64, 144, 32), f32(144), f32(144)

    def run():
        y, mean, _, invstd = kernels.bn_train_fwd(x, g, b, 1e-5)
        a = kernels.act_fwd("hardswish", y)
        gy = kernels.act_bwd("hardswish", y, a)
        kernels.bn_bwd(gy, x, g, mean, invstd)
    benchmark(run)


def test_fused_batchnorm_and_activation(benchmark, kernels):
    benchmark.group = "bn + hardswish fwd+bwd (64, 144, 32)"
    x, g, b = f32(64, 144, 32), f32(144), f32(144)

    def run():
        y, mean, _, invstd = kernels.bn_act_train_fwd(x, g, b, 1e-5, "hardswish")
        kernels.bn_act_bwd(y, x, g, b, mean, invstd, "hardswish")
    benchmark(run)


def test_fused_se_scale_and_activation(benchmark, kernels):
    benchmark.group = "SE scale + hardswish fwd+bwd (64, 240, 8)"
    x, s = f32(64, 240, 8), np.abs(f32(64, 240))

    def run():
        y = kernels.channel_scale_act_fwd(x, s, "hardswish")
        kernels.channel_scale_act_bwd(y, x, s, "hardswish")
    benchmark(run)


def test_se_scale_then_activation(benchmark, kernels):
    benchmark.group = "SE scale + hardswish fwd+bwd (64, 240, 8)"
    x, s = f32(64, 240, 8), np.abs(f32(64, 240))

    def run():
        y = kernels.channel_scale_fwd(x, s)
        a = kernels.act_fwd("hardswish", y)
        kernels.channel_scale_bwd(kernels.act_bwd("hardswish", y, a), x, s)
    benchmark(run)


def test_training_step(benchmark, kernels):
    benchmark.group = "student training step (64, 9, 128)"
    model = build_model(preset("har-student", 9, 128, 6))
    opt = AdamW(model.parameters())
    x, y = Tensor(f32(64, 9, 128)), R.integers(0, 6, 64)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    benchmark(step)


def test_inference_batch1(benchmark, kernels):
    benchmark.group = "student inference batch 1"
    model = build_model(preset("har-student", 9, 128, 6)).eval()
    x = Tensor(f32(1, 9, 128))

    def infer():
        with no_grad():
            model(x)
    benchmark(infer)


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("use_numba", [False, True], ids=["numpy", "numba-fused"])
def test_deploy_predict(benchmark, tmp_path, batch, use_numba):
    """tinysml.deploy: the folded network, layer by layer in NumPy or one fused Numba call."""
    from tinysml import io
    from tinysml.deploy import Predictor
    benchmark.group = f"deploy predict_proba, batch {batch}"
    io.save_model(tmp_path / "m.npz", build_model(preset("har-student", 9, 128, 6)))
    p = Predictor.load(tmp_path / "m.npz", use_numba=use_numba)
    x = f32(batch, 9, 128)
    benchmark(lambda: p.predict_proba(x))
