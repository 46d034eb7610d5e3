"""Reading pickled data without running arbitrary code.

Two data sets reachable here are pickles: HAPT (pandas DataFrames, protocol 2) and seglearn's watch
set (a dict of NumPy arrays inside an object .npy). ``safe_load`` unpickles with ``find_class``
restricted to NumPy's array reconstruction and, for pandas, to inert stand-in classes that only
record their state (so neither pandas nor an old pandas is needed). Anything else is refused.
"""
from __future__ import annotations

import codecs
import copyreg
import io
import pickle

import numpy as np


class Recorded:
    """Stands in for a pandas class: keeps what unpickling hands it."""

    def __setstate__(self, state):
        self.state = state


class DataFrameState(Recorded):
    pass


class BlockManagerState(Recorded):
    pass


def _new_index(cls, d):
    return d                               # the dict with 'data' (labels) or start/stop/step


_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
_PANDAS = {
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("pandas.core.frame", "DataFrame"): DataFrameState,
    ("pandas.core.internals.managers", "BlockManager"): BlockManagerState,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): type("Index", (Recorded,), {}),
    ("pandas.core.indexes.range", "RangeIndex"): type("RangeIndex", (Recorded,), {}),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, allowed):
        super().__init__(f, encoding="latin1")
        self.allowed = allowed

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a plain NumPy/pandas data object") from None


def safe_load(f, pandas: bool = False):
    """Unpickle from a binary file object allowing NumPy arrays (and pandas frames when asked)."""
    return _RestrictedUnpickler(f, {**_NUMPY, **(_PANDAS if pandas else {})}).load()


def dataframe_columns(frame: DataFrameState) -> dict:
    """column name -> 1-D array, from a recorded pandas DataFrame (BlockManager state)."""
    axes, blocks, block_items, _ = frame.state["_data"].state
    columns = {}
    for values, items in zip(blocks, block_items):
        for name, row in zip(items["data"], np.atleast_2d(values)):
            columns[str(name)] = row
    return columns


def load_object_npy(path):
    """The object stored in a 0-d object .npy (e.g. a dict), without np.load(allow_pickle=True)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
        if dtype != np.dtype(object):
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = safe_load(io.BytesIO(f.read()))
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
