"""Which kernels run, and which array module holds the data.

Kernels live in ``tinysml.kernels``: ``reference`` (NumPy, the definition), ``cpu`` (Numba) and
``cuda`` (CuPy + hand-written .cu). All three expose the same flat functions with the same
signatures (``dw_conv1d_fwd``, ``pw_conv1d_bwd``, ...).

Selection is explicit: ``set_backend("numpy" | "numba" | "cupy")`` or the ``TINYSML_BACKEND``
environment variable, read once at import. The default is ``numba`` when Numba imports, else
``numpy``. Whatever the CPU backend, arrays that live on the GPU (CuPy arrays) are always handled by
the CUDA kernels: the array module follows the data.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

_MODULES = {
    "numpy": "tinysml.kernels.reference",
    "numba": "tinysml.kernels.cpu",
    "cupy": "tinysml.kernels.cuda",
}
_EXTRA = {"numba": "numba (a core dependency: pip install numba)",
          "cupy": "the CUDA extra: pip install 'tinysml[cuda12]' or 'tinysml[cuda13]'"}

_state = {"name": None, "cpu": None, "gpu": None}


def get_array_module(array):
    """numpy for NumPy arrays (and anything that is not a CuPy array), cupy for CuPy arrays."""
    if isinstance(array, np.ndarray) or type(array).__module__.split(".")[0] != "cupy":
        return np
    import cupy
    return cupy


def _load(name: str):
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_MODULES)}")
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as err:
        raise ImportError(f"backend {name!r} is unavailable ({err}); install {_EXTRA.get(name, name)}") from err


def set_backend(name: str) -> None:
    """Choose the kernels: "numpy" (reference), "numba" (fast CPU) or "cupy" (GPU)."""
    module = _load(name)
    _state["name"] = name
    if name == "cupy":
        _state["gpu"] = module
    else:
        _state["cpu"] = module


def get_backend() -> str:
    _ensure_default()
    return _state["name"]


def _ensure_default() -> None:
    if _state["name"] is not None:
        return
    requested = os.environ.get("TINYSML_BACKEND", "").strip().lower()
    if requested:
        set_backend(requested)
        return
    try:
        set_backend("numba")
    except ImportError:
        set_backend("numpy")


def kernels_for(array):
    """The kernel module that handles ``array``: CUDA for CuPy arrays, else the chosen CPU one."""
    cpu = _state["cpu"]
    if cpu is not None and type(array) is np.ndarray:      # the common case, first (every op asks)
        return cpu
    _ensure_default()
    if get_array_module(array) is np:
        if _state["cpu"] is None:  # backend "cupy" chosen but a NumPy array arrived
            _state["cpu"] = _load("numpy")
        return _state["cpu"]
    if _state["gpu"] is None:
        _state["gpu"] = _load("cupy")
    return _state["gpu"]


_constants: dict = {}


def constant_on(xp, key, make):
    """A constant array ``make()`` (NumPy) as an array of module ``xp``: on the GPU copied once per
    ``key`` and device and kept, so that an operation reading it (a DFT matrix, an interpolation
    matrix) makes no host copy per call; that also keeps it legal inside a CUDA graph capture."""
    if xp is np:
        return make()
    cache_key = (key, xp.cuda.runtime.getDevice())
    if cache_key not in _constants:
        _constants[cache_key] = xp.asarray(make())
    return _constants[cache_key]
