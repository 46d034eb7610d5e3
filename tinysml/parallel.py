"""Local process pools for independent jobs (seeds, runs, head-search candidates).

    with process_pool() as pool:            # one worker per core, one compute thread each
        futures = [pool.submit(job, seed) for seed in seeds]

Workers are spawned (safe with Numba's and BLAS's thread pools) and each runs its kernels on
``threads`` threads: on a 2-core machine two single-threaded processes keep both cores busy
without two thread pools fighting over them, and results do not depend on how many jobs ran at
once (a kernel's per-thread partial sums are the same in every run).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys


def _limit_threads(threads: int) -> None:
    """Worker initializer: kernels imported from now on read TINYSML_THREADS; any already imported
    (a script's imports run before the initializer under spawn) are told directly."""
    os.environ["TINYSML_THREADS"] = str(threads)
    runtime = sys.modules.get("tinysml.kernels.cpu_runtime")
    if runtime is not None:
        runtime.set_max_threads(threads)


def process_pool(workers: int | None = None, threads: int = 1) -> cf.Executor:
    """A spawned process pool of ``workers`` (default: one per core) running ``threads`` threads each."""
    workers = workers or os.cpu_count() or 1
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_limit_threads, initargs=(threads,))
