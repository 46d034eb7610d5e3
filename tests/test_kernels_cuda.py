"""The CUDA backend: every .cu file compiles with nvcc (always, when nvcc is installed); the
kernels equal the reference on a GPU (skipped, with the reason, where there is none): fixed cases,
then random shapes (hypothesis) in float32 and float64 - batch 1, odd lengths, stride 2, dilation,
padding, kernel sizes past the hand-written kernel's limit of 16 taps (the reference fallback)."""
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from helpers import assert_close, cupy_or_skip
from tinysml.kernels import reference as ref

CU_FILES = sorted(glob.glob(os.path.join(os.path.dirname(ref.__file__), "cuda", "*.cu")))


def test_there_are_cuda_sources():
    assert {os.path.basename(f) for f in CU_FILES} >= {"depthwise.cu", "bn_act.cu", "act.cu", "gemm.cu"}


def _nvcc():
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("nvcc is not installed on this machine")
    return nvcc


def test_the_source_given_to_nvrtc_has_its_headers_written_in():
    """CuPy caches compiled kernels by their source text: a header left to #include would let an
    edited header hide behind a cached binary, so kernels/cuda_source.py writes each one in."""
    from tinysml.kernels import cuda_source
    for path in CU_FILES:
        name = os.path.basename(path)[:-3]
        text = cuda_source.source(name)
        assert '#include "' not in text and "#pragma once" not in text, name
        with open(path) as f:
            raw = f.read()
        if '#include "common.cuh"' in raw:
            assert "__device__ T activate(T v, int act)" in text and text.count("__device__ T block_sum") == 1
        else:
            assert text == raw


@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])          # Jetson Orin, H100/H200
def test_cu_file_compiles_with_nvcc(path, arch, tmp_path):
    """Each file as it is (its includes resolved by nvcc) and as NVRTC is given it (headers written in)."""
    from tinysml.kernels import cuda_source
    nvcc = _nvcc()
    inlined = tmp_path / "inlined.cu"
    inlined.write_text(cuda_source.source(os.path.basename(path)[:-3]))
    for src in (path, str(inlined)):
        proc = subprocess.run([nvcc, "--ptx", f"-arch={arch}", "-std=c++14", src, "-o", str(tmp_path / "out.ptx")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr.lower(), proc.stderr


_gpu = cupy_or_skip


@pytest.fixture(scope="module")
def gpu():
    return _gpu()


RANDOM = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
conv_cases = st.fixed_dictionaries({
    "B": st.integers(1, 5), "C": st.integers(1, 24), "L": st.integers(1, 70), "K": st.integers(1, 19),
    "S": st.integers(1, 2), "D": st.integers(1, 2), "P": st.integers(0, 6), "bias": st.booleans(),
    "dtype": st.sampled_from([np.float32, np.float64]), "seed": st.integers(0, 2**16)})


@RANDOM
@given(conv_cases)
def test_depthwise_random_shapes_on_gpu(gpu, c):
    """Forward, input gradient and weight/bias gradients against the NumPy reference."""
    from tinysml.kernels import cuda
    args = (c["S"], c["P"], c["D"])
    assume(ref.conv_out_len(c["L"], c["K"], *args) >= 1)
    rng = np.random.default_rng(c["seed"])
    x, w, b = (rng.standard_normal(s).astype(c["dtype"]) for s in ((c["B"], c["C"], c["L"]), (c["C"], c["K"]), (c["C"],)))
    b = b if c["bias"] else None
    y = cuda.dw_conv1d_fwd(gpu.asarray(x), gpu.asarray(w), None if b is None else gpu.asarray(b), *args)
    assert y.dtype == c["dtype"]
    assert_close(y.get(), ref.dw_conv1d_fwd(x, w, b, *args))
    gy = rng.standard_normal(y.shape).astype(c["dtype"])
    for ours, theirs in zip(cuda.dw_conv1d_bwd(gpu.asarray(gy), gpu.asarray(x), gpu.asarray(w), *args),
                            ref.dw_conv1d_bwd(gy, x, w, *args)):
        assert ours.dtype == c["dtype"]
        assert_close(ours.get(), theirs)


@RANDOM
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 70), st.sampled_from(ref.ACTIVATIONS),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 999))
def test_bn_act_and_channel_scale_random_shapes_on_gpu(gpu, B, C, L, act, dtype, seed):
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    x, g, b, m, s = (rng.standard_normal(sh).astype(dtype) for sh in ((B, C, L), (C,), (C,), (C,), (B, C)))
    v = (np.abs(rng.standard_normal(C)) + 0.1).astype(dtype)
    y = cuda.bn_act_eval(*(gpu.asarray(a) for a in (x, g, b, m, v)), 1e-5, act)
    assert_close(y.get(), ref.act_fwd(act, ref.bn_eval_fwd(x, g, b, m, v, 1e-5)))
    assert_close(cuda.channel_scale_fwd(gpu.asarray(x), gpu.asarray(s)).get(), ref.channel_scale_fwd(x, s))


