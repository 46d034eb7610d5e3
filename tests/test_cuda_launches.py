"""Every launch the CUDA backend makes, checked against the kernel's C signature, on any machine.

nvcc proves that the .cu files compile and the GPU tests that the kernels compute the right numbers,
but the argument list of a launch is only checked when it runs: a Python int where the kernel takes
an ``int`` (CuPy passes eight bytes), a float32 where it takes a ``double``, an argument left out.
Here kernels/cuda.py runs on a stand-in for CuPy whose arrays are NumPy arrays and whose kernels
record their launches: each launch's arguments are compared with the parameters of the kernel as the
C preprocessor expands its source (``cpp``; skipped where there is none; tests/cuda_stand_in.py).
Nothing is computed here: tests/test_cuda_emulated.py runs the kernels on the host, and
tests/test_kernels_cuda.py on a GPU."""
import numpy as np
import pytest

from cuda_stand_in import cuda_backend, device


@pytest.fixture
def cuda(monkeypatch):
    """tinysml.kernels.cuda on the stand-in (tests/cuda_stand_in.py), launches checked and recorded."""
    module, restore = cuda_backend(monkeypatch)
    yield module
    restore()


def rand(*shape, dtype):
    return device(np.random.default_rng(0).standard_normal(shape), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_launch_matches_its_kernel(cuda, dtype):
    B, C, L, O = 3, 5, 17, 4
    x, g, s = rand(B, C, L, dtype=dtype), rand(C, dtype=dtype), rand(B, C, dtype=dtype)
    var = device(np.abs(rand(C, dtype=dtype)) + 1, dtype)
    calls = {
        "dw_conv1d_fwd": lambda: cuda.dw_conv1d_fwd(x, rand(C, 3, dtype=dtype), rand(C, dtype=dtype), 2, 1, 1),
        "dw_conv1d_bwd": lambda: cuda.dw_conv1d_bwd(rand(B, C, 9, dtype=dtype), x, rand(C, 3, dtype=dtype), 2, 1, 1),
        "dw_conv1d_bwd (large batch)": lambda: cuda.dw_conv1d_bwd(rand(512, C, L, dtype=dtype),
                                                                  rand(512, C, L, dtype=dtype), rand(C, 3, dtype=dtype),
                                                                  1, 1, 1),
        "bn_act_eval": lambda: cuda.bn_act_eval(x, g, g, g, var, 1e-5, "hardswish"),
        "channel_scale_fwd": lambda: cuda.channel_scale_fwd(x, s),
        "bn_act_train_fwd": lambda: cuda.bn_act_train_fwd(x, g, g, 1e-5, "relu"),
        "bn_act_bwd": lambda: cuda.bn_act_bwd(x, x, g, g, g, var, "hardswish"),
        "bn_bwd": lambda: cuda.bn_bwd(x, x, g, g, var),
        "act_fwd": lambda: cuda.act_fwd("hardswish", s),
        "act_bwd": lambda: cuda.act_bwd("hardsigmoid", s, s),
        "channel_scale_act_fwd": lambda: cuda.channel_scale_act_fwd(x, s, "relu"),
        "channel_scale_act_bwd": lambda: cuda.channel_scale_act_bwd(x, x, s, "hardswish"),
        "channel_scale_bwd": lambda: cuda.channel_scale_bwd(x, x, s),
        "time_mean_fwd": lambda: cuda.time_mean_fwd(x),
        "time_mean_bwd": lambda: cuda.time_mean_bwd(s, L),
        "cross_entropy_fwd": lambda: cuda.cross_entropy_fwd(s, device(np.full((B, C), 1 / C), dtype)),
        "cross_entropy_bwd": lambda: cuda.cross_entropy_bwd(s, s, device(np.asarray(1.0), dtype)),
        "bn_update_running (number)": lambda: cuda.bn_update_running(g.copy(), var.copy(), g, var, 0.1, B * L),
        "bn_update_running (device)": lambda: cuda.bn_update_running(g.copy(), var.copy(), g, var,
                                                                     device(np.asarray(0.5)), B * L),
        "adamw_step_multi": lambda: cuda.adamw_step_multi([x, g, s.T], [x, g, s.T], [x.copy(), g.copy(), s.T.copy()],
                                                          [x.copy(), g.copy(), s.T.copy()], device([1e-3]),
                                                          device([1.0]), 0.9, 0.999, 1e-8, 0.01),
        "pw_conv1d_fwd": lambda: cuda.pw_conv1d_fwd(x, rand(O, C, dtype=dtype), rand(O, dtype=dtype)),
        "pw_conv1d_bwd": lambda: cuda.pw_conv1d_bwd(rand(B, O, L, dtype=dtype), x, rand(O, C, dtype=dtype)),
        "conv1d_fwd": lambda: cuda.conv1d_fwd(x, rand(O, C, 3, dtype=dtype), None, 2, 1),
        "conv1d_bwd": lambda: cuda.conv1d_bwd(rand(B, O, 9, dtype=dtype), x, rand(O, C, 3, dtype=dtype), 2, 1),
        "matmul": lambda: cuda.matmul(rand(2, 3, 4, dtype=dtype), rand(4, 5, dtype=dtype)),
    }
    suffix = "f32" if dtype == np.float32 else "f64"
    for what, call in calls.items():
        before = len(cuda.launches)
        call()
        made = [name for name, *_ in cuda.launches[before:]]
        assert made, f"{what}: no kernel launched"
        assert all(name.endswith(suffix) for name in made), (what, made)
    launched = {name.rsplit("_", 1)[0] for name, *_ in cuda.launches}
    assert {"act", "act_grad", "channel_scale_act", "channel_scale_act_grad", "time_mean", "time_mean_grad",
            "cross_entropy_fwd", "cross_entropy_bwd", "bn_running", "bn_running_device", "adamw_multi", "gemm",
            "dw_conv1d_fwd", "bn_stats", "bn_act"} <= launched
    assert cuda.elementwise == ["tinysml_adamw_device"]        # the transposed parameter, updated on its own


def test_the_launch_checker_catches_a_wrong_argument(cuda):
    """The checker itself: a Python int for a ``long long`` parameter, a missing argument, a float64
    array for a ``float*``, a float32 scalar for a ``double`` and an array for a struct are each
    refused."""
    kernel = cuda._kernel("act", "act", np.float32)
    x = rand(8, dtype=np.float32)
    kernel((1,), (32,), (x, x.copy(), np.int64(8), np.int32(3)))
    for bad, message in [((x, x, 8, np.int32(3)), "given int"),
                         ((x, x, np.int64(8)), "3 arguments for 4 parameters"),
                         ((x, x.astype(np.float64), np.int64(8), np.int32(3)), "given a float64 array")]:
        with pytest.raises(AssertionError, match=message):
            kernel((1,), (32,), bad)
    from tinysml.kernels import multi_tensor
    adamw = cuda._kernel("adamw", "adamw_multi", np.float32)
    ((tensors, _, _),) = multi_tensor.pack([x], [x], [x], [x])
    good = (tensors, device([1e-3]), device([1.0]), np.float64(0.9), np.float64(0.999), np.float64(1e-8), 0.01)
    adamw((1, 1), (256,), good)
    with pytest.raises(AssertionError, match="'double b1' given float32"):
        adamw((1, 1), (256,), good[:3] + (np.float32(0.9),) + good[4:])
    with pytest.raises(AssertionError, match="'const Tensors ts' given DeviceArray"):
        adamw((1, 1), (256,), (x,) + good[1:])
