"""The CUDA C of every kernel but the GEMM (cuda/act.cu, loss.cu, adamw.cu, bn_act.cu,
depthwise.cu) run on the host, through kernels/cuda.py's own wrappers, against kernels/reference.py.

tests/cuda_stand_in.py compiles each source with g++ (the CUDA keywords defined away) and runs a
launch thread by thread; a kernel whose threads cooperate runs with one thread per block. This
checks the kernels' index arithmetic, their equations and the wrappers' grids on a machine without
a GPU; a GPU's own arithmetic (fused multiply-adds, its exp and log) is tests/test_kernels_cuda.py's.
Skipped where there is no g++ or cpp. Sizes are small: every thread is a Python call."""
import numpy as np
import pytest

import cuda_checks as check
from cuda_stand_in import cuda_backend, device
from helpers import assert_close
from tinysml.kernels import reference as ref

SHAPES = [(1, 1, 1), (2, 3, 5), (3, 4, 37), (1, 2, 300)]          # batch 1, odd lengths, rows past 256 threads


@pytest.fixture
def cuda(monkeypatch):
    module, restore = cuda_backend(monkeypatch, emulated=True)
    yield module
    restore()


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ref.ACTIVATIONS)
def test_activations_and_squeeze_excite(cuda, act, dtype):
    rng = np.random.default_rng(1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for shape in SHAPES:
        x, gy = rand(rng, shape, dtype, 4), rand(rng, shape, dtype)
        s = rng.random(shape[:2]).astype(dtype) * 2
        check.check_activation(cuda, device, x, gy, act, rtol=tol)
        check.check_activation(cuda, device, x[:, :, 0], gy[:, :, 0], act, rtol=tol)
        check.check_squeeze_excite(cuda, device, x, gy, s, act, rtol=tol, grad_rtol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_over_time_scaling_and_batch_norm(cuda, dtype):
    rng = np.random.default_rng(2)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for B, C, L in SHAPES:
        x, gy = rand(rng, (B, C, L), dtype, 3), rand(rng, (B, C, L), dtype)
        s, g = rand(rng, (B, C), dtype), rand(rng, (B, C), dtype)
        check.check_mean_and_scaling(cuda, device, x, gy, s, g, rtol=tol, grad_rtol=tol)
        assert_close(cuda.channel_scale_fwd(device(x), device(s)).get(), ref.channel_scale_fwd(x, s), rtol=tol)
        if B * L < 2:
            continue
        gamma, beta = rand(rng, C, dtype), rand(rng, C, dtype)
        for act in ("identity", "hardswish"):
            ours = cuda.bn_act_train_fwd(device(x), device(gamma), device(beta), 1e-5, act)
            exact = ref.bn_act_train_fwd(x, gamma, beta, 1e-5, act)
            for o, t in zip(ours, exact):
                assert_close(o.get(), t, rtol=1e-4 if dtype == np.float32 else 1e-10)
            mean, invstd = exact[1], exact[3]
            for o, t in zip(cuda.bn_act_bwd(*(device(a) for a in (gy, x, gamma, beta, mean, invstd)), act),
                            ref.bn_act_bwd(gy, x, gamma, beta, mean, invstd, act)):
                assert_close(o.get(), t, rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_statistics_with_the_momentum_a_number_or_on_the_device(cuda, dtype):
    check.check_running_statistics(cuda, device, dtype, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy(cuda, dtype):
    rng = np.random.default_rng(4)
    for B, K, soft in ((1, 1, False), (7, 3, True), (300, 5, False)):       # more rows than the block's threads
        z = rand(rng, (B, K), dtype, 5)
        q = rng.random((B, K)) if soft else np.eye(K)[rng.integers(0, K, B)]
        q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
        check.check_cross_entropy(cuda, device, z, q, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_tensor_adamw_equals_the_reference_step(cuda, dtype):
    """70 parameters (two launches of 64 and 6), sizes 1 to 700, against reference.adamw_step one
    parameter at a time; the learning rate and step count are read from device arrays."""
    rng = np.random.default_rng(5)
    sizes = [1, 700, *rng.integers(2, 60, 68)]
    ws = [rand(rng, int(n), dtype) for n in sizes]
    gs = [rand(rng, w.shape, dtype) for w in ws]
    ms = [rand(rng, w.shape, dtype) for w in ws]
    vs = [np.abs(rand(rng, w.shape, dtype)) for w in ws]
    ours = [[device(a) for a in arrays] for arrays in (ws, gs, ms, vs)]
    cuda.adamw_step_multi(*ours, device([1e-3]), device([7.0]), 0.9, 0.999, 1e-8, 0.01)
    assert [name for name, *_ in cuda.launches] == [f"adamw_multi_{'f32' if dtype == np.float32 else 'f64'}"] * 2
    for w, g, m, v in zip(ws, gs, ms, vs):
        ref.adamw_step(w, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 7)
    for o_arrays, e_arrays in ((ours[0], ws), (ours[2], ms), (ours[3], vs)):
        for o, e in zip(o_arrays, e_arrays):
            np.testing.assert_allclose(o.get(), e, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


def test_the_emulation_sees_a_wrong_index(cuda, monkeypatch):
    """The emulation can fail: a wrapper that launches too few blocks leaves elements unwritten (NaN,
    as the stand-in's empty arrays are), and the comparison says so."""
    x = device(np.linspace(-4, 4, 600, dtype=np.float32))
    import tinysml.kernels.cuda_act as cuda_act                            # the stand-in's, as cuda's
    monkeypatch.setattr(cuda_act, "_blocks", lambda n, items=1: (1,))      # 256 threads for 600 elements
    with pytest.raises(AssertionError, match="unwritten"):
        assert_close(cuda.act_fwd("relu", x).get(), ref.act_fwd("relu", np.asarray(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, C, L, K, S, P, D", [
    (1, 1, 1, 1, 1, 0, 1), (2, 3, 17, 3, 2, 1, 1), (3, 5, 33, 5, 1, 2, 1), (2, 4, 40, 3, 1, 2, 2),
    (64, 2, 128, 3, 1, 1, 1),                             # 8192 (b, l) pairs: the weight gradient over batch slices
])
def test_depthwise_convolution(cuda, B, C, L, K, S, P, D, dtype):
    rng = np.random.default_rng(6)
    x, w, b = rand(rng, (B, C, L), dtype), rand(rng, (C, K), dtype), rand(rng, C, dtype)
    y = cuda.dw_conv1d_fwd(device(x), device(w), device(b), S, P, D)
    assert_close(y.get(), ref.dw_conv1d_fwd(x, w, b, S, P, D), rtol=1e-5 if dtype == np.float32 else 1e-12)
    gy = rand(rng, y.shape, dtype)
    for o, t in zip(cuda.dw_conv1d_bwd(device(gy), device(x), device(w), S, P, D), ref.dw_conv1d_bwd(gy, x, w, S, P, D)):
        assert_close(o.get(), t, rtol=1e-5 if dtype == np.float32 else 1e-12)
    if B == 64:
        assert any(name.startswith("dw_conv1d_bwd_weight_sum") for name, *_ in cuda.launches)
