"""The CUDA C that the CUDA backend compiles (``kernels/cuda_runtime.py``): ``cuda/<name>.cu`` with
its local headers written into it. Importable without CuPy, so that the text NVRTC is given can be
checked on any machine (``tests/test_kernels_cuda.py`` compiles it with nvcc where nvcc is installed)."""
from __future__ import annotations

import os
import re

SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")
INCLUDE = re.compile(r'^#include "(\w+\.cuh)"$', re.M)


def source(name: str) -> str:
    """``cuda/<name>.cu`` with every ``#include "x.cuh"`` replaced by that header's text (its
    ``#pragma once`` dropped). CuPy keys its cache of compiled kernels by the source text, so a
    changed header must change the text, which an include left to the compiler would not."""
    def header(match):
        with open(os.path.join(SOURCES, match.group(1))) as f:
            return f.read().replace("#pragma once\n", "")
    with open(os.path.join(SOURCES, f"{name}.cu")) as f:
        return INCLUDE.sub(header, f.read())
