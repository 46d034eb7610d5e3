"""Numba CPU kernels: the same names and signatures as ``reference.py``, faster.

What every kernel here does to be fast on a small CPU (measured in ``bench/``):

* ``prange`` runs over *independent outputs only* (a row (b, c), a channel c, a group of
  channels, a batch element): no two iterations ever write the same element, so there are no
  races and results do not depend on thread timing.
* Padding is never materialised: for tap k the valid outputs l satisfy 0 <= l*S + k*D - P < L, so
  the kernel computes that range [lo, hi) once and runs a plain loop from 0 over a slice
  (Numba vectorises ``for i in range(n): y[i] += w * x[i]``, not loops that start at an offset).
* Reductions (weight and bias gradients, batch statistics) sum each row in the array's dtype with
  reassociation allowed (so they vectorise) and add the row sums into a float64 accumulator.
* Short rows (L = 8-16, the late blocks of the presets) are not looped over one by one: a loop
  over 8 values is mostly set-up. Batch norm, squeeze-excite and the pooling run over *spans*
  instead (x[b, c0:c1, :] is one contiguous run of (c1 - c0) L values), with per-channel numbers
  spread along the span and sums per element over the batch in float64 (``cpu_norm.py``); the
  depthwise backward makes the batch its vector axis (``_dw_bwd_batched``).
* Pointwise (1x1) convolutions are matrix products: OpenBLAS GEMMs (``cpu_pointwise.py``).
* Small work (under ``SMALL_WORK`` elements) runs on the calling thread, and a kernel marked
  ``serial_twin`` then runs as its serial twin, which skips Numba's parallel loop scheduler
  (~1 us a call: most of a kernel's time at batch 1). ``cpu_runtime.py`` says which and why.

Process-wide settings (one thread pool, the Numba cache folder, glibc's allocator) are made on
import by ``cpu_runtime.py``; the dense convolution (the stem) lives in ``cpu_dense.py``, batch norm in
``cpu_norm.py``, activations and squeeze-excite in
``cpu_act.py``, pointwise convolutions in ``cpu_pointwise.py``, the optimiser in ``cpu_optim.py``.
This module is the backend: it re-exports those, so ``tinysml.kernels.cpu`` has every kernel.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_runtime import _EMPTY, _FAST, _alloc, _launch, _tap_range
from .cpu_runtime import set_poison  # noqa: F401  (re-exported: a testing aid)
from .reference import ACTIVATIONS, conv_out_len  # noqa: F401  (re-exported: the backend's full surface)


# =========================================================================== depthwise conv1d
@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_fwd(x, w, b, y, stride, padding, dilation):
    """Any stride; taps with stride 1 read contiguous slices (vectorised), others strided ones."""
    B, C, L = x.shape
    K = w.shape[1]
    Lout = y.shape[2]
    for bc in prange(B * C):                          # one output row (b, c) per iteration
        bi, c = bc // C, bc % C
        xr, yr = x[bi, c], y[bi, c]
        bias = b[c] if b.shape[0] > 0 else 0.0
        for i in range(Lout):
            yr[i] = bias
        for k in range(K):
            lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
            if hi <= lo:
                continue
            wk = w[c, k]
            ys = yr[lo:hi]
            if stride == 1:                           # a slice without a step keeps the C layout
                xs = xr[j0:j0 + hi - lo]
                for i in range(hi - lo):
                    ys[i] += wk * xs[i]
            else:
                for i in range(hi - lo):
                    ys[i] += wk * xr[j0 + stride * i]


@njit(inline="always", fastmath=_FAST)
def _dw_bwd_tap(gys, xs, gxs, wk):
    """One tap of the depthwise backward: gxs += wk gys, and returns dot(gys, xs) (its share of
    the weight gradient)."""
    dot = gys[0] * 0
    for i in range(gys.shape[0]):
        gxs[i] += wk * gys[i]
        dot += gys[i] * xs[i]
    return dot


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_bwd(gy, x, w, gx, gw, gb, stride, padding, dilation):
    """One pass per channel: gx, gw and gb from each tap's slices. With stride 1 the slices have no
    step, so they keep the C layout and the loop vectorises (2-3x over a stepped slice on the
    presets' stride-1 layers); with stride 2 they are strided (splitting each row into its two
    phases first, to make them contiguous, measured 1.5-2x slower on rows of 16-128 values)."""
    B, C, L = x.shape
    K = w.shape[1]
    Lout = gy.shape[2]
    for c in prange(C):                               # a thread owns channel c: gx[:, c], gw[c], gb[c]
        gw_acc = np.zeros(K, np.float64)
        gb_acc = 0.0
        for bi in range(B):
            gxr, gyr, xr = gx[bi, c], gy[bi, c], x[bi, c]
            for j in range(L):
                gxr[j] = 0.0
            row = gyr[0] * 0
            for i in range(Lout):
                row += gyr[i]
            gb_acc += row
            for k in range(K):
                lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                if hi <= lo:
                    continue
                n = hi - lo
                if stride == 1:
                    gw_acc[k] += _dw_bwd_tap(gyr[lo:hi], xr[j0:j0 + n], gxr[j0:j0 + n], w[c, k])
                else:
                    last = j0 + (n - 1) * stride + 1
                    gw_acc[k] += _dw_bwd_tap(gyr[lo:hi], xr[j0:last:stride], gxr[j0:last:stride], w[c, k])
        for k in range(K):
            gw[c, k] = gw_acc[k]
        gb[c] = gb_acc


@njit(inline="always", fastmath=_FAST)
def _sum64(v):
    """sum(v) accumulated in float64."""
    acc = 0.0
    for i in range(v.shape[0]):
        acc += v[i]
    return acc


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_bwd_batched(gy, x, w, gx, gw, gb, stride, padding, dilation):
    """The same gradients with the batch as the vector axis: a thread owns channel c, copies its rows
    transposed into xt (L, B) and gyt (Lout, B), and every tap is then, for each output position l,
    two vector operations over the batch (gxt[j] += w[c,k] gyt[l];  dot += gyt[l] * xt[j], with
    j = lS + kD - P), with no per-row set-up. On rows of 8-32 values that set-up (slices, tap
    ranges, scalar remainders) was most of the row kernel's time. Sums: each row's in the dtype, in
    order of l, then over the batch in float64, as the row kernel does."""
    B, C, L = x.shape
    K = w.shape[1]
    Lout = gy.shape[2]
    for c in prange(C):
        xt = np.empty((L, B), x.dtype)                # (L, B): row b of channel c is column b
        gyt = np.empty((Lout, B), x.dtype)            # (Lout, B)
        gxt = np.zeros((L, B), x.dtype)               # (L, B)
        for bi in range(B):
            xr, gyr = x[bi, c], gy[bi, c]
            for j in range(L):
                xt[j, bi] = xr[j]
            for i in range(Lout):
                gyt[i, bi] = gyr[i]
        part = np.zeros(B, x.dtype)                   # (B,) each row's sum of gy, then of gy * x per tap
        for i in range(Lout):
            g = gyt[i]
            for bi in range(B):
                part[bi] += g[bi]
        gb[c] = _sum64(part)
        for k in range(K):
            lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
            wk = w[c, k]
            part[:] = 0
            for i in range(lo, hi):
                j = j0 + (i - lo) * stride
                g, xr, gxr = gyt[i], xt[j], gxt[j]
                for bi in range(B):
                    gxr[bi] += wk * g[bi]
                    part[bi] += g[bi] * xr[bi]
            gw[c, k] = _sum64(part)
        for bi in range(B):
            gxr = gx[bi, c]
            for j in range(L):
                gxr[j] = gxt[j, bi]


def _dw_bwd_kernel(B, L, stride):
    """Which depthwise backward runs: the batched form, except on small batches (no vector to fill)
    and on long stride-1 rows, whose contiguous slices vectorise well and where the transposes cost
    more than they save. Measured on the reference machine, B = 64 (ms, rows -> batched): (64,480,8)
    k3 s1 0.66 -> 0.22, (64,384,16) k3 s2 0.58 -> 0.24, (64,144,32) k5 s1 0.36 -> 0.27, (64,96,40)
    k5 s1 0.27 -> 0.22, (64,64,48) k3 s1 0.13 -> 0.14, (64,64,128) k3 s1 0.17 -> 0.44, (64,64,128)
    k3 s2 0.33 -> 0.27; B = 8: (8,96,16) k5 s1 0.055 -> 0.058, B = 16: (16,96,32) k3 s2 0.050 -> 0.037."""
    return _dw_bwd_batched if B >= 16 and (stride != 1 or L < 48) else _dw_bwd


# --- the forward's fast path: dilation 1, stride 1 or 2, K <= 9. The tap count is a compile-time constant
# (KT = 3, 5 or 9; missing taps get weight 0), so LLVM unrolls the taps and vectorises the loop
# over outputs: one load per tap, one store per output, no per-tap loop set-up. That is what
# short rows (8-64 outputs) need: with a loop per tap, set-up and scalar remainders dominated.
@njit(inline="always", fastmath=_FAST)
def _dw_fwd_taps(x, w, b, y, stride, padding, KT):
    B, C, L = x.shape
    K, Lout = w.shape[1], y.shape[2]
    n = max(L + 2 * padding, (Lout - 1) * stride + KT) + 2        # padded row, room for the zero taps
    for c in prange(C):                                            # a thread owns channel c
        xp = np.zeros(n, x.dtype)                                  # zero-padded copy of one row
        wc = np.zeros(KT, x.dtype)
        wc[:K] = w[c]
        bias = b[c] if b.shape[0] > 0 else x.dtype.type(0)
        for bi in range(B):
            yr = y[bi, c]
            xp[padding:padding + L] = x[bi, c]
            if stride == 1:                                        # y[l] = b + sum_k w[k] xp[l + k]
                for i in range(Lout):
                    acc = bias
                    for k in range(KT):
                        acc += wc[k] * xp[i + k]
                    yr[i] = acc
            else:                                                  # y[l] = b + sum_k w[k] xp[2l + k]
                for i in range(Lout):
                    acc = bias
                    for k in range(KT):
                        acc += wc[k] * xp[2 * i + k]
                    yr[i] = acc


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_fwd_k3(x, w, b, y, stride, padding):
    _dw_fwd_taps(x, w, b, y, stride, padding, 3)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_fwd_k5(x, w, b, y, stride, padding):
    _dw_fwd_taps(x, w, b, y, stride, padding, 5)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_fwd_k9(x, w, b, y, stride, padding):
    _dw_fwd_taps(x, w, b, y, stride, padding, 9)


def _dw_fwd_unrolled(K, stride, dilation):
    """The unrolled-taps forward kernel for K taps, or None where the general kernel must run."""
    if dilation != 1 or stride not in (1, 2) or K > 9:
        return None
    return _dw_fwd_k3 if K <= 3 else _dw_fwd_k5 if K <= 5 else _dw_fwd_k9


def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """Depthwise conv: y[b, c, l] = bias[c] + sum_k w[c, k] x[b, c, l*S + k*D - P] (zero outside [0, L)).

    x (B, C, L), w (C, K), b (C,) or None -> y (B, C, Lout). Parallel over channels. Dilation 1,
    stride 1 or 2, K <= 9 (every MobileNet layer): each row is copied once into a zero-padded
    buffer and the taps, a compile-time count, are unrolled inside one loop over outputs
    (stride 2 reads them strided: splitting rows into even and odd samples first, the previous
    version, cost more than it saved on rows of 8-32 outputs). Otherwise: a vectorised axpy per tap over
    its valid output range, parallel over rows (b, c).
    """
    B, C, L = x.shape
    K = w.shape[1]
    y = _alloc((B, C, conv_out_len(L, K, stride, padding, dilation)), x.dtype)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    b = _EMPTY[x.dtype] if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    fast = _dw_fwd_unrolled(K, stride, dilation)
    if fast is not None:
        _launch(fast, x.size, x, w, b, y, stride, padding)
    else:
        _launch(_dw_fwd, x.size, x, w, b, y, stride, padding, dilation)
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """Depthwise conv gradients, gathered per channel (no atomics, no races):
    gx[b, c, lS + kD - P] += w[c, k] gy[b, c, l];  gw[c, k] = sum_{b,l} gy[b, c, l] x[b, c, lS + kD - P];
    gb[c] = sum_{b,l} gy[b, c, l].   Parallel over channels; one pass over gy and x computes all three,
    row by row (``_dw_bwd``) or with the batch as the vector axis (``_dw_bwd_batched``; which one
    runs: ``_dw_bwd_kernel``). (The forward's unrolled-taps scheme, applied here as a correlation of
    the upsampled gy with the reversed taps plus K strided dot products for gw, measured 1.3-1.9x
    slower than the row kernel on the stride-2 layers, and was dropped.)
    """
    return _dw_bwd_with(_dw_bwd_kernel(x.shape[0], x.shape[2], stride), gy, x, w, stride, padding, dilation)


def _dw_bwd_with(kernel, gy, x, w, stride, padding, dilation):
    """Run one of the two depthwise backward kernels (the tests run both on the same shapes)."""
    gx = _alloc(x.shape, x.dtype)
    gw = _alloc(w.shape, x.dtype)
    gb = _alloc(w.shape[0], x.dtype)
    _launch(kernel, x.size, np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype),
            gx, gw, gb, stride, padding, dilation)
    return gx, gw, gb


from .cpu_dense import conv1d_bwd, conv1d_fwd  # noqa: E402,F401
from .cpu_act import (act_bwd, act_fwd, channel_scale_act_bwd, channel_scale_act_fwd,  # noqa: E402,F401
                      channel_scale_bwd, channel_scale_fwd, time_mean_bwd, time_mean_fwd)
from .cpu_norm import (bn_act_bwd, bn_act_eval, bn_act_train_fwd, bn_bwd, bn_eval_fwd,  # noqa: E402,F401
                       bn_train_fwd)
from .cpu_optim import adamw_step  # noqa: E402,F401
from .cpu_pointwise import pw_conv1d_bwd, pw_conv1d_fwd  # noqa: E402,F401
from .reference import matmul  # noqa: E402,F401  (NumPy's a @ b: BLAS)
from .reference import bn_update_running, cross_entropy_bwd, cross_entropy_fwd  # noqa: E402,F401  (small arrays)
