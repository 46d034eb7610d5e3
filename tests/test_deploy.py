"""The embeddable inference path: equality with the training model, input checks, streaming,
export, import hygiene, and a fuzzed loader that never crashes or unpickles."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tinysml import Tensor, io, no_grad
from tinysml.data import fit_scaler, load
from tinysml.deploy import Predictor, StreamingRecognizer, export
from tinysml.models import build_model, preset
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
    got = Predictor.load(tmp_path / "m.npz", use_numba=use_numba).logits(X)
    np.testing.assert_allclose(got, _eval_logits(model, X), rtol=1e-5, atol=1e-5)


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
    except (io.CheckpointError, ValueError) as err:
        assert str(err)
        return
    # a flip that survived every check (e.g. inside a weight's mantissa) still predicts
    assert p.predict_proba(np.zeros((1, 6, 100))).shape == (1, 4)
