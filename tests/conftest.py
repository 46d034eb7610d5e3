import os
import shutil

# Under mutmut (docs/mutation.md) every mutant's tests run in a child forked from a process that
# has already run parallel kernels. Numba's default threading layer here, GNU OpenMP, cannot run in
# such a child: its first parallel kernel stops it with SIGTERM ("fork() called from a process
# already using GNU OpenMP"), which mutmut reports as "suspicious". The workqueue layer can.
# mutmut sets MUTANT_UNDER_TEST in every phase; a normal test run keeps Numba's default.
if "MUTANT_UNDER_TEST" in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    import numba
    numba.config.THREADING_LAYER = "workqueue"

import numpy as np
import pytest

import tinysml

# A Predictor in the tests loads or compiles its kernels before answering, so that no background
# compile thread runs on beside later tests; tests/test_deploy_cold_start.py asks for the default
# (background) explicitly.
os.environ.setdefault("TINYSML_DEPLOY_COMPILE", "now")


@pytest.fixture(scope="session", autouse=True)
def _no_temporary_folders_left_by_mutmut(tmp_path_factory):
    """mutmut ends each mutant's child with os._exit, so pytest's own clean-up of its numbered
    temporary folders (a lock released at exit) never runs, and a folder of up to 1 GB (the grid
    tests' runs) stays behind per mutant: a few hundred filled the disk. Each such session removes
    its own. A normal test run keeps pytest's retention (the last three sessions)."""
    yield
    if "MUTANT_UNDER_TEST" in os.environ:
        shutil.rmtree(tmp_path_factory.getbasetemp(), ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    tinysml.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