@RANDOM
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 70), st.sampled_from(ref.ACTIVATIONS),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 999))
def test_training_batch_norm_act_random_shapes_on_gpu(gpu, B, C, L, act, dtype, seed):
    """The fused training-mode kernels (statistics, one pass; two backward kernels) against the
    reference composition, with and without an activation. The fused pass computes x * scale + shift
    with scale = gamma invstd, so its float32 rounding scales with |x| |scale|, not with |y|: when a
    channel's values nearly coincide (a batch of one, or two close values), invstd is large and
    x * scale and shift cancel. The floor of y's and gx's tolerance is that magnitude (found by hypothesis on an
    H200: B = L = 1, off by 2.8e-4 with |y| < 1 and |x scale| near 10^3)."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(seed)
    x, g, b, gy = (rng.standard_normal(sh).astype(dtype) for sh in ((B, C, L), (C,), (C,), (B, C, L)))
    x = x * 3 + 1                                                   # a mean and a spread far from (0, 1)
    ours = cuda.bn_act_train_fwd(*(gpu.asarray(a) for a in (x, g, b)), 1e-5, act)
    exact = ref.bn_act_train_fwd(x, g, b, 1e-5, act)
    mean, invstd = exact[1], exact[3]
    scale = np.abs(g * invstd)
    fwd = float((np.abs(x) * scale[:, None]).max())                 # |x * scale|, the folded pass's terms
    bwd = float(scale.max() * np.abs(gy).max() * (1 + np.abs((x - mean[:, None]) * invstd[:, None]).max()))
    for o, t in zip(ours, exact):
        assert o.dtype == dtype
        assert_close(o.get(), t, rtol=1e-4, magnitude=fwd if t.ndim == 3 else 0.0)
    for o, t in zip(cuda.bn_act_bwd(*(gpu.asarray(a) for a in (gy, x, g, b, mean, invstd)), act),
                    ref.bn_act_bwd(gy, x, g, b, mean, invstd, act)):
        assert_close(o.get(), t, rtol=1e-4, magnitude=bwd if t.ndim == 3 else 0.0)
    for o, t in zip(cuda.bn_train_fwd(*(gpu.asarray(a) for a in (x, g, b)), 1e-5), ref.bn_train_fwd(x, g, b, 1e-5)):
        assert_close(o.get(), t, rtol=1e-4, magnitude=fwd if t.ndim == 3 else 0.0)
    for o, t in zip(cuda.bn_bwd(*(gpu.asarray(a) for a in (gy, x, g, mean, invstd))), ref.bn_bwd(gy, x, g, mean, invstd)):
        assert_close(o.get(), t, rtol=1e-4, magnitude=bwd if t.ndim == 3 else 0.0)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("n, weight_decay, t", [(7, 0.0, 1), (40_000, 0.01, 37)])
def test_adamw_step_on_gpu(gpu, dtype, rtol, n, weight_decay, t):
    from tinysml.kernels import cuda
    rng = np.random.default_rng(4)
    w, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(dtype)
    ours = [gpu.asarray(a) for a in (w, g, m, v)]
    cuda.adamw_step(*ours, 1e-3, 0.9, 0.999, 1e-8, weight_decay, t)
    ref.adamw_step(w, g, m, v, 1e-3, 0.9, 0.999, 1e-8, weight_decay, t)
    for o, e in zip((ours[0], ours[2], ours[3]), (w, m, v)):
        np.testing.assert_allclose(o.get(), e, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("B, C, L, K, S", [(64, 96, 257, 5, 2), (256, 16, 1024, 3, 1), (1, 576, 9, 5, 1)])
def test_depthwise_large_shapes_on_gpu(gpu, B, C, L, K, S):
    """Sizes past one block of threads in every direction (the weight kernel's strided loop)."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((B, C, L), (C, K), (C,)))
    y = cuda.dw_conv1d_fwd(gpu.asarray(x), gpu.asarray(w), gpu.asarray(b), S, K // 2, 1)
    assert_close(y.get(), ref.dw_conv1d_fwd(x, w, b, S, K // 2, 1))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    for ours, theirs in zip(cuda.dw_conv1d_bwd(gpu.asarray(gy), gpu.asarray(x), gpu.asarray(w), S, K // 2, 1),
                            ref.dw_conv1d_bwd(gy, x, w, S, K // 2, 1)):
        assert_close(ours.get(), theirs, rtol=1e-4)


@pytest.mark.parametrize("B, C, L, K, S, P, D", [(1, 3, 17, 3, 1, 1, 1), (4, 16, 33, 5, 2, 2, 1), (2, 8, 40, 9, 1, 4, 1),
                                                 (3, 5, 21, 7, 2, 3, 2), (2, 4, 9, 1, 1, 0, 1)])
def test_depthwise_equals_reference_on_gpu(B, C, L, K, S, P, D):
    cp = _gpu()
    from tinysml.kernels import cuda
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((B, C, L), (C, K), (C,)))
    y = cuda.dw_conv1d_fwd(cp.asarray(x), cp.asarray(w), cp.asarray(b), S, P, D)
    assert_close(y.get(), ref.dw_conv1d_fwd(x, w, b, S, P, D))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    for ours, theirs in zip(cuda.dw_conv1d_bwd(cp.asarray(gy), cp.asarray(x), cp.asarray(w), S, P, D),
                            ref.dw_conv1d_bwd(gy, x, w, S, P, D)):
        assert_close(ours.get(), theirs)


@pytest.mark.parametrize("act", ref.ACTIVATIONS)
def test_bn_act_and_channel_scale_on_gpu(act):
    cp = _gpu()
    from tinysml.kernels import cuda
    rng = np.random.default_rng(1)
    x, g, b, m, s = (rng.standard_normal(sh).astype(np.float32) for sh in ((3, 6, 11), (6,), (6,), (6,), (3, 6)))
    v = np.abs(rng.standard_normal(6).astype(np.float32)) + 0.5
    y = cuda.bn_act_eval(*(cp.asarray(a) for a in (x, g, b, m, v)), 1e-5, act)
    assert_close(y.get(), ref.act_fwd(act, ref.bn_eval_fwd(x, g, b, m, v, 1e-5)))
    assert_close(cuda.channel_scale_fwd(cp.asarray(x), cp.asarray(s)).get(), ref.channel_scale_fwd(x, s))


def test_training_step_on_gpu_matches_cpu():
    cp = _gpu()
    from tinysml import Tensor
    from tinysml import functions as F
    from tinysml.models import build_model, preset
    x = np.random.default_rng(2).standard_normal((8, 6, 64)).astype(np.float32)
    y = np.arange(8) % 4
    cpu_model = build_model(preset("har-student", 6, 64, 4), seed=0)
    gpu_model = build_model(preset("har-student", 6, 64, 4), seed=0).to("cuda")
    F.cross_entropy(cpu_model(Tensor(x)), y).backward()
    F.cross_entropy(gpu_model(Tensor(cp.asarray(x))), cp.asarray(y)).backward()
    for (name, a), (_, b) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        assert_close(b.grad.get(), a.grad, rtol=1e-4)


@pytest.mark.parametrize("act", ["hardswish", "selu", "relu"])
def test_fused_batch_norm_act_on_gpu(act):
    cp = _gpu()
    from tinysml.kernels import cuda
    rng = np.random.default_rng(2)
    x, g, b, gy = (rng.standard_normal(sh).astype(np.float32) for sh in ((4, 6, 19), (6,), (6,), (4, 6, 19)))
    ours = cuda.bn_act_train_fwd(*(cp.asarray(a) for a in (x, g, b)), 1e-5, act)
    exact = ref.bn_act_train_fwd(x, g, b, 1e-5, act)
    for o, t in zip(ours, exact):
        assert_close(o.get(), t, rtol=1e-4)
    mean, invstd = exact[1], exact[3]
    for o, t in zip(cuda.bn_act_bwd(*(cp.asarray(a) for a in (gy, x, g, b, mean, invstd)), act),
                    ref.bn_act_bwd(gy, x, g, b, mean, invstd, act)):
        assert_close(o.get(), t, rtol=1e-4)


def test_smldist_pipeline_runs_on_the_gpu(tmp_path):
    """The whole pipeline (teacher, stage, memory + logits, evaluation) with device='cuda'."""
    _gpu()
    from tinysml import io
    from tinysml.distill.pipeline import SMLDistConfig, run
    cfg = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=2,
                        student_epochs=2, stage_epochs=1, device="cuda")
    r = run(cfg, str(tmp_path), quiet=True)
    assert 0 <= r["student"]["test"]["accuracy"] <= 1
    model, _ = io.load_model(str(tmp_path / "student.npz"))        # saved as NumPy arrays
    assert isinstance(model.parameters()[0].data, np.ndarray)


# --------------------------------------------------------------------------- the GEMM kernel (cuda/gemm.cu)
gemm_cases = st.fixed_dictionaries({
    "B": st.integers(1, 6), "C": st.integers(1, 80), "O": st.integers(1, 80), "L": st.integers(1, 70),
    "K": st.integers(1, 5), "S": st.integers(1, 2), "D": st.integers(1, 2), "P": st.integers(0, 3),
    "bias": st.booleans(), "dtype": st.sampled_from([np.float32, np.float64]), "seed": st.integers(0, 2**16)})


@RANDOM
@given(gemm_cases)
def test_pointwise_and_dense_convolutions_random_shapes_on_gpu(gpu, c):
    """The GEMM kernel behind the pointwise convolution and the stem, forward and backward, against
    the reference: batch 1, odd lengths, stride 2, dilation, padding, both dtypes."""
    from tinysml.kernels import cuda
    rng = np.random.default_rng(c["seed"])
    B, C, O, L, dt = c["B"], c["C"], c["O"], c["L"], c["dtype"]
    x, w, b = (rng.standard_normal(s).astype(dt) for s in ((B, C, L), (O, C), (O,)))
    b = b if c["bias"] else None
    y = cuda.pw_conv1d_fwd(gpu.asarray(x), gpu.asarray(w), None if b is None else gpu.asarray(b))
    assert y.dtype == dt
    assert_close(y.get(), ref.pw_conv1d_fwd(x, w, b))
    gy = rng.standard_normal(y.shape).astype(dt)
    for ours, theirs in zip(cuda.pw_conv1d_bwd(gpu.asarray(gy), gpu.asarray(x), gpu.asarray(w)), ref.pw_conv1d_bwd(gy, x, w)):
        assert_close(ours.get(), theirs)
    args = (c["S"], c["P"], c["D"])
    assume(ref.conv_out_len(L, c["K"], *args) >= 1)
    wd = rng.standard_normal((O, C, c["K"])).astype(dt)
    y = cuda.conv1d_fwd(gpu.asarray(x), gpu.asarray(wd), None if b is None else gpu.asarray(b), *args)
    assert_close(y.get(), ref.conv1d_fwd(x, wd, b, *args))
    gy = rng.standard_normal(y.shape).astype(dt)
    for ours, theirs in zip(cuda.conv1d_bwd(gpu.asarray(gy), gpu.asarray(x), gpu.asarray(wd), *args),
                            ref.conv1d_bwd(gy, x, wd, *args)):
        assert_close(ours.get(), theirs)
    assert cuda.conv1d_bwd(gpu.asarray(gy), gpu.asarray(x), gpu.asarray(wd), *args, input_grad=False)[0] is None


@pytest.mark.parametrize("sa, sb", [((3, 4), (4, 5)), ((70, 130), (130, 67)), ((8, 6, 128), (128, 65)),
                                    ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (1, 5, 4, 2)), ((6, 2, 3, 1, 4), (6, 2, 3, 4, 2)),
                                    ((5, 0), (0, 3)), ((1, 300), (300, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_broadcasting_and_transposed_views_on_gpu(gpu, sa, sb, dtype):
    from tinysml.kernels import cuda
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    assert_close(cuda.matmul(gpu.asarray(a), gpu.asarray(b)).get(), a @ b)
    at = gpu.asarray(np.ascontiguousarray(a.swapaxes(-1, -2))).swapaxes(-1, -2)      # a transposed view
    assert_close(cuda.matmul(at, gpu.asarray(b)).get(), a @ b)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_adamw_with_device_scalars_equals_the_host_scalar_kernel(gpu, dtype, rtol):
    from tinysml.kernels import cuda
    rng = np.random.default_rng(5)
    w, g, m = (rng.standard_normal(3000).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(3000)).astype(dtype)
    host = [gpu.asarray(a) for a in (w, g, m, v)]
    dev = [gpu.asarray(a) for a in (w, g, m, v)]
    for t in (1, 2, 37):
        cuda.adamw_step(*host, 2e-3, 0.9, 0.999, 1e-8, 0.01, t)
        cuda.adamw_step_device(*dev, gpu.asarray([2e-3]), gpu.asarray([float(t)]), 0.9, 0.999, 1e-8, 0.01)
    for o, e in zip(dev, host):
        np.testing.assert_allclose(o.get(), e.get(), rtol=rtol, atol=rtol)
