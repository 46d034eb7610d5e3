"""The host side of cuda/adamw.cu's multi-tensor AdamW: its ``Tensors`` argument as a NumPy
structured dtype (the same bytes as the C struct), and the packing of many parameters into
launches of up to CHUNK each. Importable without CuPy, so that the layout and the chunking are
tested on any machine (tests/test_kernels_cuda_fused.py); kernels/cuda_optim.py launches the kernel."""
from __future__ import annotations

import numpy as np

CHUNK = 64                    # parameters per launch: CHUNK in cuda/adamw.cu
TENSORS = np.dtype([("w", np.uint64, (CHUNK,)), ("g", np.uint64, (CHUNK,)), ("m", np.uint64, (CHUNK,)),
                    ("v", np.uint64, (CHUNK,)), ("n", np.int64, (CHUNK,))])      # 2560 bytes, no padding


def address(a) -> int:
    """Where an array's first element lives: a CuPy array's device pointer, a NumPy array's buffer."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data


def pack(ws, gs, ms, vs) -> list:
    """[(tensors, count, largest)] per launch: a (1,) TENSORS array holding the addresses of up to
    CHUNK parameters w, their gradients g and moments m, v (contiguous arrays, one dtype), the
    parameters' sizes, how many slots are used and the largest size (the launch's x extent)."""
    if not len(ws) == len(gs) == len(ms) == len(vs):
        raise ValueError(f"pack needs as many gradients and moments as parameters, got {len(ws)}, {len(gs)}, "
                         f"{len(ms)}, {len(vs)}")
    launches = []
    for start in range(0, len(ws), CHUNK):
        part = slice(start, start + CHUNK)
        tensors = np.zeros(1, TENSORS)
        count = len(ws[part])
        for field, arrays in (("w", ws[part]), ("g", gs[part]), ("m", ms[part]), ("v", vs[part])):
            tensors[field][0, :count] = [address(a) for a in arrays]
        sizes = [a.size for a in ws[part]]
        tensors["n"][0, :count] = sizes
        launches.append((tensors, count, max(sizes)))
    return launches
