"""CUDA kernels through CuPy: the same names and signatures as ``reference.py``.

Hand-written CUDA C in ``cuda/*.cu`` (shared device functions in ``cuda/common.cuh``), compiled on
first use (``cuda_runtime.py``). This file holds the depthwise convolution (forward, gathered input
gradient, weight gradient over batch slices without atomics) and every matrix product, pointwise
and dense convolutions included, as one GEMM kernel (CuPy cannot record cuBLAS in a CUDA graph;
layouts in ``gemm_layout.py``), and re-exports the rest: batch norm fused with its activation and
its running-statistics update (``cuda_norm.py``); activations, squeeze-excite's scaling and mean
over time, and the softmax cross-entropy (``cuda_act.py``); the AdamW step, every parameter in one
launch (``cuda_optim.py``). The array code of ``reference.py`` runs on CuPy arrays only where a
kernel does not apply (a depthwise gradient past 16 taps, a grouped convolution that is not
depthwise); the autograd's own array code (additions, the distillation losses, reshapes) runs on
CuPy arrays too.

Why fuse on a GPU: a small model's training step is a few hundred kernel launches of microseconds
each, so its time is launch overhead, not arithmetic; every launch saved is time saved.

Requires CuPy (``pip install 'tinysml[cuda12]'`` or ``'tinysml[cuda13]'``; on a Jetson, the CuPy
build matching JetPack's CUDA) and a CUDA device.
"""
from __future__ import annotations

import numpy as np

from . import gemm_layout as GL
from . import reference
from .cuda_runtime import THREADS, _blocks, _kernel, _multiprocessors, cp
from .reference import ACTIVATIONS, conv_out_len  # noqa: F401  (re-exported: the backend's full surface)

ITEMS = 4             # elements per thread in the depthwise kernels (ITEMS in cuda/depthwise.cu)


# --------------------------------------------------------------------------- depthwise conv1d
def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """y[b, c, l] = bias[c] + sum_k w[c, k] x[b, c, l*S + k*D - P]; ITEMS output elements per thread."""
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    Lout = conv_out_len(L, K, stride, padding, dilation)
    y = cp.empty((B, C, Lout), dtype=x.dtype)
    bias = cp.ascontiguousarray(b, dtype=x.dtype) if b is not None else cp.zeros(1, x.dtype)
    _kernel("depthwise", "dw_conv1d_fwd", x.dtype)(
        _blocks(y.size, ITEMS), (THREADS,), (x, w, bias, y, cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K),
                                             cp.int32(Lout), cp.int32(stride), cp.int32(padding), cp.int32(dilation),
                                             cp.int32(b is not None)))
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """gx gathered (ITEMS input elements per thread, no atomics); gw and gb in two kernels: blocks (c, g)
    each sum one slice of the batch for channel c, then one thread per (c, k) adds the slices in order.
    Splitting the batch keeps the device full when there are few channels (C blocks alone leave most
    of an H100's 132 multiprocessors idle)."""
    gy, x, w = cp.ascontiguousarray(gy), cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    if K > 16:
        return reference.dw_conv1d_bwd(gy, x, w, stride, padding, dilation)
    Lout = gy.shape[2]
    args = (cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K), cp.int32(Lout), cp.int32(stride), cp.int32(padding),
            cp.int32(dilation))
    gx = cp.empty_like(x)
    _kernel("depthwise", "dw_conv1d_bwd_input", x.dtype)(_blocks(gx.size, ITEMS), (THREADS,), (gy, w, gx, *args))
    G = _batch_slices(B, C, Lout)
    gw, gb = cp.empty((C, K), dtype=x.dtype), cp.empty(C, dtype=x.dtype)
    part = cp.empty((C, G, K + 1), dtype=x.dtype) if G > 1 else gw       # G = 1: the blocks write gw, gb
    _kernel("depthwise", "dw_conv1d_bwd_weight", x.dtype)((C, G), (THREADS,), (gy, x, part, gw, gb, *args),
                                                          shared_mem=THREADS * x.dtype.itemsize)
    if G > 1:
        _kernel("depthwise", "dw_conv1d_bwd_weight_sum", x.dtype)(_blocks(C * (K + 1)), (THREADS,),
                                                                  (part, gw, gb, cp.int32(C), cp.int32(K), cp.int32(G)))
    return gx, gw, gb


