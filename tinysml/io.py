"""Checkpoints: one ``.npz`` file, loaded with ``allow_pickle=False``.

A checkpoint stores a *tree*: nested dicts and lists whose leaves are arrays or JSON values
(numbers, strings, None). ``pack`` splits a tree into the arrays (saved as npz entries named by
their path, e.g. ``model/state/stem.0.weight``) and a JSON skeleton (saved as the entry
``__tinysml__``) in which each array is replaced by {"__array__": its entry name}. Files are written
to a temporary file beside the target and moved into place with ``os.replace``, so a kill never
leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

FORMAT = "tinysml-checkpoint"
VERSION = 1
META_KEY = "__tinysml__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, corrupt, or of another format or model."""


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.split(".")[0] == "cupy"


def pack(tree, prefix: str = ""):
    """(arrays dict, JSON-able skeleton) for a nested tree of dicts/lists/arrays/scalars."""
    arrays = {}

    def walk(node, path):
        if _is_array(node):
            arrays[path] = node if isinstance(node, np.ndarray) else node.get()
            return {"__array__": path}
        if isinstance(node, dict):
            return {str(k): walk(v, f"{path}/{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if isinstance(node, (np.floating, np.integer, np.bool_)):
            return node.item()
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store a {type(node).__name__} at {path!r} in a checkpoint")

    return arrays, walk(tree, prefix)


def unpack(skeleton, arrays):
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__array__"}:
            return arrays[skeleton["__array__"]]
        return {k: unpack(v, arrays) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unpack(v, arrays) for v in skeleton]
    return skeleton


def write_atomic(path, write) -> None:
    """Call ``write(f)`` on a binary file beside ``path``, then move it into place: readers see the
    old file or the complete new one, never a part; on any failure the temporary file is removed."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())           # the mode a plain open() would give (mkstemp's is 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj) -> None:
    """``obj`` as indented JSON, written atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def save(path, tree: dict) -> None:
    """Write ``tree`` atomically to ``path`` (a .npz file)."""
    arrays, skeleton = pack(tree)
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY!r} is reserved")
    meta = json.dumps({"format": FORMAT, "version": VERSION, "tree": skeleton})
    write_atomic(path, lambda f: np.savez(f, **{META_KEY: np.array(meta)}, **arrays))


def max_bytes() -> int:
    """The most uncompressed bytes one checkpoint may expand to (``TINYSML_MAX_CHECKPOINT_MB``,
    default 4096 MiB: a training checkpoint of the largest preset holds ~1.3 GB)."""
    return int(float(os.environ.get("TINYSML_MAX_CHECKPOINT_MB", 4096)) * 2**20)


def _references(skeleton) -> list:
    """The npz entry names a skeleton refers to, in order."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__array__"}:
            return [skeleton["__array__"]] if isinstance(skeleton["__array__"], str) else [None]
        return [name for v in skeleton.values() for name in _references(v)]
    if isinstance(skeleton, list):
        return [name for v in skeleton for name in _references(v)]
    return []


def load(path) -> dict:
    """Read a checkpoint tree. Raises CheckpointError for truncated, corrupt, foreign or oversized files.

    Only the entries the skeleton refers to are read, after their declared (uncompressed) sizes
    have been summed from the zip directory and found under ``max_bytes()``: an entry smuggled in
    beside the checkpoint, or one that would expand to gigabytes, is never decompressed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"{path!r} is a folder; expected a checkpoint file (.npz)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if META_KEY not in data.files:
                raise CheckpointError(f"{path!r} is an .npz file but not a tinysml checkpoint (no {META_KEY!r} entry)")
            if data.zip.getinfo(META_KEY + ".npy").file_size > 64 * 2**20:
                raise CheckpointError(f"{path!r}: its {META_KEY!r} entry is larger than 64 MiB; not a tinysml checkpoint")
            meta = json.loads(str(data[META_KEY]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("tree"), (dict, list)):
                raise CheckpointError(f"{path!r} is not a tinysml checkpoint")
            if meta.get("version") != VERSION:
                raise CheckpointError(f"{path!r} has checkpoint format version {meta.get('version')}, "
                                      f"this tinysml reads version {VERSION}")
            names = _references(meta["tree"])
            absent = [n for n in names if n not in data.files or n == META_KEY]
            if absent:
                raise CheckpointError(f"checkpoint {path!r} is inconsistent: entry {absent[0]!r} is missing")
            size = sum(data.zip.getinfo(n + ".npy").file_size for n in set(names))
            if size > max_bytes():
                raise CheckpointError(f"checkpoint {path!r} would expand to {size / 2**20:,.0f} MiB, over the limit of "
                                      f"{max_bytes() / 2**20:,.0f} MiB (set TINYSML_MAX_CHECKPOINT_MB to raise it)")
            arrays = {n: data[n] for n in set(names)}          # reads (and CRC-checks) the referenced entries
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure while reading means a corrupt file
        # (seen under fuzzing: BadZipFile, EOFError, OSError, ValueError, KeyError, JSONDecodeError, and
        # SyntaxError / tokenize.TokenError from NumPy's parser of a damaged .npy header)
        size = os.path.getsize(path)
        raise CheckpointError(f"checkpoint {path!r} ({size} bytes) is truncated or corrupt and cannot be read "
                              f"({type(err).__name__}: {err}); delete it and re-create it") from err
    return unpack(meta["tree"], arrays)


# --------------------------------------------------------------------------- models
def model_tree(model, **extra) -> dict:
    """What a model checkpoint holds: the architecture, the weights, and ``extra`` (class names,
    scaling statistics, metrics, ...)."""
    return {"kind": "model", "config": model.config.to_dict(), "state": model.state_dict(), **extra}


def save_model(path, model, **extra) -> None:
    save(path, model_tree(model, **extra))


def load_model(path):
    """Rebuild the model stored in ``path``; returns (model, tree) where tree holds the extras."""
    from .architecture import ArchitectureError, check_model_tree
    from .models import build_model
    tree = load(path)
    if tree.get("kind") != "model":
        raise CheckpointError(f"{path!r} holds a {tree.get('kind')!r} checkpoint, not a model")
    try:
        check_model_tree(tree, repr(str(path)))         # before building: no network from a config that lies
    except ArchitectureError as err:
        raise CheckpointError(str(err)) from err
    model = build_model(tree["config"])
    model.load_state_dict(tree["state"])
    return model, tree
