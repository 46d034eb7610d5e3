"""The CUDA kernels written to cut a training step's launches (cuda/act.cu, loss.cu, adamw.cu):
activations, squeeze-excite, the mean over time, the cross-entropy, batch norm's running
statistics and the multi-tensor AdamW, against kernels/reference.py on a GPU (skipped, with the
reason, where there is none), on random shapes; the comparisons are tests/cuda_checks.py's, which
tests/test_cuda_emulated.py also runs on the host. The multi-tensor AdamW's argument layout is
checked on any machine."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cuda_checks as check
from helpers import cupy_or_skip
from tinysml.kernels import reference as ref

RANDOM = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])


@pytest.fixture(scope="module")
def gpu():
    return cupy_or_skip()


def test_the_multi_tensor_adamw_argument_is_the_c_struct_and_packs_64_parameters_a_launch():
    """kernels/multi_tensor.py on any machine: TENSORS has the bytes of cuda/adamw.cu's struct
    (CHUNK addresses of w, g, m, v, then CHUNK sizes, eight bytes each, no padding), and pack()
    splits the parameters into launches of CHUNK, every address and size in its slot."""
    import re
    from tinysml.kernels import multi_tensor as M
    with open(os.path.join(os.path.dirname(ref.__file__), "cuda", "adamw.cu")) as f:
        source = f.read()
    assert int(re.search(r"#define CHUNK (\d+)", source).group(1)) == M.CHUNK == 64
    assert re.search(r"unsigned long long w\[CHUNK\], g\[CHUNK\], m\[CHUNK\], v\[CHUNK\];\s*(//[^\n]*)?\n\s*long long n\[CHUNK\];",
                     source)
    assert M.TENSORS.itemsize == 5 * 8 * M.CHUNK
    assert [M.TENSORS.fields[f][1] for f in "wgmvn"] == [i * 8 * M.CHUNK for i in range(5)]
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(1, 300, 130)]
    gs, ms, vs = ([np.zeros_like(w) for w in ws] for _ in range(3))
    launches = M.pack(ws, gs, ms, vs)
    assert [(count, largest) for _, count, largest in launches] == [
        (64, max(w.size for w in ws[:64])), (64, max(w.size for w in ws[64:128])), (2, max(w.size for w in ws[128:]))]
    for k, (tensors, count, _) in enumerate(launches):
        part = slice(64 * k, 64 * k + count)
        for field, arrays in (("w", ws), ("g", gs), ("m", ms), ("v", vs)):
            assert list(tensors[field][0, :count]) == [a.ctypes.data for a in arrays[part]]
            assert not tensors[field][0, count:].any()                       # unused slots stay zero
        assert list(tensors["n"][0, :count]) == [w.size for w in ws[part]]
    with pytest.raises(ValueError, match="as many gradients and moments as parameters, got 2, 1, 2, 2"):
        M.pack(ws[:2], gs[:1], ms[:2], vs[:2])


@RANDOM
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.sampled_from(ref.ACTIVATIONS), DTYPES,
       st.integers(0, 999))
def test_activations_random_shapes_on_gpu(gpu, shape, act, dtype, seed):
    """act and act_grad on 1-, 2- and 3-d arrays: squeeze-excite's (B, C), the head's (B, width), a
    block's (B, C, L)."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)            # across every kink (0, +-3, 6)
    check.check_activation(cuda, gpu.asarray, x, rng.standard_normal(shape).astype(dtype), act, rtol=1e-5)


def test_an_unknown_activation_is_named_on_gpu(gpu):
    from tinysml.kernels import cuda
    for call in (lambda x: cuda.act_fwd("gelu", x), lambda x: cuda.act_bwd("gelu", x, x),
                 lambda x: cuda.channel_scale_act_fwd(x[:, :, None], x, "gelu")):
        with pytest.raises(ValueError, match="unknown activation 'gelu'; expected one of"):
            call(gpu.ones((2, 3), np.float32))


@RANDOM
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 300), st.sampled_from(ref.ACTIVATIONS), DTYPES,
       st.integers(0, 999))
def test_squeeze_excite_scaling_with_its_activation_on_gpu(gpu, B, C, L, act, dtype, seed):
    """channel_scale_act forward and backward (the backward's sum over time is one block per row,
    lengths past a block's 256 threads included)."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    x, gy = ((rng.standard_normal((B, C, L)) * 3).astype(dtype) for _ in range(2))
    s = rng.random((B, C)).astype(dtype) * 2
    check.check_squeeze_excite(cuda, gpu.asarray, x, gy, s, act, rtol=1e-5,
                               grad_rtol=1e-4 if dtype == np.float32 else 1e-10)


@RANDOM
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 300), DTYPES, st.integers(0, 999))
def test_mean_over_time_and_scaling_without_activation_on_gpu(gpu, B, C, L, dtype, seed):
    """time_mean forward (one block per row) and backward, and channel_scale's backward."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    x, gy = (rng.standard_normal((B, C, L)).astype(dtype) for _ in range(2))
    s, g = (rng.standard_normal((B, C)).astype(dtype) for _ in range(2))
    check.check_mean_and_scaling(cuda, gpu.asarray, x, gy, s, g, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                 grad_rtol=1e-4 if dtype == np.float32 else 1e-10)


