"""The NumPy deployment path piece by piece: its activations and softmax against their formulas,
the batch-norm fold's dtype, the heads' defaults, the input checks' words and policies, long
batches in chunks, the background compile's failure, warmup and the shipped-model names.
(tests/test_deploy.py checks whole predictions against the model.)"""
import importlib.util
import time

import numpy as np
import pytest

from tinysml import deploy, io
from tinysml.deploy import Predictor, load_deploy_tree
from tinysml.kernels import cache_dir
from tinysml.models import build_model, preset


def test_activations_against_their_formulas():
    x = np.linspace(-5, 5, 41).astype(np.float64)
    alpha, scale = deploy.SELU_ALPHA, deploy.SELU_SCALE
    expected = {"hardswish": x * np.clip(x + 3, 0, 6) / 6, "relu": np.maximum(x, 0),
                "selu": scale * np.where(x > 0, x, alpha * np.expm1(x)), "hardsigmoid": np.clip(x + 3, 0, 6) / 6,
                "identity": x}
    for name, want in expected.items():
        np.testing.assert_allclose(deploy._act(name, x.copy()), want, rtol=1e-12, atol=1e-15, err_msg=name)
    with pytest.raises(ValueError) as err:
        deploy._act("swish", x.copy())
    assert str(err.value) == "unknown activation 'swish'"


def test_softmax_of_large_scores_stays_finite():
    np.testing.assert_allclose(deploy._softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]])), [[1, 0], [0.5, 0.5]])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    model = build_model(preset("har-student", 6, 40, 4), seed=3)
    io.save_model(str(folder / "f32.npz"), model)
    io.save_model(str(folder / "f64.npz"), model.double())
    return {"f32": str(folder / "f32.npz"), "f64": str(folder / "f64.npz")}


@pytest.fixture(scope="module")
def trees(checkpoints):
    return {name: load_deploy_tree(path) for name, path in checkpoints.items()}


def test_a_float64_checkpoint_folds_to_float32(checkpoints):
    # loaded here, not in a fixture: the mutation run maps each function to the tests that call it
    f32, f64 = load_deploy_tree(checkpoints["f32"]), load_deploy_tree(checkpoints["f64"])
    for layer in f64["layers"]:
        for k in ("w", "b", "we", "be", "wd", "bd", "wp", "bp"):
            if k in layer:
                assert layer[k].dtype == np.float32, k
    x = np.random.default_rng(0).standard_normal((3, 6, 40)).astype(np.float32)
    np.testing.assert_allclose(Predictor(f64, use_numba=False).logits(x),
                               Predictor(f32, use_numba=False).logits(x), rtol=1e-5, atol=1e-6)


def test_a_head_without_a_kind_is_linear(trees):
    params = trees["f32"]["classifier"]
    h = np.random.default_rng(0).standard_normal((2, params["fc.weight"].shape[1])).astype(np.float32)
    np.testing.assert_array_equal(deploy._head_logits({}, params, h), deploy._head_logits({"kind": "linear"}, params, h))
    with pytest.raises(ValueError) as err:
        deploy._head_logits({"kind": "tree"}, params, h)
    assert str(err.value) == "unknown head kind 'tree' in checkpoint"


def test_the_compiled_path_fuses_a_head_without_a_kind(trees):
    pytest.importorskip("numba")
    tree = dict(trees["f64"], config=dict(trees["f64"]["config"], head={}))
    tree["classifier"] = {k: v.astype(np.float64) for k, v in tree["classifier"].items()}
    p = Predictor(tree, use_numba=True)
    assert p.fused_head is not None and all(a.dtype == np.float32 and a.flags.c_contiguous for a in p.fused_head)


def test_input_checks_in_their_words(trees):
    p = Predictor(trees["f32"], use_numba=False)
    x = np.random.default_rng(0).standard_normal((8, 6, 40))
    assert p.check(x).dtype == np.float32 and p.check(x.astype(np.int16)).dtype == np.float32
    assert p.check(x.astype(np.uint8)).dtype == np.float32
    with pytest.raises(TypeError) as err:
        p.check(x.astype(complex))
    assert str(err.value) == "expected numeric windows, got dtype complex128"
    bad = x.copy()
    bad[[0, 1, 2, 3, 4, 6], 0, 0] = np.nan
    for call in (p.check, p.features, p.logits, p.predict_proba, p.predict):    # "raise" is everyone's default
        with pytest.raises(ValueError) as err:
            call(bad)
        assert str(err.value) == "windows [0, 1, 2, 3, 4] contain NaN or inf; clean them or pass nan_policy='zero'"
    zeroed = p.check(bad, nan_policy="zero")
    assert (zeroed[[0, 1, 2, 3, 4, 6], 0, 0] == 0).all() and np.array_equal(zeroed[5], np.float32(x[5]))
    np.testing.assert_allclose(p.predict_proba(bad, nan_policy="zero"), p.predict_proba(zeroed), rtol=1e-6)
    with pytest.raises(ValueError, match="nan_policy must be 'raise' or 'zero', got 'drop'"):
        p.check(bad, nan_policy="drop")


