"""Numba CPU backend, part 1: process set-up and the helpers every kernel uses.

(The kernels: ``cpu.py`` (depthwise convolutions, and the backend's full surface), ``cpu_dense.py``
(the stem's dense convolution), ``cpu_pointwise.py``, ``cpu_norm.py`` (batch norm), ``cpu_act.py``
(activations, squeeze-excite), ``cpu_optim.py``.)

What every kernel does to be fast on a small CPU is listed once, in ``cpu.py``'s docstring.

Process-wide settings, applied on import before Numba starts its threads (override by setting them):
* One thread pool: BLAS (used for the pointwise GEMMs) runs single-threaded (``threadpoolctl``;
  ``TINYSML_BLAS_THREADS=N`` or ``keep`` to change that) and Numba owns the cores. Two pools that
  both spin fight for 2 cores (7-40x slowdowns measured here); with one, OpenMP's default short
  spin keeps back-to-back kernel launches cheap (~1 us instead of ~50 us for a sleeping pool).
* The Numba cache folder and glibc's allocator: ``cpu_process.py`` (shared with the deployment
  kernel, which must not import SciPy).
"""
from __future__ import annotations

import os
import threading

from . import cpu_process  # noqa: F401  (cache folder and allocator: set before Numba compiles)

import numba  # noqa: E402
from numba import njit  # noqa: E402
import numpy as np  # noqa: E402
try:  # the BLAS Numba's np.dot calls (pointwise kernels): load it before limiting BLAS threads
    import scipy.linalg.cython_blas  # noqa: E402,F401
except ImportError:  # an inference-only install without SciPy: the depthwise/activation kernels still work
    pass
from threadpoolctl import threadpool_limits  # noqa: E402

if os.environ.get("TINYSML_BLAS_THREADS") != "keep":
    threadpool_limits(int(os.environ.get("TINYSML_BLAS_THREADS", "1")), user_api="blas")


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
    if getattr(_this_thread, "threads", -1) != threads:   # asking Numba costs ~2.5 us a launch: remember it
        numba.set_num_threads(threads)
        _this_thread.threads = threads
    kernel(*args)


_this_thread = threading.local()     # what _launch last set in this thread (Numba's setting is per thread)


_MAX_THREADS = max(1, min(int(os.environ.get("TINYSML_THREADS") or 0) or numba.config.NUMBA_NUM_THREADS,
                          numba.config.NUMBA_NUM_THREADS))


def max_threads() -> int:
    """How many threads a large kernel runs on (``TINYSML_THREADS``, default: all of Numba's)."""
    return _MAX_THREADS


def set_max_threads(n: int) -> None:
    """Run large kernels on ``n`` threads from now on (at most Numba's pool). One thread per process
    is what a pool of processes wants; results depend on it where partial sums are per thread."""
    global _MAX_THREADS
    _MAX_THREADS = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


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


@njit(inline="always")
def _spread(values, L, out):
    """out[k L + l] = values[k] for l < L: one number per channel laid along a span of channels
    (x[b, c0:c1, :] of a (B, C, L) array is one contiguous run of (c1 - c0) L values)."""
    for k in range(values.shape[0]):
        v = values[k]
        for i in range(L):
            out[k * L + i] = v


@njit(inline="always", fastmath=_FAST)
def _per_channel(acc, L, out):
    """out[k] = sum of acc[k L : (k + 1) L] in float64: each channel's share of a span."""
    for k in range(out.shape[0]):
        s = 0.0
        for i in range(L):
            s += acc[k * L + i]
        out[k] = s
