"""A stand-in for CuPy on a machine without a GPU, for the tests of kernels/cuda.py.

Its arrays are NumPy arrays that answer like CuPy ones where kernels/cuda.py asks (``.data.ptr``,
``.get()``). Its kernels check every launch against the kernel's C signature, as the C preprocessor
expands the source (``cpp``), and record it. With ``emulate=True`` they also run: the source is
compiled for the host with ``g++`` (the CUDA keywords defined away, ``threadIdx`` and the rest as
global variables) and each launch calls the kernel once per thread of every block, in order.
Threads never run at once, so a kernel whose threads cooperate through shared memory (a sum over
the block, ``COOPERATIVE``) is run with one thread per block: its loops stride over ``blockDim.x``
and cover the same elements, in another order. The GEMM, whose threads load tiles for each other
in a fixed pattern, is not emulated (``EMULATED`` lists the sources that are).

tests/test_cuda_launches.py checks the arguments; tests/test_cuda_emulated.py runs the kernels
against kernels/reference.py. Neither proves anything about a GPU's own behaviour (memory model,
rounding modes of its fused multiply-adds): that is tests/test_kernels_cuda.py's, on a GPU."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

from tinysml.kernels import cuda_source

SIGNATURE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\s*\(\s*\w+\s*\)\s*)?(\w+)\s*\(([^)]*)\)')
SCALARS = {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64, "float": np.float32,
           "double": (np.float64, float)}
POINTEES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64}
CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "unsigned long long": ctypes.c_ulonglong,
          "float": ctypes.c_float, "double": ctypes.c_double}
EMULATED = {"act", "loss", "adamw", "bn_act", "depthwise"}     # not gemm: its threads load tiles for each other
COOPERATIVE = ("bn_stats", "bn_act_grad_sums", "channel_scale_act_grad", "time_mean_f", "cross_entropy_fwd",
               "dw_conv1d_bwd_weight_f")                  # a shared-memory sum over the block's threads

SOURCES = ("act", "adamw", "bn_act", "depthwise", "gemm", "loss")     # kernels/cuda/<name>.cu
CUPY_MODULES = ("cuda", "cuda_runtime", "cuda_act", "cuda_norm", "cuda_optim")   # tinysml.kernels.*, importing CuPy

HOST_SHIM = """
#include <cmath>
using std::exp; using std::expm1; using std::log; using std::pow; using std::sqrt;
struct tinysml_dim3 { unsigned int x, y, z; };
extern "C" { tinysml_dim3 threadIdx, blockIdx, blockDim, gridDim; }
unsigned char smem_raw[1 << 16];
#define __global__
#define __device__
#define __shared__
#define __launch_bounds__(n)
#define __forceinline__ inline
#define __syncthreads() ((void)0)
"""


class DeviceArray(np.ndarray):
    """A NumPy array that answers like a CuPy one where kernels/cuda.py asks."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def get(self):
        return np.array(self)


def device(a, dtype=None):
    return np.array(a, dtype=dtype).view(DeviceArray)


def signatures(code: str) -> dict:
    """kernel name -> [parameter declarations], from the preprocessed source."""
    out = subprocess.run(["cpp", "-P", "-x", "c++", "-"], input=code, capture_output=True, text=True, check=True)
    return {name: [p.strip() for p in params.split(",")] for name, params in SIGNATURE.findall(out.stdout)}


def parameter_type(declaration: str) -> str:
    """'const float* __restrict__ x' -> 'float*'; 'long long total' -> 'long long'; 'const Tensors ts' -> 'Tensors'."""
    words = re.sub(r"\b(const|__restrict__)\b", "", declaration).replace("*", " * ").split()
    return " ".join(words[:-1]).replace(" *", "*")


def check_argument(kernel, declaration, arg):
    kind = parameter_type(declaration)
    if kind.endswith("*"):
        assert isinstance(arg, DeviceArray), f"{kernel}: {declaration!r} given {type(arg).__name__}"
        assert arg.dtype == POINTEES[kind[:-1]], f"{kernel}: {declaration!r} given a {arg.dtype} array"
        if not kernel.startswith("gemm_"):                   # the GEMM takes its operands' strides; the rest index
            assert arg.flags.c_contiguous, f"{kernel}: {declaration!r} given an array that is not contiguous"
    elif kind in SCALARS:
        assert isinstance(arg, SCALARS[kind]) and not isinstance(arg, DeviceArray), \
            f"{kernel}: {declaration!r} given {type(arg).__name__} {arg!r}"
    else:                                                     # a struct passed by value: a structured array
        assert isinstance(arg, np.ndarray) and arg.dtype.names and arg.shape == (1,), \
            f"{kernel}: {declaration!r} given {type(arg).__name__}"


@functools.lru_cache(maxsize=None)
def host_library(code: str):
    """The kernels of ``code`` compiled for the host (g++), loaded with ctypes."""
    folder = os.path.join(tempfile.gettempdir(), "tinysml-cuda-emulated")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256((HOST_SHIM + code).encode()).hexdigest()[:16]
    library = os.path.join(folder, f"{digest}.so")
    if not os.path.exists(library):
        source = os.path.join(folder, f"{digest}.cpp")
        with open(source, "w") as f:
            f.write(HOST_SHIM + code)
        partial = library + f".{os.getpid()}.tmp"
        subprocess.run(["g++", "-O1", "-std=c++14", "-shared", "-fPIC", "-o", partial, source], check=True,
                       capture_output=True, text=True)
        os.replace(partial, library)
    return ctypes.CDLL(library)