@RANDOM
@given(st.integers(1, 300), st.integers(1, 40), st.booleans(), DTYPES, st.integers(0, 999))
def test_cross_entropy_on_gpu(gpu, B, K, soft, dtype, seed):
    """The softmax cross-entropy (one block over every row, more rows than threads included), one-hot
    or soft targets."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((B, K)) * 5).astype(dtype)
    q = rng.random((B, K)) if soft else np.eye(K)[rng.integers(0, K, B)]
    q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    check.check_cross_entropy(cuda, gpu.asarray, z, q, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_running_statistics_update_on_gpu(gpu, dtype, rtol):
    """bn_update_running in one launch, the momentum a number or a float64 device array (0-d or of
    one element, as precise BN holds it)."""
    from tinysml.kernels import cuda
    check.check_running_statistics(cuda, gpu.asarray, dtype, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_multi_tensor_adamw_equals_one_launch_per_parameter_on_gpu(gpu, dtype):
    """70 parameters (two launches of cuda/adamw.cu), sizes from 1 to 40,000, a reversed (not
    contiguous) gradient and a transposed parameter (not contiguous: updated on its own): the same
    numbers as adamw_step_device parameter by parameter."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(7)
    sizes = [1, 40_000, *rng.integers(2, 3000, 68)]
    ws = [gpu.asarray(rng.standard_normal(int(n)).astype(dtype)) for n in sizes]
    ws[5] = gpu.asarray(rng.standard_normal((20, 30)).astype(dtype)).T             # not contiguous
    gs = [gpu.asarray(rng.standard_normal(w.shape).astype(dtype)) for w in ws]
    gs[9] = gs[9][::-1]                                                             # a gradient not contiguous
    ms = [gpu.asarray(rng.standard_normal(w.shape).astype(dtype)) for w in ws]
    vs = [gpu.asarray(np.abs(rng.standard_normal(w.shape)).astype(dtype)) for w in ws]
    lr, t = gpu.full(1, 1e-3, np.float64), gpu.full(1, 7.0, np.float64)
    one = [[a.copy() for a in arrays] for arrays in (ws, gs, ms, vs)]
    for w, g, m, v in zip(*one):
        cuda.adamw_step_device(w, g, m, v, lr, t, 0.9, 0.999, 1e-8, 0.01)
    cuda.adamw_step_multi(ws, gs, ms, vs, lr, t, 0.9, 0.999, 1e-8, 0.01)
    for ours, theirs in ((ws, one[0]), (ms, one[2]), (vs, one[3])):
        for o, e in zip(ours, theirs):
            np.testing.assert_allclose(o.get(), e.get(), rtol=2e-6 if dtype == np.float32 else 1e-14, atol=1e-7)


def test_a_cupy_that_cannot_pass_the_struct_gets_one_launch_per_parameter(gpu, monkeypatch):
    from tinysml.kernels import cuda, cuda_optim
    monkeypatch.setattr(cuda_optim, "_struct_arguments", [True])
    real = cuda_optim._kernel

    def refuse(*args, **kwargs):
        raise TypeError("Unsupported type <class 'numpy.ndarray'>")
    monkeypatch.setattr(cuda_optim, "_kernel", lambda source, name, dtype: refuse if source == "adamw" else
                        real(source, name, dtype))
    rng = np.random.default_rng(3)
    ws = [gpu.asarray(rng.standard_normal(n).astype(np.float32)) for n in (5, 300)]
    gs, ms = ([gpu.asarray(rng.standard_normal(w.shape).astype(np.float32)) for w in ws] for _ in range(2))
    vs = [gpu.asarray(np.abs(rng.standard_normal(w.shape)).astype(np.float32)) for w in ws]
    lr, t = gpu.full(1, 1e-3, np.float64), gpu.full(1, 1.0, np.float64)
    expect = [[a.copy() for a in arrays] for arrays in (ws, gs, ms, vs)]
    for w, g, m, v in zip(*expect):
        cuda.adamw_step_device(w, g, m, v, lr, t, 0.9, 0.999, 1e-8, 0.01)
    with pytest.warns(RuntimeWarning, match="cannot pass the multi-tensor AdamW's struct argument"):
        cuda.adamw_step_multi(ws, gs, ms, vs, lr, t, 0.9, 0.999, 1e-8, 0.01)
    assert cuda_optim._struct_arguments == [False]
    for o, e in zip(ws, expect[0]):
        np.testing.assert_array_equal(o.get(), e.get())
