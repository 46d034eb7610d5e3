import os

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