def _struct_type(arg):
    """A ctypes Structure with the bytes of a NumPy structured array's one element."""
    fields = [(name, CTYPES["unsigned long long" if arg.dtype[name].base == np.uint64 else "long long"]
               * arg.dtype[name].shape[0]) for name in arg.dtype.names]
    return type("Struct", (ctypes.Structure,), {"_fields_": fields})


def emulate(library, name, params, grid, block, args):
    """Run kernel ``name`` of the host library once per thread of every block (see the module's
    docstring for the kernels whose threads cooperate)."""
    fn = getattr(library, name)
    ctypes_args, argtypes = [], []
    for declaration, arg in zip(params, args):
        kind = parameter_type(declaration)
        if kind.endswith("*"):
            argtypes.append(ctypes.c_void_p)
            ctypes_args.append(arg.__array_interface__["data"][0])
        elif kind in CTYPES:
            argtypes.append(CTYPES[kind])
            ctypes_args.append(arg.item() if hasattr(arg, "item") else arg)
        else:
            struct = _struct_type(arg)
            argtypes.append(struct)
            ctypes_args.append(struct.from_buffer_copy(arg.tobytes()))
    fn.argtypes, fn.restype = argtypes, None
    dims = {n: (ctypes.c_uint * 3).in_dll(library, n) for n in ("threadIdx", "blockIdx", "blockDim", "gridDim")}
    threads = 1 if name.startswith(COOPERATIVE) else int(np.prod(block))
    gx, gy = grid[0], grid[1] if len(grid) > 1 else 1
    dims["blockDim"][:] = (threads, 1, 1)
    dims["gridDim"][:] = (gx, gy, 1)
    for by in range(gy):
        for bx in range(gx):
            dims["blockIdx"][:] = (bx, by, 0)
            for t in range(threads):
                dims["threadIdx"][:] = (t, 0, 0)
                fn(*ctypes_args)


def fake_cupy(launches: list, elementwise: list, emulated: bool = False):
    cp = types.ModuleType("cupy")
    cp.__version__ = "stand-in"
    for name in ("float32", "float64", "int32", "int64", "intp", "dtype", "result_type", "sqrt"):
        setattr(cp, name, getattr(np, name))
    cp.pad = lambda a, *args, **kwargs: device(np.pad(a, *args, **kwargs))
    cp.ndarray = DeviceArray
    cp.ascontiguousarray = lambda a, dtype=None: device(np.ascontiguousarray(a, dtype=dtype))
    cp.empty = lambda shape, dtype=np.float32: device(np.full(shape, np.nan, dtype=dtype))
    cp.empty_like = lambda a, dtype=None: device(np.full(a.shape, np.nan, dtype=dtype or a.dtype))
    cp.zeros = lambda shape, dtype=np.float32: device(np.zeros(shape, dtype))
    cp.zeros_like = lambda a, dtype=None: device(np.zeros(a.shape, dtype or a.dtype))
    cp.broadcast_to = lambda a, shape: device(np.broadcast_to(a, shape))

    class RawModule:
        def __init__(self, code, options=()):
            self.code, self.signatures = code, signatures(code)
            self.source = next((name for name in SOURCES if cuda_source.source(name) == code), None)

        def get_function(self, name):
            params = self.signatures[name]

            def launch(grid, block, args, shared_mem=0):
                assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
                for declaration, arg in zip(params, args):
                    check_argument(name, declaration, arg)
                assert all(isinstance(g, (int, np.integer)) and g >= 1 for g in grid), f"{name}: grid {grid}"
                assert all(isinstance(b, (int, np.integer)) and b >= 1 for b in block) and np.prod(block) <= 1024
                assert isinstance(shared_mem, int) and shared_mem >= 0
                launches.append((name, tuple(grid), tuple(block), args))
                if emulated:
                    assert self.source in EMULATED, f"{name}: the {self.source} kernels are not emulated"
                    emulate(host_library(self.code), name, params, grid, block, args)
            return launch

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, **kwargs):
            self.name, self.params = name, [p for p in (in_params + "," + out_params).split(",") if p.strip()]

        def __call__(self, *args):
            assert len(args) == len(self.params), f"{self.name}: {len(args)} arguments for {self.params}"
            assert not emulated, f"{self.name}: CuPy's elementwise kernels are not emulated"
            elementwise.append(self.name)

    cp.RawModule, cp.ElementwiseKernel = RawModule, ElementwiseKernel
    runtime = types.SimpleNamespace(getDevice=lambda: 0, getDeviceProperties=lambda d: {"multiProcessorCount": 132})
    cp.cuda = types.SimpleNamespace(runtime=runtime)
    return cp


def cuda_backend(monkeypatch, emulated: bool = False):
    """tinysml.kernels.cuda imported afresh on the stand-in, with ``launches`` and ``elementwise``
    lists; returns (module, restore) where restore() takes it and the modules it imports away again
    (the real ones, if any, put back: ``from tinysml.kernels import cuda`` must never find the
    stand-in's)."""
    import pytest
    for tool in ("cpp",) + (("g++",) if emulated else ()):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on this machine")
    import tinysml.kernels as kernels_package
    launches, elementwise = [], []
    real = {name: vars(kernels_package)[name] for name in CUPY_MODULES if name in vars(kernels_package)}
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(launches, elementwise, emulated))
    for name in CUPY_MODULES:
        monkeypatch.delitem(sys.modules, f"tinysml.kernels.{name}", raising=False)
    module = importlib.import_module("tinysml.kernels.cuda")
    module.launches, module.elementwise = launches, elementwise

    def restore():
        for name in CUPY_MODULES:
            sys.modules.pop(f"tinysml.kernels.{name}", None)     # monkeypatch then puts back what was there
            vars(kernels_package).pop(name, None)
        vars(kernels_package).update(real)
    return module, restore
