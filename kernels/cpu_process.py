"""Process set-up for every Numba kernel, with no import beyond NumPy's and Numba's own needs.

Imported first by ``cpu_runtime.py`` (the training backend) and by ``cpu_network.py`` (the fused
inference kernel that ``tinysml.deploy`` uses, which must not pull in SciPy):

* ``NUMBA_CACHE_DIR``: compiled kernels are cached (``cache=True``) where ``cache_dir.choose``
  says: next to the sources when the package folder is writable, else the user's cache folder, else
  the temporary folder (a warm read-only cache is copied there first), so import does not fail on
  a read-only install.
* glibc's malloc keeps freed memory instead of returning it to the OS (``mallopt``), so the large
  temporaries of every step reuse already-mapped pages instead of page-faulting (~2 us a page here).
  Set ``TINYSML_KEEP_MALLOC=1`` to leave the allocator alone.
* Plain (uncoloured) Numba error messages: colorama's stream swapping must not run on the
  deployment path's background compile thread.
* A quick exit: the interpreter's last garbage collection walks every object Numba and LLVM
  created (0.21 s of a 0.74 s deployment process here). An ``atexit`` hook freezes the heap first
  (``gc.freeze()``), so that collection skips it; the process's memory goes back to the OS as it
  would anyway, and Python never promised finalizers at exit. ``TINYSML_FAST_EXIT=0`` turns it off.
* No SciPy import for a kernel that does not use BLAS. Numba's first compile or cache load
  imports ``numba.np.arraymath``, which asks "is there a BLAS?" by importing
  ``scipy.linalg.cython_blas``, and with it all of ``scipy.linalg`` (0.19 s of a 0.57 s deployment
  process here, most of it SciPy's array-API layer touching every lazy NumPy submodule).
  ``_answer_blas_question_lazily`` answers that question by looking for SciPy's BLAS module on
  disk instead; the answer is the same, and a kernel that does call BLAS still imports SciPy
  (Numba does it when it compiles ``np.dot``, and when the compiled call first runs).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import os

from . import cache_dir


CACHE = cache_dir.choice()          # {"dir", "writable", "how"}: see kernels/cache_dir.py


def _configure_process() -> None:
    if CACHE["dir"] is not None and not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = CACHE["dir"]
    # Numba colours its error messages with colorama, whose init()/deinit() reassign sys.stdout and
    # sys.stderr for the whole process; the deployment path compiles on a background thread, where
    # that would undo a redirection the main thread made meanwhile (it did, to pytest's capture).
    os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
    if os.environ.get("TINYSML_KEEP_MALLOC") != "1":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
            libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        except (OSError, AttributeError):   # not glibc: nothing to tune
            pass
    if os.environ.get("TINYSML_FAST_EXIT") != "0":
        atexit.register(gc.freeze)


_configure_process()

import numba  # noqa: E402


def _answer_blas_question_lazily() -> None:
    """Let ``numba.np.arraymath`` learn whether SciPy's BLAS exists without importing it.

    Its module-level ``_HAVE_BLAS = _check_blas()`` calls ``numba.np.linalg.ensure_blas``, which
    imports ``scipy.linalg.cython_blas``. For that one import we swap in a check that finds the
    module's file without running it; Numba's own ``ensure_blas`` is back in place before any code
    is compiled (its BLAS codegen calls it again, and it then imports SciPy and checks the
    integer width as before). On a Numba without these names nothing is changed.
    """
    import importlib.machinery
    import importlib.util
    import sys
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        import numba.np.linalg as nlinalg
        real_ensure_blas = nlinalg.ensure_blas
    except (ImportError, AttributeError):
        return

    def scipy_blas_on_disk():
        spec = importlib.util.find_spec("scipy")
        folders = list(spec.submodule_search_locations or []) if spec else []
        suffixes = importlib.machinery.EXTENSION_SUFFIXES
        if not any(os.path.exists(os.path.join(f, "linalg", "cython_blas" + s)) for f in folders for s in suffixes):
            raise ImportError("scipy 0.16+ is required for linear algebra")

    nlinalg.ensure_blas = scipy_blas_on_disk
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        nlinalg.ensure_blas = real_ensure_blas


_answer_blas_question_lazily()

if "NUMBA_CACHE_DIR" in os.environ and numba.config.CACHE_DIR != os.environ["NUMBA_CACHE_DIR"]:
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]   # numba was imported before us
