"""The comparisons of the fused CUDA kernels (cuda/act.cu, loss.cu) with kernels/reference.py, shared
by the GPU tests (tests/test_kernels_cuda_fused.py, arrays on the device) and the host emulation
(tests/test_cuda_emulated.py, tests/cuda_stand_in.py): each takes the backend module and the
function that puts a NumPy array where it runs, and the tolerances of its caller."""
import numpy as np

from helpers import assert_close
from tinysml.kernels import reference as ref

MOMENTA = (0.1, 1.0, 1 / 3, np.float64(1 / 7), np.asarray(1 / 7), np.full(1, 0.25))   # numbers and device arrays


def check_activation(cuda, to_device, x, gy, act, rtol):
    """act_fwd and act_bwd (one launch each) on x of any shape."""
    y = cuda.act_fwd(act, to_device(x))
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_close(y.get(), ref.act_fwd(act, x), rtol=rtol)
    gx = cuda.act_bwd(act, to_device(x), to_device(gy))
    assert gx.dtype == x.dtype
    assert_close(gx.get(), ref.act_bwd(act, x, gy), rtol=rtol)


def check_squeeze_excite(cuda, to_device, x, gy, s, act, rtol, grad_rtol):
    """channel_scale_act forward and backward: x, gy (B, C, L), s (B, C)."""
    y = cuda.channel_scale_act_fwd(to_device(x), to_device(s), act)
    assert y.dtype == x.dtype
    assert_close(y.get(), ref.channel_scale_act_fwd(x, s, act), rtol=rtol)
    for o, t in zip(cuda.channel_scale_act_bwd(to_device(gy), to_device(x), to_device(s), act),
                    ref.channel_scale_act_bwd(gy, x, s, act)):
        assert o.dtype == x.dtype and o.shape == t.shape
        assert_close(o.get(), t, rtol=grad_rtol)


def check_mean_and_scaling(cuda, to_device, x, gy, s, g, rtol, grad_rtol):
    """time_mean forward and backward, and channel_scale's backward (the fused kernel with the identity)."""
    B, C, L = x.shape
    m = cuda.time_mean_fwd(to_device(x))
    assert m.dtype == x.dtype and m.shape == (B, C)
    assert_close(m.get(), ref.time_mean_fwd(x), rtol=rtol)
    np.testing.assert_array_equal(cuda.time_mean_bwd(to_device(g), L).get(), ref.time_mean_bwd(g, L))
    for o, t in zip(cuda.channel_scale_bwd(to_device(gy), to_device(x), to_device(s)), ref.channel_scale_bwd(gy, x, s)):
        assert_close(o.get(), t, rtol=grad_rtol)


def check_cross_entropy(cuda, to_device, z, q, rtol):
    """cross_entropy_fwd (loss and logp) and _bwd with the upstream gradient as a device array."""
    loss, logp = cuda.cross_entropy_fwd(to_device(z), to_device(q))
    want_loss, want_logp = ref.cross_entropy_fwd(z, q)
    assert loss.shape == () and loss.dtype == z.dtype and logp.dtype == z.dtype
    assert_close(logp.get(), want_logp, rtol=rtol)
    assert_close(loss.get(), want_loss, rtol=rtol)
    g = np.asarray(0.7, z.dtype)
    assert_close(cuda.cross_entropy_bwd(logp, to_device(q), to_device(g)).get(), ref.cross_entropy_bwd(want_logp, q, g),
                 rtol=rtol)


def check_running_statistics(cuda, to_device, dtype, rtol, atol):
    """bn_update_running with every form of MOMENTA against the reference's seven array operations."""
    rng = np.random.default_rng(9)
    for momentum in MOMENTA:
        rm, mean = (rng.standard_normal(37).astype(dtype) for _ in range(2))
        rv, var = (rng.random(37).astype(dtype) + 0.5 for _ in range(2))
        ours = [to_device(a) for a in (rm, rv)]
        on_device = momentum if isinstance(momentum, float) else to_device(momentum)
        cuda.bn_update_running(*ours, to_device(mean), to_device(var), on_device, 96)
        ref.bn_update_running(rm, rv, mean, var, momentum, 96)
        for o, e in zip(ours, (rm, rv)):
            assert o.dtype == dtype
            np.testing.assert_allclose(o.get(), e, rtol=rtol, atol=atol)
