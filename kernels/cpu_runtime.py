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
import types

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
    thread costs ~50 us here, more than a small kernel takes. Small work goes to the kernel's
    serial twin where it has one (``serial_twin``)."""
    threads = 1 if work < SMALL_WORK else _MAX_THREADS
    if threads == 1 and use_twins and kernel in _TWINS:
        twin = _TWINS[kernel]
        if twin is None:
            twin = _TWINS[kernel] = serial_compile(kernel)
        twin(*args)
        return
    if getattr(_this_thread, "threads", -1) != threads:   # asking Numba costs ~2.5 us a launch: remember it
        numba.set_num_threads(threads)
        _this_thread.threads = threads
    kernel(*args)


_this_thread = threading.local()     # what _launch last set in this thread (Numba's setting is per thread)


_MAX_THREADS = max(1, min(int(os.environ.get("TINYSML_THREADS") or 0) or numba.config.NUMBA_NUM_THREADS,
                          numba.config.NUMBA_NUM_THREADS))


_TWINS = {}              # parallel kernel -> its serial twin (None until first used)
use_twins = True         # testing aid: False runs every kernel through Numba's parallel loop


def serial_twin(kernel):
    """Mark a ``parallel=True`` kernel to run, on small work, as its serial twin: the same source
    compiled without ``parallel``, so that ``prange`` is a plain ``range``. Even on one thread a
    parallel kernel goes through Numba's loop scheduler, about 1 us a call; on a batch of one
    that is most of a small kernel's time (a (1, 48, 32) batch norm: 1.4 us, its twin 0.4 us).

    Marked kernel by kernel, where the twin measured faster on every shape and gave the same bits
    (``bench/twins.py``). A serial loop is not always compiled as well as the parallel one: the
    depthwise kernels (1.5-5x slower serial: Numba's parallel lowering hoists their per-channel
    buffers out of the loop), eval batch norm + activation, batch norm's backward and AdamW stay
    unmarked; so does the float32 SELU forward, whose twin gives other bits in some elements.
    ``tests/test_kernels_cpu.py::test_serial_twins_same_bits`` holds every marked kernel to its
    parallel compilation's bits. The twin is compiled from a renamed copy of the function, so that
    Numba's cache keeps the two compilations apart."""
    _TWINS[kernel] = None
    return kernel


def serial_compile(kernel):
    """``kernel``'s source compiled without ``parallel`` (its serial twin), from a renamed copy."""
    f = kernel.py_func
    copy = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    copy.__qualname__, copy.__doc__ = f.__qualname__ + "_serial", f.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
    # cache=True is the dispatcher's option, not in targetoptions: without it every process compiled
    # every twin again (about 20 s of a cold training process here; the warm one too)
    return njit(cache=kernel._cache.__class__.__name__ != "NullCache", **options)(copy)


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
