"""A grid's runs carried between machines in one file.

A GPU machine lent for a while, whose files must come home, runs a grid and packs what it made;
another machine unpacks it and carries on (finished runs are reused, unfinished ones resume from
their last epoch's checkpoint), or only writes the report:

    tinysml compare ... --device cuda --out runs/g --archive g.tar.gz     # there: run, then pack runs/g
    tinysml compare ... --out runs/g --resume-from g.tar.gz                # here: unpack, run what is missing
    tinysml evidence --report-only --resume-from e.tar.gz                  # here: the doc from the runs

What is packed: every regular file under the grid's folder, except the teacher-output caches
(``teacher-outputs/``: recomputed from the teacher, bit for bit, when a student needs them) and
temporary files. The archive is written under a temporary name and renamed into place.

Unpacking trusts nothing in the file: only regular files and folders, at relative paths that stay
inside the target folder (no links, devices, absolute paths or ``..``), and nothing is unpickled
(checkpoints are ``.npz`` read with ``allow_pickle=False``, results are JSON). A file already present
is kept: what is on this machine wins.
"""
from __future__ import annotations

import os
import tarfile
import tempfile

SKIP_DIRS = {"teacher-outputs"}


def _members(root: str):
    """(path, name in the archive) of every file to pack, in a stable order."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".tmp"))
        for f in sorted(files):
            if f.startswith(".tmp") or f.endswith(".tmp"):
                continue
            path = os.path.join(folder, f)
            if os.path.isfile(path) and not os.path.islink(path):
                yield path, os.path.relpath(path, root)


def pack(root: str, archive: str) -> int:
    """Write every run file under ``root`` into ``archive`` (a .tar.gz), atomically; returns how many."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"nothing to pack: {root!r} is not a folder")
    parent = os.path.dirname(os.path.abspath(archive))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tar.gz", dir=parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for path, name in _members(root):
                tar.add(path, arcname=name, recursive=False)
                count += 1
        os.replace(tmp, archive)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count


def unpack(archive: str, root: str) -> dict:
    """Extract ``archive`` into ``root``, keeping files that are already there; returns counts
    {"added": n, "kept": n}. Refuses, before writing anything, an archive with any member that is
    not a regular file or folder or whose path leaves ``root``."""
    if not os.path.isfile(archive):
        raise FileNotFoundError(f"no archive at {archive!r}")
    root_abs = os.path.abspath(root)
    try:
        tar = tarfile.open(archive, mode="r:*")
    except tarfile.TarError as err:
        raise ValueError(f"{archive!r} is not a readable tar archive ({err}); was it written by --archive?") from err
    with tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.abspath(os.path.join(root_abs, m.name))
            if not (m.isfile() or m.isdir()) or os.path.isabs(m.name) or \
                    os.path.commonpath([root_abs, target]) != root_abs:
                raise ValueError(f"{archive!r} holds {m.name!r}, which is not a plain file inside the grid's "
                                 "folder; refusing to unpack any of it")
        counts = {"added": 0, "kept": 0}
        for m in members:
            if not m.isfile():
                continue
            target = os.path.join(root_abs, m.name)
            if os.path.exists(target):
                counts["kept"] += 1
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            src = tar.extractfile(m)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(target))
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, target)
            counts["added"] += 1
    return counts
