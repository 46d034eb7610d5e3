import numpy as np
import pytest

import tinysml


@pytest.fixture(autouse=True)
def _seed():
    tinysml.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