def test_an_empty_batch_has_float32_features(trees):
    f = Predictor(trees["f32"], use_numba=False).features(np.zeros((0, 6, 40), np.float32))
    assert f.shape == (0, 256) and f.dtype == np.float32


def test_more_windows_than_one_compiled_call_takes_run_in_chunks(trees):
    pytest.importorskip("numba")
    x = np.random.default_rng(1).standard_normal((deploy.MAX_CHUNK + 45, 6, 40)).astype(np.float32)
    fast, slow = Predictor(trees["f32"], use_numba=True), Predictor(trees["f32"], use_numba=False)
    np.testing.assert_allclose(fast.features(x), slow.features(x), rtol=2e-4, atol=2e-5)


@pytest.fixture
def background_compile(monkeypatch):
    """A Predictor made now compiles on its background thread, whatever this shell's settings."""
    monkeypatch.delenv("TINYSML_BACKEND", raising=False)
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", "background")
    monkeypatch.setattr(cache_dir, "_choice", {"dir": "/tmp", "writable": True, "how": "test"})


def test_a_failed_background_compile_keeps_numpy_and_its_reason(trees, monkeypatch, background_compile):
    pytest.importorskip("numba")
    boom = RuntimeError("no compiler today")

    def fail(network, tree):
        raise boom

    monkeypatch.setattr(deploy, "compile_kernels", fail)
    p = Predictor(trees["f32"])
    assert p.wait_compiled(timeout=60) is False
    assert p.compile_error is boom and p.compiling is None and p.backend == "numpy"
    assert p.predict(np.zeros((1, 6, 40), np.float32)).shape == (1,)


def test_waiting_for_a_compile_waits(trees, monkeypatch, background_compile):
    pytest.importorskip("numba")
    real = deploy.compile_kernels

    def slow(network, tree):
        time.sleep(0.5)
        return real(network, tree)

    monkeypatch.setattr(deploy, "compile_kernels", slow)
    p = Predictor(trees["f32"])
    thread = p.compiling                                           # a daemon: never holds up the exit
    assert thread.name == "tinysml-compile" and thread.daemon
    assert p.wait_compiled(timeout=0.01) is False                  # not yet
    assert p.wait_compiled() is True and p.backend == "numba"      # no timeout: until it is done


def test_warmup_reports_where_and_how_long(monkeypatch, tmp_path):
    pytest.importorskip("numba")
    monkeypatch.setattr(cache_dir, "_choice", {"dir": "/nowhere", "writable": False, "how": "read-only: test"})
    with pytest.raises(RuntimeError) as err:
        deploy.warmup()
    assert str(err.value) == "no writable place for Numba's kernel cache: read-only: test"
    monkeypatch.undo()
    t0 = time.perf_counter()
    out = deploy.warmup()
    took = time.perf_counter() - t0
    cache = cache_dir.choice()
    assert out["cache"] == cache_dir.kernel_folder(cache["dir"]) and out["how"] == cache["how"]
    assert out["kernels"] == ["network_forward", "network_forward_parallel", "linear_softmax"]
    assert 0 < out["seconds"] <= took


