"""Helpers shared by the side-by-side benchmark scripts: timing, a fair allocator for the peer, and
the network-and-input options of the GPU scripts."""
import os
import sys
import time

import numpy as np

# glibc malloc settings that keep freed memory mapped: fresh mmaps page-fault at ~2 us a page on the
# reference machine. tinysml's Numba backend sets the same behaviour for itself through mallopt
# (kernels/cpu_process.py); every comparison gives PyTorch and onnxruntime the same.
TUNABLES = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824"


def same_allocator_for_everyone() -> None:
    """Re-execute the running script once with TUNABLES in the environment (glibc reads them at
    process start), so that every library in the process, the peers included, gets them."""
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        os.environ["GLIBC_TUNABLES"] = TUNABLES
        os.execv(sys.executable, [sys.executable] + sys.argv)


def median_ms(fn, repeats, warmup=3):
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def best_of_rounds(timers: dict, rounds: int) -> dict:
    """{name: ms} from {name: a call that times one round and returns ms}: the timers take turns
    for ``rounds`` rounds and each keeps its best (the machine is shared: a neighbour's burst
    during one side's turn should not decide a ratio)."""
    best = {name: float("inf") for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer())
    return best


def blas_kernels() -> str:
    """Which OpenBLAS kernel set each loaded OpenBLAS runs (threadpoolctl), and whether the
    environment forced one: some machines set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) for old
    OpenBLAS builds, which slows a current one; every figure says which kernels produced it."""
    from threadpoolctl import threadpool_info
    libs = [f"{os.path.basename(i['filepath']).split('-')[0]} {i.get('architecture')}" for i in threadpool_info()
            if i.get("internal_api") == "openblas"]
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (f"OpenBLAS kernels: {', '.join(libs) or 'none loaded'}; "
            f"OPENBLAS_CORETYPE {'=' + forced if forced else 'unset (OpenBLAS chose)'}")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def network_options(parser, batch: int = 64):
    """The options every GPU script shares: the presets and the windows they are timed on."""
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--presets", nargs="+", default=["har-student", "har-teacher"])
    parser.add_argument("--channels", type=int, default=9)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--classes", type=int, default=6)
    return parser
