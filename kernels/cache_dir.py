"""Where Numba's compiled kernels are cached, decided without importing Numba (the deployment path
asks before it decides whether to import it at all).

Numba caches a ``cache=True`` kernel next to its source (``kernels/__pycache__``) or, when
``NUMBA_CACHE_DIR`` is set, under ``$NUMBA_CACHE_DIR/kernels_<sha1 of the kernels folder>/``; with
no writable place it cannot even import the kernel. tinysml picks, in order:

1. ``NUMBA_CACHE_DIR`` when the user set it (taken as it is);
2. ``kernels/__pycache__`` of the installed package, when it can be written;
3. ``$XDG_CACHE_HOME/tinysml/numba`` (else ``~/.cache/tinysml/numba``), when it can be written;
4. ``$TMPDIR/tinysml-numba-<uid>`` (a cache that lasts until the temporary folder is cleared).

A cache that is already warm but cannot be written (a read-only image in which ``tinysml warmup``
ran at build time) is copied to the first writable place of 3-4 and used from there, so the image
starts warm. When nothing is writable there is no cache: ``writable`` is False and the deployment
path stays on NumPy rather than compile on every start (``tinysml.deploy`` says so once).
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
import tempfile

KERNELS = os.path.dirname(os.path.abspath(__file__))
IN_TREE = os.path.join(KERNELS, "__pycache__")


def _writable(folder: str) -> bool:
    """Whether ``folder`` exists or can be made, and a file can be created in it."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def user_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinysml", "numba")


def temp_cache() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"tinysml-numba-{uid}")


def kernel_folder(cache_dir: str | None) -> str:
    """The folder Numba writes this package's kernel caches to, for ``NUMBA_CACHE_DIR=cache_dir``
    (None: next to the sources). Mirrors numba.core.caching's locators."""
    if cache_dir is None:
        return IN_TREE
    sub = "_".join([os.path.basename(KERNELS), hashlib.sha1(KERNELS.encode()).hexdigest()])
    return os.path.join(os.path.abspath(cache_dir), sub)


def cached(cache_dir: str | None, module: str, names) -> bool:
    """Whether Numba would load every kernel ``module.name`` from the cache rather than compile it:
    each has an index written by the installed Numba for the source as it is now."""
    source = os.path.join(KERNELS, f"{module}.py")
    try:
        with open(source, "rb") as f:
            st = os.fstat(f.fileno())
            stamps = (hashlib.sha256(f.read()).digest(), (st.st_mtime, st.st_size))   # recent and older Numba's
    except OSError:
        return False
    version = _numba_version()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    folder = kernel_folder(cache_dir)
    return all(any(_index_matches(f, stamps, version)
                   for f in glob.glob(os.path.join(folder, f"{module}.{name}-*.{tag}.nbi")))
               for name in names)


def _numba_version() -> str | None:
    from importlib import metadata
    try:
        return metadata.version("numba")
    except metadata.PackageNotFoundError:
        return None


def _index_matches(index: str, stamps: tuple, version: str | None) -> bool:
    """Whether the Numba cache index ``index`` was written by Numba ``version`` for the source whose
    ``stamps`` are (sha256 of its bytes, (mtime, size)). An index holds two pickles: Numba's
    version, then (stamp, overloads), where the stamp is the first (recent Numba) or the second
    (older releases). Numba ignores an index whose version or stamp differ. Only the leading
    constants are read, with ``pickletools``, which decodes opcodes without building any object:
    nothing in the cache is imported or run."""
    import pickletools
    try:
        with open(index, "rb") as f:
            written_by = [arg for _, arg, _ in pickletools.genops(f) if isinstance(arg, str)]
            stamp = []
            for op, arg, _ in pickletools.genops(f):           # PROTO and FRAME carry the format
                if op.name not in ("PROTO", "FRAME") and isinstance(arg, (bytes, float, int)):
                    stamp.append(arg)
                if len(stamp) == 2:
                    break
    except (OSError, ValueError, EOFError):
        return False
    if version is None or written_by != [version] or not stamp:
        return False
    digest, mtime_size = stamps
    return stamp[0] == digest if isinstance(stamp[0], bytes) else tuple(stamp) == mtime_size


_choice: dict = {}


def choice() -> dict:
    """``choose()``, decided once per process (it may create folders and copy a warm cache)."""
    if not _choice:
        _choice.update(choose())
    return _choice


def choose() -> dict:
    """The cache to use: {"dir": NUMBA_CACHE_DIR to set (None: next to the sources), "writable": bool,
    "how": a sentence for the user}. Copies a warm read-only cache to a writable place (see above)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        path = os.environ["NUMBA_CACHE_DIR"]
        return {"dir": path, "writable": _writable(path), "how": "NUMBA_CACHE_DIR, as set"}
    if _writable(IN_TREE):
        return {"dir": None, "writable": True, "how": "next to the kernels' sources"}
    fallbacks = [(user_cache(), "the user's cache folder"), (temp_cache(), "the temporary folder (until it is cleared)")]
    for path, how in fallbacks:
        if _writable(path):
            _copy_warm(IN_TREE, kernel_folder(path))
            return {"dir": path, "writable": True, "how": f"{how}: the package folder is read-only"}
    return {"dir": None, "writable": False,
            "how": "nowhere: neither the package folder, the user's cache folder nor the temporary folder can be "
                   "written (set NUMBA_CACHE_DIR to a writable folder)"}


def _copy_warm(src: str, dst: str) -> None:
    """Copy the cache files of a read-only in-tree cache that the writable one lacks."""
    for f in glob.glob(os.path.join(src, "*.nb[ic]")):
        target = os.path.join(dst, os.path.basename(f))
        if not os.path.exists(target):
            try:
                os.makedirs(dst, exist_ok=True)
                shutil.copy2(f, target)           # keeps the time stamp the freshness check reads
            except OSError:
                return
