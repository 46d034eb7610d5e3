"""The compiled deployment path's own parts: the packed buffers' types, the work space the fused
kernel is given (never written past, all of it used), that warming up compiles exactly what
predicting calls, and when the compiled path is chosen. (tests/test_deploy.py checks its numbers
against the NumPy path and the model.)"""
import os
import warnings

import numpy as np
import pytest

from tinysml import deploy_compiled as dc
from tinysml import io
from tinysml.deploy import Predictor, load_deploy_tree
from tinysml.kernels import cache_dir
from tinysml.models import BlockSpec, MobileNetConfig, build_model, preset

numba = pytest.importorskip("numba")
from tinysml.kernels import cpu_network  # noqa: E402  (needs Numba)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The shipped student (scaled input), a random har-teacher (linear head, no scaler), and a
    network whose widest step is its padded 40-channel input (the stem's share of the work space)."""
    folder = tmp_path_factory.mktemp("deploy")
    io.save_model(str(folder / "teacher.npz"), build_model(preset("har-teacher", 6, 50, 5), seed=1))
    wide = MobileNetConfig(blocks=(BlockSpec(3, 8, 16, 16, True, "hardswish", 1), BlockSpec(3, 12, 16, 24, False, "selu", 2, True)),
                           in_channels=40, length=50, num_classes=3, head_width=8)
    io.save_model(str(folder / "wide.npz"), build_model(wide, seed=2))
    return {"student": load_deploy_tree("uci-har-student"), "teacher": load_deploy_tree(str(folder / "teacher.npz")),
            "wide input": load_deploy_tree(str(folder / "wide.npz"))}


def test_the_packed_buffers_have_the_kernels_types(trees):
    tree = trees["student"]
    as64 = dict(tree, layers=[{k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in layer.items()}
                              for layer in tree["layers"]])
    for t in (tree, as64):
        params, plan, scaling, _ = dc.pack(t)
        assert params.dtype == np.float32 and params.flags.c_contiguous and params.ndim == 1
        assert plan.dtype == np.int64 and plan.shape == (len(t["layers"]), cpu_network.PLAN_WIDTH)
        assert scaling.dtype == np.float32
    C = tree["config"]["in_channels"]
    sc = tree["scaler"]
    np.testing.assert_array_equal(scaling[:C], np.float32(sc["shift"]))
    np.testing.assert_array_equal(scaling[C:2 * C], np.float32(sc["scale"]))
    _, _, scaling, _ = dc.pack(trees["teacher"])                      # no scaler: identity, no clipping
    C = trees["teacher"]["config"]["in_channels"]
    assert (scaling[:C] == 0).all() and (scaling[C:2 * C] == 1).all() and scaling[-2] == -np.inf and scaling[-1] == np.inf


@pytest.mark.parametrize("name", ["student", "teacher", "wide input"])
@pytest.mark.parametrize("batch", [1, 5])                          # the serial and the parallel entry
def test_the_kernel_stays_inside_its_work_space_and_uses_all_of_it(trees, name, batch):
    """The work shape (N, V) is what a window needs: buffers with a NaN margin past N and V come back
    with the margin untouched (Numba checks no bounds: a smaller N would write past the buffer), and
    the last element inside is written (a larger N would only waste memory, but pack says exactly)."""
    tree = trees[name]
    params, plan, scaling, (N, V) = dc.pack(tree)
    cfg = tree["config"]
    x = np.random.default_rng(0).standard_normal((batch, cfg["in_channels"], cfg["length"])).astype(np.float32)
    work, vec, out = dc.work_buffers(cpu_network, plan, (N, V), batch)
    assert work.shape == (batch, 4, N) and vec.shape == (batch, V)
    work_flat = np.full(work.size + N, np.nan, np.float32)            # the kernel needs contiguous buffers:
    vec_flat = np.full(vec.size + V + 8, np.nan, np.float32)          # the margin follows the last row
    work, vec = work_flat[:work.size].reshape(work.shape), vec_flat[:vec.size].reshape(vec.shape)
    run = cpu_network.network_forward_parallel if batch >= 4 else cpu_network.network_forward
    run(x, params, plan, scaling, work, vec, out)
    assert np.isnan(work_flat[work.size:]).all() and np.isnan(vec_flat[vec.size:]).all()
    assert not np.isnan(work[:, :, N - 1]).all()
    assert all(not np.isnan(work[:, k]).all() for k in range(work.shape[1]))    # every one of the 4 rows is used
    if any(layer.get("se1") is not None for layer in tree["layers"]):
        assert not np.isnan(vec[:, V - 1]).all()
    np.testing.assert_allclose(out, Predictor(tree, use_numba=False).features(x), rtol=2e-4, atol=2e-5)


class _Recording:
    """cpu_network with every kernel call's Numba argument types recorded, as (name, types)."""
    def __init__(self):
        self.calls = set()

    def __getattr__(self, name):
        attr = getattr(cpu_network, name)
        if name not in ("network_forward", "network_forward_parallel", "linear_softmax"):
            return attr

        def call(*args):
            self.calls.add((name, tuple(str(numba.typeof(a)) for a in args)))
            return attr(*args)
        return call


def test_warming_up_compiles_what_predicting_calls(trees):
    """compile_kernels runs each kernel once on argument types equal to a prediction's, at batch
    sizes of both entries, so nothing is left to compile when the first windows arrive."""
    tree = trees["teacher"]                                            # a linear head: the fused head kernel too
    warm = _Recording()
    assert dc.compile_kernels(warm, tree) == ["network_forward", "network_forward_parallel", "linear_softmax"]
    used = _Recording()
    p = Predictor(tree, use_numba=False)
    p._attach(used)
    cfg = tree["config"]
    for B in (1, 3, 8):
        p.predict_proba(np.random.default_rng(B).standard_normal((B, cfg["in_channels"], cfg["length"])).astype(np.float32))
    assert {name for name, _ in used.calls} == {"network_forward", "network_forward_parallel", "linear_softmax"}
    assert used.calls <= warm.calls
    for name, types in used.calls:                                       # float32 throughout (the plan: int64)
        assert all(t.startswith(("array(float32", "array(int64")) for t in types), (name, types)


def test_numpy_by_environment_in_any_case(monkeypatch):
    monkeypatch.setenv("TINYSML_BACKEND", "NumPy")
    assert dc._when_to_compile(None) is None
    assert dc._when_to_compile(True) == "now"          # asked for: compiled regardless


def test_compiling_in_the_background_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYSML_BACKEND", raising=False)
    monkeypatch.delenv("TINYSML_DEPLOY_COMPILE", raising=False)
    monkeypatch.setattr(cache_dir, "_choice", {"dir": str(tmp_path), "writable": True, "how": "test"})
    assert dc._when_to_compile(None) == "background"
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", " Now ")
    assert dc._when_to_compile(None) == "now"


def test_no_writable_cache_warns_once_in_full_at_the_callers_line(monkeypatch):
    monkeypatch.delenv("TINYSML_BACKEND", raising=False)
    monkeypatch.delenv("TINYSML_DEPLOY_COMPILE", raising=False)
    monkeypatch.setattr(cache_dir, "_choice", {"dir": "/nowhere", "writable": False, "how": "nowhere: test"})
    monkeypatch.setattr(dc, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Predictor.load("uci-har-student")
        monkeypatch.setattr(dc, "_warned", set())
        Predictor(load_deploy_tree("uci-har-student"))
    assert len(caught) == 2 and caught[0].category is RuntimeWarning
    assert str(caught[0].message) == (
        "tinysml.deploy: no writable place for Numba's kernel cache (nowhere: test); predicting with NumPy "
        "(run `tinysml warmup` where the cache can be written, or set NUMBA_CACHE_DIR)")
    if "MUTANT_UNDER_TEST" in os.environ:
        return      # mutmut wraps each function in frames of its own file, outside tinysml: where the walk stops
    assert caught[0].filename == caught[1].filename == __file__
