"""Numba CPU kernels: the same names and signatures as ``reference.py``, faster.

What every kernel here does to be fast on a small CPU (measured in ``bench/``):

* ``prange`` runs over *independent outputs only* (a row (b, c), a channel c): no two iterations
  ever write the same element, so there are no races and results do not depend on thread timing.
* Padding is never materialised: for tap k the valid outputs l satisfy 0 <= l*S + k*D - P < L, so
  the kernel computes that range [lo, hi) once and runs a plain loop from 0 over a slice
  (Numba vectorises ``for i in range(n): y[i] += w * x[i]``, not loops that start at an offset).
* Reductions (weight and bias gradients, batch statistics) sum each row in the array's dtype with
  reassociation allowed (so they vectorise) and add the row sums into a float64 accumulator.
* Pointwise (1x1) convolutions are matrix products: OpenBLAS through NumPy's ``matmul``.

Process-wide settings, applied on import before Numba starts its threads (override by setting them):
* One thread pool: BLAS (used for the pointwise GEMMs) runs single-threaded (``threadpoolctl``;
  ``TINYSML_BLAS_THREADS=N`` or ``keep`` to change that) and Numba owns the cores. Two pools that
  both spin fight for 2 cores (7-40x slowdowns measured here); with one, OpenMP's default short
  spin keeps back-to-back kernel launches cheap (~1 us instead of ~50 us for a sleeping pool).
* ``NUMBA_CACHE_DIR``: compiled kernels are cached (``cache=True``); when the package folder is
  not writable the cache goes to ``$XDG_CACHE_HOME/tinysml/numba`` (else ``~/.cache/...``), so
  import never fails on a read-only install.
* glibc's malloc keeps freed memory instead of returning it to the OS (``mallopt``), so the large
  temporaries of every step reuse already-mapped pages instead of page-faulting (~2 us a page here).
  Set ``TINYSML_KEEP_MALLOC=1`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os


def _configure_process() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if "NUMBA_CACHE_DIR" not in os.environ and not os.access(os.path.join(here, "__pycache__") if os.path.isdir(
            os.path.join(here, "__pycache__")) else here, os.W_OK):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "tinysml", "numba")
    if os.environ.get("TINYSML_KEEP_MALLOC") != "1":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
            libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        except (OSError, AttributeError):   # not glibc: nothing to tune
            pass


_configure_process()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
try:  # the BLAS Numba's np.dot calls (pointwise kernels): load it before limiting BLAS threads
    import scipy.linalg.cython_blas  # noqa: E402,F401
except ImportError:  # an inference-only install without SciPy: the depthwise/activation kernels still work
    pass
from threadpoolctl import threadpool_limits  # noqa: E402

if os.environ.get("TINYSML_BLAS_THREADS") != "keep":
    threadpool_limits(int(os.environ.get("TINYSML_BLAS_THREADS", "1")), user_api="blas")

from . import reference  # noqa: E402
from .reference import ACTIVATIONS, SELU_ALPHA, SELU_SCALE, conv_out_len  # noqa: E402,F401

if "NUMBA_CACHE_DIR" in os.environ and numba.config.CACHE_DIR != os.environ["NUMBA_CACHE_DIR"]:
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]   # numba was imported before us

_FAST = {"reassoc", "contract"}            # allow vectorised sums; no assumptions about NaN or inf
_poison = False


def set_poison(flag: bool) -> None:
    """Testing aid: when on, every output buffer starts filled with NaN, so an element a kernel
    forgets to write shows up in the comparison with the reference."""
    global _poison
    _poison = bool(flag)


SMALL_WORK = 1 << 15      # below this many elements a kernel runs on the calling thread alone


def _launch(kernel, work, *args):
    """Run a prange kernel on all of Numba's threads, or on one for small work: waking a sleeping
    thread costs ~50 us here, more than a small kernel takes."""
    threads = 1 if work < SMALL_WORK else _MAX_THREADS
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    kernel(*args)


_MAX_THREADS = numba.config.NUMBA_NUM_THREADS


def _alloc(shape, dtype):
    return np.full(shape, np.nan, dtype) if _poison else np.empty(shape, dtype)


_EMPTY = {np.dtype(np.float32): np.zeros(0, np.float32), np.dtype(np.float64): np.zeros(0, np.float64)}


@njit(inline="always")
def _tap_range(k, L, Lout, stride, padding, dilation):
    """Outputs [lo, hi) of tap k whose input index j = l*S + k*D - P lies in [0, L), and the input
    index of output lo."""
    off = k * dilation - padding
    if L - 1 - off < 0:
        return 0, 0, 0
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    hi = min(Lout, (L - 1 - off) // stride + 1)
    return lo, hi, lo * stride + off


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


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_fwd_stride2(x, w, b, y, padding, dilation):
    """Stride 2: each row is split once into its even and odd samples (a per-thread scratch), so
    that every tap x[2l + off] becomes a contiguous slice of one of them (and vectorises)."""
    B, C, L = x.shape
    K = w.shape[1]
    Lout = y.shape[2]
    half = (L + 1) // 2
    for c in prange(C):                               # a thread owns channel c, for every b
        even = np.empty(half, x.dtype)
        odd = np.empty(half, x.dtype)
        bias = b[c] if b.shape[0] > 0 else 0.0
        for bi in range(B):
            xr, yr = x[bi, c], y[bi, c]
            for m in range(L // 2):
                even[m] = xr[2 * m]
                odd[m] = xr[2 * m + 1]
            if L % 2:
                even[half - 1] = xr[L - 1]
            for i in range(Lout):
                yr[i] = bias
            for k in range(K):
                lo, hi, j0 = _tap_range(k, L, Lout, 2, padding, dilation)
                if hi <= lo:
                    continue
                src = even if j0 % 2 == 0 else odd
                xs = src[j0 // 2:j0 // 2 + hi - lo]
                ys = yr[lo:hi]
                wk = w[c, k]
                for i in range(hi - lo):
                    ys[i] += wk * xs[i]


@njit(parallel=True, cache=True, fastmath=_FAST)
def _dw_bwd(gy, x, w, gx, gw, gb, stride, padding, dilation):
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
                wk = w[c, k]
                gys = gyr[lo:hi]
                xs = xr[j0:j0 + (hi - lo - 1) * stride + 1:stride]
                gxs = gxr[j0:j0 + (hi - lo - 1) * stride + 1:stride]
                dot = gys[0] * 0
                for i in range(hi - lo):
                    gxs[i] += wk * gys[i]
                    dot += gys[i] * xs[i]
                gw_acc[k] += dot
        for k in range(K):
            gw[c, k] = gw_acc[k]
        gb[c] = gb_acc


def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """Depthwise conv: y[b, c, l] = bias[c] + sum_k w[c, k] x[b, c, l*S + k*D - P] (zero outside [0, L)).

    x (B, C, L), w (C, K), b (C,) or None -> y (B, C, Lout). For each tap a vectorised axpy over the
    valid output range (no padded copy of x): parallel over rows (b, c) for stride 1, over channels
    with a deinterleaved copy of each row for stride 2.
    """
    B, C, L = x.shape
    K = w.shape[1]
    y = _alloc((B, C, conv_out_len(L, K, stride, padding, dilation)), x.dtype)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    b = _EMPTY[x.dtype] if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    if stride == 2:
        _launch(_dw_fwd_stride2, x.size, x, w, b, y, padding, dilation)
    else:
        _launch(_dw_fwd, x.size, x, w, b, y, stride, padding, dilation)
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """Depthwise conv gradients, gathered per channel (no atomics, no races):
    gx[b, c, lS + kD - P] += w[c, k] gy[b, c, l];  gw[c, k] = sum_{b,l} gy[b, c, l] x[b, c, lS + kD - P];
    gb[c] = sum_{b,l} gy[b, c, l].   Parallel over channels; one pass over gy and x computes all three.
    """
    gx = _alloc(x.shape, x.dtype)
    gw = _alloc(w.shape, x.dtype)
    gb = _alloc(w.shape[0], x.dtype)
    _launch(_dw_bwd, x.size, np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype), gx, gw, gb,
            stride, padding, dilation)
    return gx, gw, gb


# =========================================================================== dense conv1d (the stem)
@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_fwd(x, w, b, y, stride, padding, dilation):
    B, C, L = x.shape
    O, _, K = w.shape
    Lout = y.shape[2]
    for bo in prange(B * O):                          # one output row (b, o) per iteration
        bi, o = bo // O, bo % O
        yr = y[bi, o]
        bias = b[o] if b.shape[0] > 0 else 0.0
        for i in range(Lout):
            yr[i] = bias
        for c in range(C):
            xr = x[bi, c]
            for k in range(K):
                lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                if hi <= lo:
                    continue
                wk = w[o, c, k]
                ys = yr[lo:hi]
                xs = xr[j0:j0 + (hi - lo - 1) * stride + 1:stride]
                for i in range(hi - lo):
                    ys[i] += wk * xs[i]


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


@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_bwd_weight(gy, x, gw, gb, stride, padding, dilation):
    B, C, L = x.shape
    O, _, K = gw.shape
    Lout = gy.shape[2]
    for o in prange(O):                               # a thread owns gw[o] and gb[o]
        acc = np.zeros((C, K), np.float64)
        gb_acc = 0.0
        for bi in range(B):
            gyr = gy[bi, o]
            row = gyr[0] * 0
            for i in range(Lout):
                row += gyr[i]
            gb_acc += row
            for c in range(C):
                xr = x[bi, c]
                for k in range(K):
                    lo, hi, j0 = _tap_range(k, L, Lout, stride, padding, dilation)
                    if hi <= lo:
                        continue
                    gys = gyr[lo:hi]
                    xs = xr[j0:j0 + (hi - lo - 1) * stride + 1:stride]
                    dot = gys[0] * 0
                    for i in range(hi - lo):
                        dot += gys[i] * xs[i]
                    acc[c, k] += dot
        for c in range(C):
            for k in range(K):
                gw[o, c, k] = acc[c, k]
        gb[o] = gb_acc


def conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Dense conv: y[b, o, l] = bias[o] + sum_{c,k} w[o, c, k] x[b, c, lS + kD - P]. x (B, C, L),
    w (O, C, K) -> y (B, O, Lout). Parallel over output rows (b, o); taps as vectorised axpys.
    Grouped convolutions (groups > 1) use the reference kernel."""
    if groups != 1:
        return reference.conv1d_fwd(x, w, b, stride, padding, dilation, groups)
    B, C, L = x.shape
    O, _, K = w.shape
    y = _alloc((B, O, conv_out_len(L, K, stride, padding, dilation)), x.dtype)
    _launch(_conv_fwd, y.size, np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype),
              _EMPTY[x.dtype] if b is None else np.ascontiguousarray(b, dtype=x.dtype), y, stride, padding, dilation)
    return y


def conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """Dense conv gradients: gx parallel over input rows (b, c), gw and gb parallel over output
    channels o (each a sum over b and l of row dot products). Grouped: the reference kernel."""
    if groups != 1:
        return reference.conv1d_bwd(gy, x, w, stride, padding, dilation, groups)
    gy, x, w = np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    gx = _alloc(x.shape, x.dtype)
    gw = _alloc(w.shape, x.dtype)
    gb = _alloc(w.shape[0], x.dtype)
    _launch(_conv_bwd_input, gx.size, gy, w, gx, stride, padding, dilation)
    _launch(_conv_bwd_weight, x.size, gy, x, gw, gb, stride, padding, dilation)
    return gx, gw, gb


# =========================================================================== pointwise conv1d
@njit(parallel=True, cache=True)
def _pw_fwd(x, w, y):
    for b in prange(x.shape[0]):                      # one (O, C) @ (C, L) GEMM per batch element
        np.dot(w, x[b], y[b])


@njit(parallel=True, cache=True)
def _pw_bwd(gy, x, wT, gx, parts):
    B, T = x.shape[0], parts.shape[0]
    for t in prange(T):                               # thread t: batch elements t, t + T, ...
        acc = parts[t]
        acc[:] = 0
        for b in range(t, B, T):
            np.dot(wT, gy[b], gx[b])                  # gx[b] = w^T gy[b]
            acc += np.dot(gy[b], x[b].T)              # partial gw of this thread