def test_without_numba_asking_for_it_fails_and_the_default_falls_back(trees, monkeypatch):
    """Where the compiled kernels cannot be imported (no Numba): ``use_numba=True`` and
    ``tinysml warmup`` raise the ImportError; the default predicts with NumPy."""
    import sys
    import tinysml.kernels as kernels
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", "now")
    monkeypatch.delenv("TINYSML_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, "tinysml.kernels.cpu_network", None)     # import fails as without Numba
    monkeypatch.delattr(kernels, "cpu_network", raising=False)
    with pytest.raises(ImportError):
        Predictor(trees["f32"], use_numba=True)
    assert Predictor(trees["f32"]).backend == "numpy"
    monkeypatch.setattr(cache_dir, "_choice", {"dir": "/tmp", "writable": True, "how": "test"})
    with pytest.raises(ImportError):
        deploy.warmup()


def test_a_file_that_is_not_a_model_is_refused_by_name(tmp_path, trees):
    io.save(str(tmp_path / "cache.npz"), {"kind": "teacher-outputs", "logits": np.zeros((2, 3), np.float32)})
    with pytest.raises(io.CheckpointError) as err:
        load_deploy_tree(str(tmp_path / "cache.npz"))
    assert str(err.value) == (f"{str(tmp_path / 'cache.npz')!r} holds a 'teacher-outputs' checkpoint; "
                              "expected a model or deploy checkpoint")
    broken = dict(trees["f32"], layers=trees["f32"]["layers"][:-1])        # a deploy file, checked by path
    io.save(str(tmp_path / "deploy.npz"), broken)
    with pytest.raises(io.CheckpointError) as err:
        load_deploy_tree(str(tmp_path / "deploy.npz"))
    assert str(err.value).startswith(repr(str(tmp_path / "deploy.npz")) + ": the config implies ")


def test_an_unknown_pretrained_name_lists_the_shipped_ones(monkeypatch):
    monkeypatch.setattr(deploy, "PRETRAINED", {"b-model": "b.npz", "a-model": "a.npz"})
    with pytest.raises(ValueError) as err:
        deploy.pretrained_path("c-model")
    assert str(err.value) == "no pretrained model 'c-model'; shipped: a-model, b-model"


@pytest.mark.parametrize("low, high", [(-0.5, None), (None, 0.7), (-0.5, 0.7), (None, None)])
def test_scaling_clips_at_whichever_bounds_it_has(trees, low, high):
    """The NumPy path scales, then clips at the bounds the scaler has (either may be absent); the
    compiled path the same."""
    C = trees["f32"]["config"]["in_channels"]
    shift, scale = np.linspace(-0.2, 0.2, C), np.linspace(0.5, 2, C)
    scaled = dict(trees["f32"], scaler={"shift": shift, "scale": scale, "low": low, "high": high})
    x = np.random.default_rng(2).standard_normal((5, C, 40)).astype(np.float32)
    by_hand = np.clip((x - np.float32(shift)[:, None]) / np.float32(scale)[:, None],
                      -np.inf if low is None else low, np.inf if high is None else high).astype(np.float32)
    want = Predictor(trees["f32"], use_numba=False).features(by_hand)
    got = Predictor(scaled, use_numba=False).features(x)
    assert got.dtype == np.float32                                 # a float64 scaler does not widen the path
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if importlib.util.find_spec("numba"):
        np.testing.assert_allclose(Predictor(scaled, use_numba=True).features(x), want, rtol=2e-4, atol=2e-5)


def test_numpy_only_starts_no_compile_and_names_classes_by_number(trees):
    tree = dict(trees["f32"], class_names=None)
    p = Predictor(tree, use_numba=False)
    assert p.compiling is None and p.backend == "numpy" and p.class_names == ["0", "1", "2", "3"]


def test_a_broken_deploy_tree_is_refused_as_a_deploy_tree(trees):
    from tinysml.architecture import ArchitectureError
    broken = dict(trees["f32"], layers=trees["f32"]["layers"][:-1])
    with pytest.raises(ArchitectureError, match="^deploy tree"):
        Predictor(broken, use_numba=False)


def test_folding_names_the_checkpoint_defaults_the_epsilon_and_keeps_the_data_source(tmp_path):
    model = build_model(preset("har-student", 6, 40, 4), seed=3)
    io.save_model(str(tmp_path / "m.npz"), model)
    tree = io.load(str(tmp_path / "m.npz"))
    tree = dict(tree, dataset="basicmotions", data_path="/data/bm")
    folded = deploy.fold_model(tree)
    assert folded["dataset"] == "basicmotions" and folded["data_path"] == "/data/bm"
    no_eps = dict(tree, config={k: v for k, v in tree["config"].items() if k != "bn_eps"})
    for a, b in zip(deploy.fold_model(no_eps)["layers"], folded["layers"]):     # the stored default
        for k in a:
            if isinstance(a[k], np.ndarray):
                np.testing.assert_array_equal(a[k], b[k])
    broken = dict(tree, state={k: v for k, v in tree["state"].items() if k != "stem.0.weight"})
    from tinysml.architecture import ArchitectureError
    with pytest.raises(ArchitectureError, match="^checkpoint: "):
        deploy.fold_model(broken)
    with pytest.raises(ArchitectureError, match="^'m.npz': "):
        deploy.fold_model(broken, where="'m.npz'")
    io.save(str(tmp_path / "broken.npz"), broken)                     # loaded by path: the message names the file
    with pytest.raises(io.CheckpointError) as err:
        load_deploy_tree(str(tmp_path / "broken.npz"))
    assert str(err.value).startswith(repr(str(tmp_path / "broken.npz")) + ": ")
