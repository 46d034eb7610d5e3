"""Local process pools (the grid's, the head search's): a worker does not outlive the process that
made its pool."""
import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = """
import os, sys, time
from tinysml.parallel import process_pool
from tinysml.search import default_executor
pool = process_pool(1) if sys.argv[1] == "grid" else default_executor(1)
print(pool.submit(os.getpid).result(), flush=True)     # the worker's pid
pool.submit(time.sleep, 120)                            # a long job: the worker is busy with it
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("pool", ["grid", "search"])           # the grid's pool, the head search's
def test_a_busy_worker_exits_when_its_parent_is_killed(how, pool):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, pool], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)
        assert _alive(worker)
        os.kill(parent.pid, how)                    # no clean-up runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()


def _threads_seen():
    """What a worker's kernels were told: TINYSML_THREADS, and the runtime's own limit."""
    from tinysml.kernels import cpu_runtime
    return os.environ.get("TINYSML_THREADS"), cpu_runtime.max_threads()


def test_grid_workers_run_one_thread_and_search_workers_keep_the_default(monkeypatch):
    monkeypatch.delenv("TINYSML_THREADS", raising=False)          # spawned workers inherit os.environ
    import numba
    from tinysml.parallel import process_pool
    from tinysml.search import default_executor
    with process_pool(1) as pool:
        assert pool.submit(_threads_seen).result() == ("1", 1)
    with process_pool(1, threads=2) as pool:
        assert pool.submit(_threads_seen).result()[0] == "2"
    with default_executor(1) as pool:
        assert pool.submit(_threads_seen).result() == (None, numba.config.NUMBA_NUM_THREADS)   # all of Numba's
