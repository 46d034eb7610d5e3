"""CUDA backend: activations on their own, squeeze-excite's channel scaling with the activation after
it and its mean over time, forward and backward (``cuda/bn_act.cu``, ``cuda/act.cu``), and the
softmax cross-entropy (``cuda/loss.cu``): each one launch where the array code on CuPy takes two
to ten. See ``cuda.py``, which re-exports every kernel.
"""
from __future__ import annotations

from .cuda_runtime import THREADS, _act_code, _blocks, _kernel, _row_threads, cp

# --------------------------------------------------------------------------- squeeze-excite's scaling
def channel_scale_fwd(x, s):
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    _kernel("bn_act", "channel_scale", x.dtype)(_blocks(x.size), (THREADS,),
                                                (x, cp.ascontiguousarray(s, dtype=x.dtype), y, cp.int64(x.size),
                                                 cp.int32(x.shape[2])))
    return y


# --------------------------------------------------------------------------- activations, SE, mean over time: cuda/act.cu
def act_fwd(name, x):
    """y = act(x), elementwise over the flattened array in one launch (the array code takes up to
    four: hardswish is x * (clip(x + 3, 0, 6) / 6)); the equations are reference.act_fwd's."""
    code = _act_code(name)
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    if x.size:
        _kernel("act", "act", x.dtype)(_blocks(x.size), (THREADS,), (x, y, cp.int64(x.size), cp.int32(code)))
    return y


def act_bwd(name, x, gy):
    """gx = act'(x) gy in one launch (reference.act_bwd)."""
    code = _act_code(name)
    x = cp.ascontiguousarray(x)
    gy = cp.ascontiguousarray(gy, dtype=x.dtype)
    gx = cp.empty_like(x)
    if x.size:
        _kernel("act", "act_grad", x.dtype)(_blocks(x.size), (THREADS,), (x, gy, gx, cp.int64(x.size), cp.int32(code)))
    return gx


def channel_scale_act_fwd(x, s, act):
    """Squeeze-excite's scaling and the activation after it, y = act(x[b, c, l] s[b, c]), in one launch."""
    code = _act_code(act)
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    if x.size:
        _kernel("act", "channel_scale_act", x.dtype)(_blocks(x.size), (THREADS,),
                                                     (x, cp.ascontiguousarray(s, dtype=x.dtype), y, cp.int64(x.size),
                                                      cp.int32(x.shape[2]), cp.int32(code)))
    return y


def channel_scale_act_bwd(gy, x, s, act):
    """Its gradients in one launch, one block per row (b, c): g = act'(x s) gy, gx = g s, and
    gs[b, c] = sum_l g x by a tree sum in a fixed order (no atomics)."""
    code = _act_code(act)
    x = cp.ascontiguousarray(x)
    gy, s = cp.ascontiguousarray(gy, dtype=x.dtype), cp.ascontiguousarray(s, dtype=x.dtype)
    B, C, L = x.shape
    gx, gs = cp.empty_like(x), cp.empty((B, C), dtype=x.dtype)
    if B * C:
        threads = _row_threads(L)
        _kernel("act", "channel_scale_act_grad", x.dtype)((B * C,), (threads,), (gy, x, s, gx, gs, cp.int32(L),
                                                                                 cp.int32(code)),
                                                          shared_mem=threads * x.dtype.itemsize)
    return gx, gs


def channel_scale_bwd(gy, x, s):
    """Squeeze-excite's scaling without an activation: the fused backward with the identity."""
    return channel_scale_act_bwd(gy, x, s, "identity")


def time_mean_fwd(x):
    """Global average pooling over time, m[b, c] = (1/L) sum_l x[b, c, l], in one launch (one block
    per row, a tree sum in a fixed order); the array code is a reduction and a multiply."""
    x = cp.ascontiguousarray(x)
    B, C, L = x.shape
    m = cp.empty((B, C), dtype=x.dtype)
    if B * C:
        threads = _row_threads(L)
        _kernel("act", "time_mean", x.dtype)((B * C,), (threads,), (x, m, cp.int32(L)),
                                             shared_mem=threads * x.dtype.itemsize)
    return m


def time_mean_bwd(g, L):
    """Its gradient, gx[b, c, l] = g[b, c] / L, in one launch (the array code: a multiply and a copy)."""
    g = cp.ascontiguousarray(g)
    gx = cp.empty(g.shape + (L,), dtype=g.dtype)
    if gx.size:
        _kernel("act", "time_mean_grad", g.dtype)(_blocks(gx.size), (THREADS,), (g, gx, cp.int64(gx.size),
                                                                                cp.int32(L)))
    return gx


# --------------------------------------------------------------------------- loss: cuda/loss.cu
def cross_entropy_fwd(z, q):
    """Softmax cross-entropy (reference.cross_entropy_fwd) in one launch: one block, each thread a
    row at a time, then a tree sum in a fixed order. Returns (loss as a 0-d array, logp)."""
    z = cp.ascontiguousarray(z)
    q = cp.ascontiguousarray(q, dtype=z.dtype)
    B, K = z.shape
    logp, loss = cp.empty_like(z), cp.empty(1, dtype=z.dtype)
    _kernel("loss", "cross_entropy_fwd", z.dtype)((1,), (THREADS,), (z, q, logp, loss, cp.int32(B), cp.int32(K)),
                                                  shared_mem=THREADS * z.dtype.itemsize)
    return loss.reshape(()), logp


def cross_entropy_bwd(logp, q, g):
    """Its gradient, gz = g (exp(logp) - q) / B, in one launch; g (the upstream gradient) is read on
    the device."""
    logp = cp.ascontiguousarray(logp)
    q = cp.ascontiguousarray(q, dtype=logp.dtype)
    g = cp.ascontiguousarray(g, dtype=logp.dtype).reshape(1)
    gz = cp.empty_like(logp)
    if gz.size:
        _kernel("loss", "cross_entropy_bwd", logp.dtype)(_blocks(gz.size), (THREADS,),
                                                          (logp, q, g, gz, cp.int64(gz.size), cp.int32(logp.shape[0])))
    return gz