def pw_conv1d_fwd(x, w, b):
    """Pointwise conv y[b] = w @ x[b] (+ bias[:, None]): x (B, C, L), w (O, C) -> y (B, O, L).

    One single-threaded BLAS GEMM (O, C) @ (C, L) per batch element, the batch spread over Numba's
    threads: one thread pool for everything, and no transposed copies of x.
    """
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    y = _alloc((x.shape[0], w.shape[0], x.shape[2]), x.dtype)
    _launch(_pw_fwd, y.size, x, w, y)
    if b is not None:
        y += b[None, :, None]
    return y


def pw_conv1d_bwd(gy, x, w):
    """gx[b] = w^T @ gy[b];  gw = sum_b gy[b] @ x[b]^T (per-thread partial sums, added at the end in a
    fixed order, so results do not depend on timing);  gb = sum_{b,l} gy."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    wT = np.ascontiguousarray(w.T, dtype=x.dtype)
    gx = _alloc(x.shape, x.dtype)
    threads = 1 if gy.size < SMALL_WORK else _MAX_THREADS
    parts = _alloc((threads, w.shape[0], w.shape[1]), x.dtype)
    _launch(_pw_bwd, gy.size, gy, x, wT, gx, parts)
    return gx, parts.sum(axis=0), _channel_sum(gy)


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


# =========================================================================== batch norm
@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_train_fwd(x, gamma, beta, eps, y, mean, var, invstd):
    B, C, L = x.shape
    n = B * L
    for c in prange(C):                               # statistics and normalisation of channel c
        s = 0.0
        for bi in range(B):
            r = x[bi, c]
            row = r[0] * 0
            for i in range(L):
                row += r[i]
            s += row
        mu = s / n
        ss = 0.0
        for bi in range(B):
            r = x[bi, c]
            row = 0.0
            for i in range(L):
                d = r[i] - mu
                row += d * d
            ss += row
        v = ss / n
        inv = 1.0 / np.sqrt(v + eps)
        mean[c], var[c], invstd[c] = mu, v, inv
        scale = gamma[c] * inv
        shift = beta[c] - mu * scale
        for bi in range(B):
            r, o = x[bi, c], y[bi, c]
            for i in range(L):
                o[i] = r[i] * scale + shift


def bn_train_fwd(x, gamma, beta, eps):
    """Batch norm with batch statistics (float64 accumulation), one pass per channel in parallel:
    y = gamma (x - mean) invstd + beta. Returns y, mean, var (biased), invstd."""
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    y = _alloc(x.shape, x.dtype)
    mean, var, invstd = (_alloc(C, x.dtype) for _ in range(3))
    _launch(_bn_train_fwd, x.size, x, gamma.astype(x.dtype, copy=False), beta.astype(x.dtype, copy=False), eps, y, mean, var, invstd)
    return y, mean, var, invstd


@njit(parallel=True, cache=True, fastmath=_FAST)
def _affine(x, scale, shift, y):
    B, C, L = x.shape
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        r, o = x[bi, c], y[bi, c]
        s, t = scale[c], shift[c]
        for i in range(L):
            o[i] = r[i] * s + t


def bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode batch norm as a per-channel affine map y = x scale + shift."""
    scale = (gamma / np.sqrt(running_var + eps)).astype(x.dtype)
    shift = (beta - running_mean * scale).astype(x.dtype)
    y = _alloc(x.shape, x.dtype)
    _launch(_affine, x.size, np.ascontiguousarray(x), scale, shift, y)
    return y


