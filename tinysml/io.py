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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def load(path) -> dict:
    """Read a checkpoint tree. Raises CheckpointError for truncated, corrupt or foreign files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            if META_KEY not in data.files:
                raise CheckpointError(f"{path!r} is an .npz file but not a tinysml checkpoint (no {META_KEY!r} entry)")
            meta = json.loads(str(data[META_KEY]))
            arrays = {k: data[k] for k in data.files if k != META_KEY}   # reads (and CRC-checks) every entry
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure while reading means a corrupt file
        # (seen under fuzzing: BadZipFile, EOFError, OSError, ValueError, KeyError, JSONDecodeError, and
        # SyntaxError / tokenize.TokenError from NumPy's parser of a damaged .npy header)
        size = os.path.getsize(path)
        raise CheckpointError(f"checkpoint {path!r} ({size} bytes) is truncated or corrupt and cannot be read "
                              f"({type(err).__name__}: {err}); delete it and re-create it") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("tree"), (dict, list)):
        raise CheckpointError(f"{path!r} is not a tinysml checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path!r} has checkpoint format version {meta.get('version')}, "
                              f"this tinysml reads version {VERSION}")
    try:
        return unpack(meta["tree"], arrays)
    except KeyError as err:
        raise CheckpointError(f"checkpoint {path!r} is inconsistent: entry {err} is missing") from err


# --------------------------------------------------------------------------- models
def model_tree(model, **extra) -> dict:
    """What a model checkpoint holds: the architecture, the weights, and ``extra`` (class names,
    scaling statistics, metrics, ...)."""
    return {"kind": "model", "config": model.config.to_dict(), "state": model.state_dict(), **extra}


def save_model(path, model, **extra) -> None:
    save(path, model_tree(model, **extra))


def load_model(path):
    """Rebuild the model stored in ``path``; returns (model, tree) where tree holds the extras."""
    from .models import build_model
    tree = load(path)
    if tree.get("kind") != "model":
        raise CheckpointError(f"{path!r} holds a {tree.get('kind')!r} checkpoint, not a model")
    model = build_model(tree["config"])
    try:
        model.load_state_dict(tree["state"])
    except ValueError as err:
        raise CheckpointError(f"{path!r}: {err}") from err
    return model, tree