def _batch_slices(B: int, C: int, Lout: int) -> int:
    """How many slices of the batch the weight gradient splits into: enough blocks for eight per
    multiprocessor, but at least sixteen (b, l) pairs per thread in each slice. Below that (a batch
    of 64 on HAR windows) the kernel takes microseconds and the second launch would cost more than
    the split saves."""
    want = -(-8 * _multiprocessors(cp.cuda.runtime.getDevice()) // C)
    return max(1, min(want, B * Lout // (16 * THREADS), B))


# --------------------------------------------------------------------------- matrix products: cuda/gemm.cu
# Every product is the one GEMM kernel, laid out by gemm_layout.py (tested against NumPy anywhere):
# CuPy refuses cuBLAS inside a stream capture, and the training step must be recordable as a graph.
WANT_BLOCKS = 2                 # a weight gradient's partial sums: at least this many blocks per multiprocessor


def _gemm(g, a, b, c, bias=None, accumulate=False):
    """Launch cuda/gemm.cu for the layout ``g`` on operands a, b (their views' pointers) into c."""
    if g.M == 0 or g.N == 0 or g.Z1 * g.Z2 == 0:
        return c
    grid = ((g.N + 63) // 64, (g.M + 63) // 64, g.Z1 * g.Z2)
    i32, i64 = cp.int32, cp.int64
    _kernel("gemm", "gemm", c.dtype)(
        grid, (256,), (a, b, c, c if bias is None else bias, i32(g.M), i32(g.N), i32(g.K), i32(g.ks), i32(g.ns),
                       i32(g.Z2), *(i64(s) for s in g.a + g.b + g.c), i32(accumulate), i32(bias is not None)))
    return c


def _chunk(B, M, N):
    """Windows per partial sum of a weight gradient (gemm_layout.batch_chunk) for an M x N result."""
    tiles = -(-M // 64) * -(-N // 64)
    return GL.batch_chunk(B, tiles, WANT_BLOCKS * _multiprocessors(cp.cuda.runtime.getDevice()))


def matmul(a, b):
    """a @ b with NumPy's broadcasting, by cuda/gemm.cu (one launch; batch axes that do not fit its
    two strided levels are made contiguous first)."""
    dtype = cp.result_type(a, b)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    plan = GL.matmul(a.shape, GL.element_strides(a), b.shape, GL.element_strides(b))
    if plan is None:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        a = cp.ascontiguousarray(cp.broadcast_to(a, batch + a.shape[-2:]))
        b = cp.ascontiguousarray(cp.broadcast_to(b, batch + b.shape[-2:]))
        plan = GL.matmul(a.shape, GL.element_strides(a), b.shape, GL.element_strides(b))
    g, shape = plan
    out = cp.empty(shape, dtype=dtype)
    if g.K == 0:
        out.fill(0)
        return out
    return _gemm(g, a, b, out)


def pw_conv1d_fwd(x, w, b, batch_invariant=False):
    """y (B, O, L) = bias + w (O, C) @ x (B, C, L): one GEMM over the columns (b, l), the bias added in
    it. Batch-invariant as it is (each element's sum runs in k order whatever B is)."""
    B, C, L = x.shape
    O = w.shape[0]
    w = w.astype(x.dtype, copy=False)
    y = cp.empty((B, O, L), dtype=x.dtype)
    return _gemm(GL.pointwise(B, C, L, O, GL.element_strides(x), GL.element_strides(w), GL.element_strides(y)),
                 w, x, y, None if b is None else cp.ascontiguousarray(b, dtype=x.dtype))


def pw_conv1d_bwd(gy, x, w, bias_grad=True):
    """gx = w^T gy (one GEMM over (b, l)); gw = sum over (b, l) of gy x^T, as partial sums over chunks of
    the batch (enough blocks to fill the device) added by one reduction; gb = sum gy."""
    B, C, L = x.shape
    O = w.shape[0]
    w = w.astype(x.dtype, copy=False)
    gys, xs = GL.element_strides(gy), GL.element_strides(x)
    gx = cp.empty_like(x)
    _gemm(GL.pointwise_input_grad(B, C, L, O, gys, GL.element_strides(w), GL.element_strides(gx)), w, gy, gx)
    chunk = _chunk(B, O, C)
    parts = cp.empty((B // chunk, O, C), dtype=x.dtype)
    _gemm(GL.pointwise_weight_grad(B, C, L, O, gys, xs, chunk), gy, x, parts)
    gw = parts[0] if len(parts) == 1 else parts.sum(axis=0)
    return gx, gw, gy.sum(axis=(0, 2)) if bias_grad else None


def conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Dense convolution (the stem) as one implicit-im2col GEMM on the padded input: k = (c, tap).
    Grouped convolutions other than depthwise take the reference (cuBLAS; not recordable in a graph)."""
    if groups != 1:
        return reference.conv1d_fwd(x, w, b, stride, padding, dilation, groups)
    B, C, L = x.shape
    O, _, Kw = w.shape
    Lout = conv_out_len(L, Kw, stride, padding, dilation)
    xpad = cp.pad(x, ((0, 0), (0, 0), (padding, padding))) if padding else x
    w = w.astype(x.dtype, copy=False)
    y = cp.empty((B, O, Lout), dtype=x.dtype)
    g = GL.dense(B, C, Lout, O, Kw, stride, dilation, GL.element_strides(xpad), GL.element_strides(w),
                 GL.element_strides(y))
    return _gemm(g, w, xpad, y, None if b is None else cp.ascontiguousarray(b, dtype=x.dtype))


def conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1, groups=1, input_grad=True):
    """Gradients of ``conv1d_fwd``: gw as partial GEMMs over chunks of the batch plus one reduction;
    gx (when asked) one accumulating GEMM per tap into the padded input's strided view."""
    if groups != 1:
        return reference.conv1d_bwd(gy, x, w, stride, padding, dilation, groups, input_grad)
    B, C, L = x.shape
    O, _, Kw = w.shape
    Lout = gy.shape[-1]
    xpad = cp.pad(x, ((0, 0), (0, 0), (padding, padding))) if padding else x
    w = w.astype(x.dtype, copy=False)
    gys = GL.element_strides(gy)
    chunk = _chunk(B, O, C * Kw)
    parts = cp.empty((B // chunk, O, C, Kw), dtype=x.dtype)
    _gemm(GL.dense_weight_grad(B, C, Lout, O, Kw, stride, dilation, gys, GL.element_strides(xpad), chunk),
          gy, xpad, parts)
    gw = parts[0] if len(parts) == 1 else parts.sum(axis=0)
    gx = None
    if input_grad:
        gxpad = cp.zeros(xpad.shape, dtype=x.dtype)
        for t in range(Kw):
            view = gxpad[:, :, t * dilation: t * dilation + stride * (Lout - 1) + 1: stride]
            wt = w[:, :, t]
            _gemm(GL.dense_input_grad_tap(B, C, Lout, O, stride, gys, GL.element_strides(wt), GL.element_strides(view)),
                  wt, gy, view, accumulate=True)
        gx = cp.ascontiguousarray(gxpad[:, :, padding:padding + L])
    return gx, gw, gy.sum(axis=(0, 2))


from .cuda_act import (act_bwd, act_fwd, channel_scale_act_bwd, channel_scale_act_fwd,  # noqa: E402,F401
                       channel_scale_bwd, channel_scale_fwd, cross_entropy_bwd, cross_entropy_fwd, time_mean_bwd,
                       time_mean_fwd)
from .cuda_norm import (bn_act_bwd, bn_act_eval, bn_act_train_fwd, bn_bwd, bn_eval_fwd,  # noqa: E402,F401
                        bn_train_fwd, bn_update_running)
from .cuda_optim import adamw_step, adamw_step_device, adamw_step_multi  # noqa: E402,F401