@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_bwd(gy, x, gamma, mean, invstd, gx, ggamma, gbeta):
    B, C, L = x.shape
    n = B * L
    for c in prange(C):
        mu, inv = mean[c], invstd[c]
        sg, sgx = 0.0, 0.0
        for bi in range(B):
            g, r = gy[bi, c], x[bi, c]
            row_g = g[0] * 0
            row_gx = g[0] * 0
            for i in range(L):
                row_g += g[i]
                row_gx += g[i] * (r[i] - mu)
            sg += row_g
            sgx += row_gx
        gbeta[c] = sg
        gg = sgx * inv                                # sum gy * xhat
        ggamma[c] = gg
        k = gamma[c] * inv / n
        a = k * n
        bcoef = k * gg * inv                          # multiplies (x - mean)
        ccoef = k * sg
        for bi in range(B):
            g, r, o = gy[bi, c], x[bi, c], gx[bi, c]
            for i in range(L):
                o[i] = a * g[i] - bcoef * (r[i] - mu) - ccoef


def bn_bwd(gy, x, gamma, mean, invstd):
    """Batch norm gradients per channel in parallel: gbeta = sum gy, ggamma = sum gy xhat,
    gx = gamma invstd / N (N gy - gbeta - xhat ggamma)."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    C = x.shape[1]
    gx = _alloc(x.shape, x.dtype)
    ggamma, gbeta = _alloc(C, x.dtype), _alloc(C, x.dtype)
    _launch(_bn_bwd, x.size, gy, x, gamma.astype(x.dtype, copy=False), mean, invstd, gx, ggamma, gbeta)
    return gx, ggamma, gbeta


# =========================================================================== activations
# One branch-free kernel per activation (a dispatch inside the element loop stops vectorisation).
@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = max(x[i], 0.0)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] if x[i] > 0 else 0.0


@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu6_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = min(max(x[i], 0.0), 6.0)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu6_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] if 0 < x[i] < 6 else 0.0


@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardswish_fwd(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = v * (min(max(v + 3.0, 0.0), 6.0) * (1.0 / 6.0))


@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardswish_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        v = x[i]
        d = 0.0 if v < -3 else (v * (1.0 / 3.0) + 0.5 if v <= 3 else 1.0)
        gx[i] = g[i] * d


@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardsigmoid_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = min(max(x[i] + 3.0, 0.0), 6.0) * (1.0 / 6.0)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardsigmoid_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] * (1.0 / 6.0) if -3 < x[i] < 3 else 0.0


@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_fwd(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = SELU_SCALE * v if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.expm1(v)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        v = x[i]
        gx[i] = g[i] * (SELU_SCALE if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.exp(v))


@njit(parallel=True, cache=True, fastmath=_FAST)
def _sigmoid_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = 0.5 * (np.tanh(0.5 * x[i]) + 1.0)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _sigmoid_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        s = 0.5 * (np.tanh(0.5 * x[i]) + 1.0)
        gx[i] = g[i] * s * (1.0 - s)


_ACT = {"relu": (_relu_fwd, _relu_bwd), "relu6": (_relu6_fwd, _relu6_bwd),
        "hardswish": (_hardswish_fwd, _hardswish_bwd), "hardsigmoid": (_hardsigmoid_fwd, _hardsigmoid_bwd),
        "selu": (_selu_fwd, _selu_bwd), "sigmoid": (_sigmoid_fwd, _sigmoid_bwd)}


def act_fwd(name, x):
    """y = act(x) elementwise over the flattened array, in parallel (see reference.act_fwd)."""
    if name == "identity":
        return x.copy()
    if name not in _ACT:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    x = np.ascontiguousarray(x)
    y = _alloc(x.shape, x.dtype)
    _launch(_ACT[name][0], x.size, x.reshape(-1), y.reshape(-1))
    return y


def act_bwd(name, x, gy):
    """gx = act'(x) gy elementwise (see reference.act_bwd for the derivatives at the kinks)."""
    if name == "identity":
        return gy.copy()
    if name not in _ACT:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    gx = _alloc(x.shape, x.dtype)
    _launch(_ACT[name][1], x.size, x.reshape(-1), gy.reshape(-1), gx.reshape(-1))
    return gx


