"""CUDA backend, part 1: CuPy, the compiled kernels and the launch helpers every kernel uses.

(The kernels: ``cuda.py`` (depthwise and dense convolutions, matrix products, and the backend's
full surface), ``cuda_norm.py`` (batch norm), ``cuda_act.py`` (activations, squeeze-excite, the
loss), ``cuda_optim.py`` (AdamW).) The sources are ``cuda/*.cu``, compiled by ``cupy.RawModule`` on
first use (once per device; CuPy caches the binaries, keyed by the source text, which is why
``cuda_source.py`` writes the shared header into each file).
"""
from __future__ import annotations

import functools

try:
    import cupy as cp
except ImportError as err:  # pragma: no cover - depends on the machine
    raise ImportError("the CUDA backend needs CuPy: pip install 'tinysml[cuda12]' or 'tinysml[cuda13]'") from err

from . import cuda_source
from .reference import ACTIVATIONS

THREADS = 256
_modules: dict = {}
_ACT_CODE = {"identity": 0, "relu": 1, "relu6": 2, "hardswish": 3, "hardsigmoid": 4, "selu": 5, "sigmoid": 6}


def _kernel(source: str, name: str, dtype):
    """The compiled kernel ``name``_f32/_f64 from ``cuda/<source>.cu`` for the current device."""
    key = (source, cp.cuda.runtime.getDevice())
    if key not in _modules:
        _modules[key] = cp.RawModule(code=cuda_source.source(source), options=("-std=c++14",))
    suffix = {cp.dtype(cp.float32): "f32", cp.dtype(cp.float64): "f64"}.get(cp.dtype(dtype))
    if suffix is None:
        raise TypeError(f"CUDA kernels take float32 or float64 arrays, got {dtype}")
    return _modules[key].get_function(f"{name}_{suffix}")


def _blocks(n, items=1):
    """A 1-D grid of THREADS-thread blocks covering n elements, ``items`` per thread."""
    return ((int(n) + THREADS * items - 1) // (THREADS * items),)


def _act_code(name: str) -> int:
    if name not in _ACT_CODE:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return _ACT_CODE[name]


def _row_threads(L: int) -> int:
    """Threads of a block that sums one row of L values: a power of two (block_sum), 32 to THREADS."""
    return min(THREADS, max(32, 1 << max(L - 1, 0).bit_length()))


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: int) -> int:
    return cp.cuda.runtime.getDeviceProperties(device)["multiProcessorCount"]
