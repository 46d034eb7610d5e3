import os

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


@pytest.fixture(autouse=True)
def _seed():
    tinysml.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