# =========================================================================== squeeze-excite
@njit(parallel=True, cache=True, fastmath=_FAST)
def _scale_fwd(x, s, y):
    B, C, L = x.shape
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        r, o = x[bi, c], y[bi, c]
        f = s[bi, c]
        for i in range(L):
            o[i] = r[i] * f


@njit(parallel=True, cache=True, fastmath=_FAST)
def _scale_bwd(gy, x, s, gx, gs):
    B, C, L = x.shape
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        g, r, o = gy[bi, c], x[bi, c], gx[bi, c]
        f = s[bi, c]
        acc = g[0] * 0
        for i in range(L):
            o[i] = g[i] * f
            acc += g[i] * r[i]
        gs[bi, c] = acc


def channel_scale_fwd(x, s):
    """y[b, c, l] = x[b, c, l] s[b, c], parallel over rows (b, c)."""
    x = np.ascontiguousarray(x)
    y = _alloc(x.shape, x.dtype)
    _launch(_scale_fwd, x.size, x, np.ascontiguousarray(s, dtype=x.dtype), y)
    return y


def channel_scale_bwd(gy, x, s):
    """gx = gy s;  gs[b, c] = sum_l gy[b, c, l] x[b, c, l] — one pass, parallel over rows."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    gx = _alloc(x.shape, x.dtype)
    gs = _alloc(x.shape[:2], x.dtype)
    _launch(_scale_bwd, x.size, gy, x, np.ascontiguousarray(s, dtype=x.dtype), gx, gs)
    return gx, gs
