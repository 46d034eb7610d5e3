"""Numba CPU backend: pointwise (1x1) convolutions, the GEMMs that dominate a training step.

Two forms, picked per layer by ``_packed`` (a rule measured over every pointwise layer of the
presets, ``python bench/pointwise.py``):

* per batch element: one single-threaded BLAS GEMM (O, C) @ (C, L) per window, the batch spread
  over Numba's threads (one thread pool, no copies); best for long rows;
* packed: the batch packed to (C, B*L) and one GEMM (O, C) @ (C, B*L) with its rows split over
  the threads; best for short rows (L = 4-16) and wide layers, where a GEMM of L columns runs at a
  fraction of the machine's GFLOP/s. The weight gradient profits most: one GEMM of inner size B*L
  instead of B of inner size L.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_runtime import SMALL_WORK, _FAST, _alloc, _launch, max_threads, serial_twin


@serial_twin
@njit(parallel=True, cache=True)
def _pw_fwd(x, w, y):
    for b in prange(x.shape[0]):                      # one (O, C) @ (C, L) GEMM per batch element
        np.dot(w, x[b], y[b])


@serial_twin
@njit(parallel=True, cache=True)
def _pw_bwd(gy, x, wT, gx, parts):
    B, T = x.shape[0], parts.shape[0]
    for t in prange(T):                               # thread t: batch elements t, t + T, ...
        acc = parts[t]
        acc[:] = 0
        tmp = np.empty_like(acc)                      # one product buffer per thread, not one per b
        for b in range(t, B, T):
            np.dot(wT, gy[b], gx[b])                  # gx[b] = w^T gy[b]
            np.dot(gy[b], x[b].T, tmp)
            acc += tmp                                # partial gw of this thread


@serial_twin
@njit(parallel=True, cache=True)
def _pack(x, X2):
    """X2[c, b*L:(b+1)*L] = x[b, c]: (B, C, L) -> (C, B*L), so that a 1x1 conv over the whole
    batch is one GEMM with B*L columns instead of B GEMMs with L. Element loops, not slice
    assignments: on rows of 8-16 values a slice copy's set-up costs as much as the copy (2x here)."""
    B, C, L = x.shape
    for c in prange(C):
        d = X2[c]
        for b in range(B):
            s = x[b, c]
            for i in range(L):
                d[b * L + i] = s[i]


@serial_twin
@njit(parallel=True, cache=True)
def _unpack(Y2, y):
    """The inverse of _pack: y[b, o] = Y2[o, b*L:(b+1)*L]."""
    B, O, L = y.shape
    for o in prange(O):
        s = Y2[o]
        for b in range(B):
            d = y[b, o]
            for i in range(L):
                d[i] = s[b * L + i]


