"""Local process pools for independent jobs (seeds, runs, head-search candidates).

    with process_pool() as pool:            # one worker per core, one compute thread each
        futures = [pool.submit(job, seed) for seed in seeds]

Workers are spawned (safe with Numba's and BLAS's thread pools) and each runs its kernels on
``threads`` threads: on a 2-core machine two single-threaded processes keep both cores busy
without two thread pools fighting over them, and results do not depend on how many jobs ran at
once (a kernel's per-thread partial sums are the same in every run).

A worker outlives nothing: if the process that made the pool dies (killed by SIGTERM or SIGKILL,
which run no clean-up), each worker notices within a second and exits, instead of running its job
to the end for nobody. Runs checkpoint atomically, so the next grid resumes where they stopped.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
import time


def _limit_threads(threads: int) -> None:
    """Worker initializer: kernels imported from now on read TINYSML_THREADS; any already imported
    (a script's imports run before the initializer under spawn) are told directly."""
    os.environ["TINYSML_THREADS"] = str(threads)
    runtime = sys.modules.get("tinysml.kernels.cpu_runtime")
    if runtime is not None:
        runtime.set_max_threads(threads)


def exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """Worker initializer: a daemon thread that ends this process once its parent is gone (the
    worker is then re-parented, so its parent id changes), checked every ``interval`` seconds."""
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)
    threading.Thread(target=watch, name="tinysml-exit-with-parent", daemon=True).start()


def _init_worker(threads: int | None, parent: int) -> None:
    if threads is not None:
        _limit_threads(threads)
    exit_with_parent(parent)


def process_pool(workers: int | None = None, threads: int | None = 1) -> cf.Executor:
    """A spawned process pool of ``workers`` (default: one per core) running ``threads`` threads
    each (None: the kernels' default, every core); its workers exit when this process dies."""
    workers = workers or os.cpu_count() or 1
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(threads, os.getpid()))
