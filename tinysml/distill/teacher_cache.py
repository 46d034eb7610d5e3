"""The frozen teacher's outputs on the training windows, computed once and reused.

During distillation the teacher is frozen (eval mode, no gradient) and the students' batches are
not augmented, so the teacher's outputs on a training window are the same in every epoch, in every
phase (stage distillation, the end-to-end phase) and for every student variant of one seed. One
pass over the training windows gives all of them:

    logits        (N, K)          the teacher's class scores z_T
    association   (N, M)          p_T of its Hopfield memory (only for a head that holds one)
    stage<s>      (N, C_s, L_s)   its feature at each stage anchor s

A batch then reads its rows (``outputs.batch(idx)``) instead of running the teacher.

Cached and recomputed outputs are bitwise the same, so a run's results do not depend on whether
the cache was used: both run the teacher under ``batch_invariant()`` (tinysml.tensor), where every
window's output is computed in an order that does not depend on which windows share its batch.

On disk: a folder ``<key>/`` under ``teacher-outputs/`` beside the teacher's checkpoint (shared by
the students of one seed), one ``.npy`` file per output, read memory-mapped. The key hashes the
teacher's weights and the training windows, so another teacher or other data never reads a stale
cache. The folder is written under a temporary name and renamed into place: a killed run leaves
no partial cache, and of two runs that build it at once, one's copy is kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from ..backend import get_array_module
from ..cuda_graph import eval_runner
from ..models.heads import memory_unit
from ..tensor import Tensor, batch_invariant, no_grad
from .memory import teacher_association

CHUNK = 256
FORMAT = 1


def _host(a) -> np.ndarray:
    """A NumPy array of ``a`` (copied from the GPU for a CuPy array)."""
    return a if isinstance(a, np.ndarray) else a.get()


def teacher_forward(teacher, x: Tensor) -> dict:
    """Every output a distillation loss reads, for one batch, as arrays (see the module docstring).
    Batch-invariant, so that a batch's rows equal the cached rows bitwise."""
    with no_grad(), batch_invariant():
        h, stages = teacher.features(x, return_stages=True)
        out = {"logits": teacher.classifier(h).data}
        if memory_unit(teacher.classifier) is not None:
            out["association"] = teacher_association(teacher.classifier, h)[0]
    out.update({f"stage{s}": f.data for s, f in enumerate(stages)})
    return out


def cache_key(teacher, X: np.ndarray) -> str:
    """sha256 over the teacher's state (names, dtypes, shapes, bytes) and the training windows."""
    digest = hashlib.sha256(f"tinysml teacher outputs {FORMAT}".encode())
    for name, value in sorted(teacher.state_dict().items()):
        value = np.ascontiguousarray(_host(value))
        digest.update(f"{name} {value.dtype} {value.shape}".encode())
        digest.update(value.tobytes())
    X = np.ascontiguousarray(X)
    digest.update(f"X {X.dtype} {X.shape}".encode())
    digest.update(X.tobytes())
    return digest.hexdigest()[:32]


class TeacherOutputs:
    """The cached outputs of one teacher on one set of training windows."""

    def __init__(self, arrays: dict, folder: str | None = None):
        self.arrays, self.folder = arrays, folder
        self._on_device = None          # the arrays copied to the GPU once, for indices that live there

    def batch(self, idx, xp=np) -> dict:
        """The rows ``idx`` of every output, as arrays of module ``xp`` (numpy or cupy). Indices on
        the GPU gather on the GPU from a copy made once: no host transfer per batch, so a training
        step that reads the cache can be recorded as a CUDA graph (tinysml/cuda_graph.py)."""
        if isinstance(idx, np.ndarray):
            return {name: xp.asarray(a[idx]) for name, a in self.arrays.items()}
        if self._on_device is None:
            from ..cuda_graph import capturing
            if capturing():
                raise RuntimeError("the teacher's outputs must be on the GPU before a step is captured")
            dev = get_array_module(idx)
            self._on_device = {name: dev.asarray(np.ascontiguousarray(a)) for name, a in self.arrays.items()}
        return {name: a.take(idx, axis=0) for name, a in self._on_device.items()}

    @classmethod
    def compute(cls, teacher, X: np.ndarray, chunk: int = CHUNK) -> "TeacherOutputs":
        """One pass of the frozen teacher over X (N, C, L), ``chunk`` windows at a time."""
        xp = get_array_module(teacher.parameters()[0].data)
        run = eval_runner(teacher, "teacher_forward", lambda x: teacher_forward(teacher, Tensor(x)), chunk)
        parts = []
        for start in range(0, len(X), chunk):
            out = run(xp.asarray(X[start:start + chunk]))          # on a GPU: a CUDA graph per full chunk
            parts.append({k: _host(v) for k, v in out.items()})
        return cls({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    def save(self, folder: str) -> str:
        """Write every output under ``folder`` atomically (a temporary folder renamed into place);
        if another run got there first, its copy is kept. Returns ``folder``."""
        parent = os.path.dirname(os.path.abspath(folder))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            for name, a in self.arrays.items():
                np.save(os.path.join(tmp, f"{name}.npy"), np.ascontiguousarray(a), allow_pickle=False)
            meta = {"format": FORMAT, "rows": int(len(next(iter(self.arrays.values())))),
                    "arrays": {k: [str(a.dtype), list(a.shape)] for k, a in self.arrays.items()}}
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(meta, f)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not os.path.isdir(folder):          # not the "already there" race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str) -> "TeacherOutputs":
        """Memory-map a saved cache, checking every array against its ``meta.json``."""
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: teacher-output cache format {meta.get('format')!r}, expected {FORMAT}; "
                             "delete the folder to rebuild it")
        arrays = {}
        for name, (dtype, shape) in meta["arrays"].items():
            a = np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False)
            if str(a.dtype) != dtype or list(a.shape) != shape or len(a) != meta["rows"]:
                raise ValueError(f"{folder}/{name}.npy is {a.dtype} {a.shape}, its meta.json says {dtype} {shape}; "
                                 "delete the folder to rebuild it")
            arrays[name] = a
        return cls(arrays, folder)


def teacher_outputs(teacher, X: np.ndarray, root: str) -> TeacherOutputs:
    """The teacher's outputs on X from the cache under ``root`` (``root/<key>``), computed and
    saved there first if missing."""
    folder = os.path.join(root, cache_key(teacher, X))
    if not os.path.isdir(folder):
        TeacherOutputs.compute(teacher, X).save(folder)
    return TeacherOutputs.load(folder)
