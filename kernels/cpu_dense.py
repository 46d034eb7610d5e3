"""Numba CPU backend: the dense (and grouped) 1-D convolution, which the networks use once, as
their stem (see ``cpu.py``, which re-exports every kernel). Its stride-2 taps read rows split once
into their phases (``_phases``), so every tap is a contiguous, vectorised axpy or dot."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import reference
from .cpu_runtime import _EMPTY, _FAST, _alloc, _launch, _tap_range, serial_twin
from .reference import conv_out_len


@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_bwd_input(gy, w, gx, stride, padding, dilation):
    B, C, L = gx.shape
    O, _, K = w.shape
    Lout = gy.shape[2]
    for bc in prange(B * C):                          # a thread owns the input row (b, c)
        bi, c = bc // C, bc % C
        gxr = gx[bi, c]
        for j in range(L):
            gxr[j] = 0.0
        for o in range(O):
            gyr = gy[bi, o]
            for k in range(K):
                lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                if hi <= lo:
                    continue
                wk = w[o, c, k]
                gys = gyr[lo:hi]
                gxs = gxr[j0:j0 + (hi - lo - 1) * stride + 1:stride]
                for i in range(hi - lo):
                    gxs[i] += wk * gys[i]


@serial_twin
@njit(parallel=True, cache=True)
def _phases(x, xs):
    """xs[b, c, p, m] = x[b, c, m S + p] (zero past the end): each row split into its S phases, so
    that a stride-S tap reads a contiguous slice of one phase instead of every S-th value."""
    B, C, L = x.shape
    S, Lp = xs.shape[2], xs.shape[3]
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        r = x[bi, c]
        for p in range(S):
            o = xs[bi, c, p]
            for m in range(Lp):
                j = m * S + p
                o[m] = r[j] if j < L else 0.0


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_fwd(xs, w, b, y, stride, padding, dilation, L):
    """y[b, o] = bias[o] + sum_{c,k} w[o, c, k] x[b, c, l S + k D - P], one output row (b, o) per
    iteration, over the phases xs of x (``_phases``): every tap is a contiguous axpy (vectorised)."""
    B, C = xs.shape[0], xs.shape[1]
    O, _, K = w.shape
    Lout = y.shape[2]
    for bo in prange(B * O):
        bi, o = bo // O, bo % O
        yr = y[bi, o]
        bias = b[o] if b.shape[0] > 0 else 0.0
        for i in range(Lout):
            yr[i] = bias
        for c in range(C):
            for k in range(K):
                lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                if hi <= lo:
                    continue
                wk = w[o, c, k]
                ys = yr[lo:hi]
                m0 = j0 // stride
                xs_ = xs[bi, c, j0 - m0 * stride, m0:m0 + hi - lo]
                for i in range(hi - lo):
                    ys[i] += wk * xs_[i]


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_bwd_weight(gy, xs, gw, gb, stride, padding, dilation, L):
    """gw[o, c, k] = sum_{b,l} gy[b, o, l] x[b, c, l S + k D - P] and gb[o] = sum gy[:, o], a thread
    per output channel o, over the phases xs of x: every dot product reads contiguous slices."""
    B, C = xs.shape[0], xs.shape[1]
    O, _, K = gw.shape
    Lout = gy.shape[2]
    for o in prange(O):
        acc = np.zeros((C, K), np.float64)
        gb_acc = 0.0
        for bi in range(B):
            gyr = gy[bi, o]
            row = gyr[0] * 0
            for i in range(Lout):
                row += gyr[i]
            gb_acc += row
            for c in range(C):
                for k in range(K):
                    lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                    if hi <= lo:
                        continue
                    gys = gyr[lo:hi]
                    m0 = j0 // stride
                    xs_ = xs[bi, c, j0 - m0 * stride, m0:m0 + hi - lo]
                    dot = gys[0] * 0
                    for i in range(hi - lo):
                        dot += gys[i] * xs_[i]
                    acc[c, k] += dot
        for c in range(C):
            for k in range(K):
                gw[o, c, k] = acc[c, k]
        gb[o] = gb_acc


def _phased(x, stride):
    """x (B, C, L) as its phases (B, C, S, ceil(L / S)); with stride 1 that is x itself, a view."""
    B, C, L = x.shape
    if stride == 1:
        return x.reshape(B, C, 1, L)
    xs = _alloc((B, C, stride, -(-L // stride)), x.dtype)
    _launch(_phases, x.size, x, xs)
    return xs


def conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Dense conv: y[b, o, l] = bias[o] + sum_{c,k} w[o, c, k] x[b, c, lS + kD - P]. x (B, C, L),
    w (O, C, K) -> y (B, O, Lout). Parallel over output rows (b, o); taps as vectorised axpys.
    Grouped convolutions (groups > 1) use the reference kernel."""
    if groups != 1:
        return reference.conv1d_fwd(x, w, b, stride, padding, dilation, groups)
    B, C, L = x.shape
    O, _, K = w.shape
    y = _alloc((B, O, conv_out_len(L, K, stride, padding, dilation)), x.dtype)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    b = _EMPTY[x.dtype] if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    _launch(_conv_fwd, y.size, _phased(x, stride), w, b, y, stride, padding, dilation, L)
    return y


def conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1, groups=1, input_grad=True):
    """Dense conv gradients: gx parallel over input rows (b, c), gw and gb parallel over output
    channels o (each a sum over b and l of row dot products). Grouped: the reference kernel.
    ``input_grad=False`` skips gx (None): the stem's input is data (70% of the stem's backward)."""
    if groups != 1:
        return reference.conv1d_bwd(gy, x, w, stride, padding, dilation, groups, input_grad)
    gy, x, w = np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    gx = _alloc(x.shape, x.dtype) if input_grad else None
    gw = _alloc(w.shape, x.dtype)
    gb = _alloc(w.shape[0], x.dtype)
    if input_grad:
        _launch(_conv_bwd_input, gx.size, gy, w, gx, stride, padding, dilation)
    _launch(_conv_bwd_weight, x.size, gy, _phased(x, stride), gw, gb, stride, padding, dilation, x.shape[2])
    return gx, gw, gb