@njit(parallel=True, cache=True)
def _transpose_kernel(a, out):
    """out = a.T in 32 x 32 tiles (both sides stay in cache), tile rows spread over the threads."""
    R, C = a.shape
    for bi in prange((R + 31) // 32):
        r0, r1 = bi * 32, min(R, bi * 32 + 32)
        for c0 in range(0, C, 32):
            for r in range(r0, r1):
                for c in range(c0, min(C, c0 + 32)):
                    out[c, r] = a[r, c]


def _transposed(w, dtype):
    """A contiguous copy of w.T (the pointwise backward's w^T): tiled and parallel for large weights,
    2.5-4x NumPy's strided copy on the released student's (3840 x 2048: 53 -> 19 ms); NumPy's for
    small ones, where launching threads costs more."""
    if w.size < 1 << 18:
        return np.ascontiguousarray(w.T, dtype=dtype)
    if w.dtype != dtype or not w.flags.c_contiguous:
        w = np.ascontiguousarray(w, dtype=dtype)
    out = _alloc(w.shape[::-1], dtype)
    _launch(_transpose_kernel, w.size, w, out)
    return out


@serial_twin
@njit(parallel=True, cache=True)
def _rows_dot(a, b, out, T):
    """out = a @ b with the rows of a and out split over T threads (each a single-threaded GEMM)."""
    step = (a.shape[0] + T - 1) // T
    for t in prange(T):
        r0, r1 = t * step, min(a.shape[0], (t + 1) * step)
        if r1 > r0:
            np.dot(a[r0:r1], b, out[r0:r1])


def _packed(B: int, L: int, C: int, O: int, backward: bool) -> bool:
    """Whether the packed single-GEMM form beats one GEMM per batch element, as measured on the
    reference machine over every pointwise layer of the presets (``python bench/pointwise.py``):
    short rows, where a per-element GEMM of L = 4-16 columns runs at a fraction of the machine's
    GFLOP/s, once the layer is wide enough to pay for packing. The backward profits more (its
    weight gradient becomes one GEMM of inner size B*L instead of B of inner size L). A batch of
    one is one GEMM already."""
    if B == 1:
        return False
    wide = C * O
    if backward:
        return L <= 8 or (L <= 16 and wide >= 20_000) or (L <= 32 and wide >= 40_000) or wide >= 1 << 19
    return L <= 8 or (L <= 32 and wide >= 40_000) or wide >= 1 << 19


def pw_conv1d_fwd(x, w, b, batch_invariant=False):
    """Pointwise conv y[b] = w @ x[b] (+ bias[:, None]): x (B, C, L), w (O, C) -> y (B, O, L).

    Long rows: one single-threaded BLAS GEMM (O, C) @ (C, L) per batch element, the batch spread
    over Numba's threads (one thread pool, no copies). Short rows or wide layers (``_packed``): x is
    packed to (C, B*L) and one GEMM (O, C) @ (C, B*L) runs with its rows split over the threads.
    ``batch_invariant``: always the per-element form, whose GEMMs have the same shape whatever B is,
    so a window's output is bitwise the same in any batch (the packed GEMM's blocking follows B*L).
    """
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    y = _alloc((B, w.shape[0], L), x.dtype)
    if not batch_invariant and _packed(B, L, C, w.shape[0], backward=False):
        X2, Y2 = _alloc((C, B * L), x.dtype), _alloc((w.shape[0], B * L), x.dtype)
        _launch(_pack, y.size, x, X2)
        _launch(_rows_dot, y.size, w, X2, Y2, max_threads())
        _launch(_unpack, y.size, Y2, y)
    else:
        _launch(_pw_fwd, y.size, x, w, y)
    if b is not None:
        y += b[None, :, None]
    return y


def pw_conv1d_bwd(gy, x, w, bias_grad=True):
    """gx[b] = w^T @ gy[b];  gw = sum_b gy[b] @ x[b]^T;  gb = sum_{b,l} gy (None without ``bias_grad``).

    Long rows: per batch element, with per-thread partial sums of gw added at the end in a fixed
    order (results do not depend on timing). Short rows or wide layers (``_packed``): gy and x are
    packed to (O, B*L) and (C, B*L); gx = w^T G and gw = G X^T are two GEMMs with their rows split
    over the threads."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    wT = _transposed(w, x.dtype)
    B, C, L = x.shape
    O = w.shape[0]
    if _packed(B, L, C, O, backward=True):
        T = max_threads()
        X2, G2, GX2 = _alloc((C, B * L), x.dtype), _alloc((O, B * L), x.dtype), _alloc((C, B * L), x.dtype)
        gx, gw = _alloc(x.shape, x.dtype), _alloc((O, C), x.dtype)
        _launch(_pack, x.size, x, X2)
        _launch(_pack, gy.size, gy, G2)
        _launch(_rows_dot, gy.size, wT, G2, GX2, T)
        _launch(_rows_dot, gy.size, G2, X2.T, gw, T)
        _launch(_unpack, x.size, GX2, gx)
        return gx, gw, _channel_sum(gy) if bias_grad else None
    gx = _alloc(x.shape, x.dtype)
    threads = 1 if gy.size < SMALL_WORK else max_threads()
    parts = _alloc((threads, O, C), x.dtype)
    _launch(_pw_bwd, gy.size, gy, x, wT, gx, parts)
    return gx, parts.sum(axis=0), _channel_sum(gy) if bias_grad else None


@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_sum_kernel(a, out):
    B, C, L = a.shape
    for c in prange(C):
        acc = 0.0
        for bi in range(B):
            r = a[bi, c]
            row = r[0] * 0
            for i in range(L):
                row += r[i]
            acc += row
        out[c] = acc


def _channel_sum(a):
    out = _alloc(a.shape[1], a.dtype)
    _launch(_channel_sum_kernel, a.size, a, out)
    return out
