"""Every kernel backend exposes the reference's functions with the same signatures."""
import importlib
import inspect

import pytest

import tinysml
from tinysml.kernels import reference

BACKENDS = ["tinysml.kernels.cpu", "tinysml.kernels.cuda"]


def public_functions(module):
    return {n: f for n, f in vars(module).items() if inspect.isfunction(f) and not n.startswith("_")}


@pytest.mark.parametrize("name", BACKENDS)
def test_same_names_and_signatures(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        pytest.skip(f"{name} not importable here: {err}")
    ours, ref = public_functions(module), {n: f for n, f in public_functions(reference).items()
                                           if f.__module__ == reference.__name__}
    missing = sorted(set(ref) - set(ours))
    assert not missing, f"{name} lacks {missing}"
    for fn in ref:
        assert inspect.signature(ours[fn]) == inspect.signature(ref[fn]), fn


def test_set_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown backend"):
        tinysml.set_backend("fortran")
