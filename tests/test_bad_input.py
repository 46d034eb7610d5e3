"""Hostile and broken inputs, as an auditor would try them: checkpoints and deploy files whose
arrays disagree with their config or cannot be a trained network, nonsense arguments, a full disk,
the Predictor and streaming API. Each case asserts the precise error (naming what is wrong), that
no output file is left behind, and that nothing outside the test's folder changed."""
import errno
import re
import os

import numpy as np
import pytest

from tinysml import io
from tinysml.cli import main
from tinysml.deploy import Predictor, StreamingRecognizer, fold_model
from tinysml.models import build_model, preset

CLASSES = ["Standing", "Running", "Walking", "Badminton"]          # basicmotions: 6 x 100, 4 classes


def model_tree():
    """A har-student for basicmotions with trained-looking batch norms and a scaler."""
    rng = np.random.default_rng(0)
    model = build_model(preset("har-student", 6, 100, 4), seed=3)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            v[...] = rng.uniform(0.5, 2.0, v.shape)
        elif k.endswith("running_mean"):
            v[...] = rng.normal(0, 0.3, v.shape)
    scaler = {"kind": "robust", "shift": rng.normal(0, 1, 6).astype(np.float32),
              "scale": rng.uniform(1, 2, 6).astype(np.float32), "low": 0.0, "high": 1.0}
    return io.model_tree(model, scaler=scaler, class_names=list(CLASSES), dataset="basicmotions")


def _set(path, value):
    def corrupt(tree):
        node = tree
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return corrupt


def _nan_at(index):
    def f(a):
        a = a.copy()
        a[index] = np.nan
        return a
    return f


MODEL_CASES = {
    "stem with 5 taps": (_set(["state", "stem.0.weight"], np.zeros((16, 6, 5), np.float32)),
                         r"stem.0.weight has shape \(16, 6, 5\), but the config implies \(16, 6, 3\)"),
    "depthwise cut to one tap": (_set(["state", "blocks.1.depthwise.0.weight"], lambda a: a[:, :, :1].copy()),
                                 r"blocks.1.depthwise.0.weight has shape \(72, 1, 1\), but the config implies \(72, 1, 5\)"),
    "config says kernel 5": (_set(["config", "blocks", 0, "kernel"], 5),
                             r"blocks.0.depthwise.0.weight has shape \(48, 1, 3\), but the config implies \(48, 1, 5\)"),
    "scaler of the wrong length": (_set(["scaler", "shift"], np.zeros(5, np.float32)),
                                   r"scaler shift has shape \(5,\), but the config implies \(6,\)"),
    "scaler scale zero": (_set(["scaler", "scale"], np.zeros(6, np.float32)), "scaler scale must be positive"),
    "NaN weight": (_set(["state", "blocks.2.project.0.weight"], _nan_at((0, 0, 0))),
                   r"blocks.2.project.0.weight holds 1 NaN or infinite value"),
    "inf in the classifier": (_set(["state", "classifier.fc.bias"], lambda a: a + np.inf),
                              r"classifier.fc.bias holds 4 NaN or infinite value"),
    "negative running variance": (_set(["state", "blocks.0.expand.1.running_var"], lambda a: a - 5),
                                  r"blocks.0.expand.1.running_var has a negative running variance"),
    "an extra array": (_set(["state", "blocks.9.expand.0.weight"], np.ones((2, 2, 1), np.float32)),
                       r"not in the config's network: blocks.9.expand.0.weight"),
    "a missing array": (lambda t: t["state"].pop("head_conv.1.bias"), r"missing head_conv.1.bias"),
    "integer weights": (_set(["state", "stem.0.weight"], lambda a: a.astype(np.int64)),
                        r"stem.0.weight must hold floating-point values"),
    "malformed config": (_set(["config", "blocks"], "x"), r"blocks must be a non-empty list"),
    "config with a string width": (_set(["config", "head_width"], "256"), r"head_width must be an integer"),
    "absurd width": (_set(["config", "blocks", 3, "expand"], 60000), r"would have .* parameters"),
    "class names of the wrong length": (_set(["class_names"], ["a", "b"]), r"class_names must be a list of 4 strings"),
}


def _deploy_tree():
    return fold_model(model_tree())


DEPLOY_CASES = {
    "changed stride": (_set(["layers", 1, "stride"], 1),
                       r"layer 1 \(block blocks.0\) says stride=1, but the config implies 2"),
    "forced residual": (_set(["layers", 2, "residual"], True),
                        r"layer 2 \(block blocks.1\) says residual=True, but the config implies False"),
    "changed activation": (_set(["layers", 3, "act"], "relu"),
                           r"layer 3 \(block blocks.2\) says act='relu', but the config implies 'hardswish'"),
    "depthwise cut to one tap": (_set(["layers", 1, "wd"], lambda a: a[:, :1].copy()),
                                 r"layer 1 \(block blocks.0\): wd has shape \(48, 1\), but the config implies \(48, 3\)"),
    "stem with 5 taps": (_set(["layers", 0, "w"], np.zeros((16, 6, 5), np.float32)),
                         r"layer 0 \(stem\): w has shape \(16, 6, 5\), but the config implies \(16, 6, 3\)"),
    "a layer dropped": (lambda t: t["layers"].pop(2), r"the config implies 6 layers, the file holds 5"),
    "SE weights removed": (lambda t: t["layers"][2].pop("se1"), r"layer 2 \(block blocks.1\): .*missing se1"),
    "NaN in the classifier": (_set(["classifier", "fc.weight"], _nan_at((1, 2))), r"classifier: fc.weight holds 1 NaN"),
    "scaler of the wrong length": (_set(["scaler", "scale"], np.ones(7, np.float32)),
                                   r"scaler scale has shape \(7,\), but the config implies \(6,\)"),
    "scaler clipping to nothing": (_set(["scaler", "low"], 2.0), r"scaler clips to an empty range"),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The test's folder as the working directory; yields a function listing every file in it."""
    monkeypatch.chdir(tmp_path)

    def files():
        return sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    return files


HOSTILE = [("model", case) for case in sorted(MODEL_CASES)] + [("deploy", case) for case in sorted(DEPLOY_CASES)]


@pytest.mark.parametrize("kind,case", HOSTILE, ids=[f"{k}: {c}" for k, c in HOSTILE])
def test_hostile_files_are_refused_everywhere_by_name(kind, case, workdir, capsys):
    """Every loader and every CLI command that reads the file refuses it, naming what is wrong;
    nothing is written (no output, no temporary)."""
    corrupt, message = (MODEL_CASES if kind == "model" else DEPLOY_CASES)[case]
    tree = model_tree() if kind == "model" else _deploy_tree()
    corrupt(tree)
    path = f"bad.{kind}.npz"
    io.save(path, tree)
    before = workdir()
    if kind == "model":
        with pytest.raises(io.CheckpointError, match=message):
            io.load_model(path)
    with pytest.raises(io.CheckpointError, match=message):
        Predictor.load(path)
    commands = [["export", path, "--out", "out.deploy.npz"], ["export", path, "--out", "out.onnx"]]
    if kind == "model":
        commands.append(["evaluate", path])
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tinysml: error:"), err
        assert re.search(message, err), (argv, err)
    assert workdir() == before


def test_the_untouched_files_pass_the_same_checks(workdir, capsys):
    """The control: the same trees, unaltered, load everywhere and agree."""
    io.save("good.npz", model_tree())
    io.save("good.deploy.npz", _deploy_tree())
    x = np.random.default_rng(1).standard_normal((3, 6, 100)).astype(np.float32)
    model, _ = io.load_model("good.npz")
    a = Predictor.load("good.npz").predict_proba(x)
    b = Predictor.load("good.deploy.npz", use_numba=False).predict_proba(x)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.isfinite(a).all() and a.shape == (3, 4)
    assert main(["export", "good.npz", "--out", "again.deploy.npz"]) == 0


def test_a_tree_handed_to_the_predictor_directly_is_checked(workdir):
    tree = _deploy_tree()
    tree["layers"][2]["residual"] = True
    with pytest.raises(ValueError, match="says residual=True"):
        Predictor(tree)


# --------------------------------------------------------------------------- resources
def test_only_referenced_entries_are_read(workdir):
    """An entry smuggled in beside the checkpoint is never decompressed (here: one that would fail
    to parse, so reading it would raise)."""
    import zipfile
    io.save("m.npz", model_tree())
    with zipfile.ZipFile("m.npz", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("smuggled.npy", b"\x93NUMPY garbage that is not an array header" + b"\0" * 10**6)
    model, tree = io.load_model("m.npz")
    assert "smuggled" not in tree


def test_checkpoints_over_the_size_limit_are_refused_before_reading(workdir, monkeypatch):
    io.save("big.npz", {"x": np.zeros(600_000, np.float32)})                     # 2.3 MiB of arrays
    monkeypatch.setenv("TINYSML_MAX_CHECKPOINT_MB", "2")
    with pytest.raises(io.CheckpointError, match=r"would expand to 2 MiB, over the limit of 2 MiB"):
        io.load("big.npz")
    monkeypatch.setenv("TINYSML_MAX_CHECKPOINT_MB", "3")
    assert io.load("big.npz")["x"].shape == (600_000,)


def test_the_predictor_keeps_bounded_buffers(workdir):
    from tinysml import deploy
    io.save("m.npz", model_tree())
    p = Predictor.load("m.npz")
    if p.network is None:
        pytest.skip("Numba is not in use")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 6, 100)).astype(np.float32)
    whole = p.predict_proba(x)                                   # chunks of MAX_CHUNK windows
    for B in (1, 2, 3, 5, 7, 9, 600):
        p.predict(x[:B])
    assert len(p.buffers) <= 2 and max(p.buffers) <= deploy.MAX_CHUNK
    np.testing.assert_allclose(whole[[0, 299, 599]], p.predict_proba(x[[0, 299, 599]]), atol=1e-5)


@pytest.mark.parametrize("use_numba", [False, True])
def test_an_empty_batch_gives_an_empty_answer_on_both_paths(workdir, use_numba):
    io.save("m.npz", model_tree())
    p = Predictor.load("m.npz", use_numba=use_numba)
    assert p.predict_proba(np.zeros((0, 6, 100), np.float32)).shape == (0, 4)
    assert p.predict(np.zeros((0, 6, 100), np.float32)).shape == (0,)


@pytest.mark.parametrize("kwargs,message", [({"k": 0}, "k must be an integer >= 1"),
                                            ({"hop": 0}, "hop must be an integer >= 1"),
                                            ({"hop": -3}, "hop must be an integer >= 1"),
                                            ({"hop": 2.5}, "hop must be an integer"),
                                            ({"smoothing": "median"}, "smoothing must be 'mean' or 'majority'")])
def test_streaming_refuses_bad_settings_at_once(workdir, kwargs, message):
    io.save("m.npz", model_tree())
    with pytest.raises(ValueError, match=message):
        StreamingRecognizer(Predictor.load("m.npz"), **kwargs)


def test_streaming_refuses_bad_samples(workdir):
    io.save("m.npz", model_tree())
    s = StreamingRecognizer(Predictor.load("m.npz"), hop=10)
    with pytest.raises(ValueError, match=r"expected samples of shape \(n, 6\)"):
        s.push(np.zeros((4, 5)))
    with pytest.raises(TypeError, match="expected numeric samples"):
        s.push(np.array([["a"] * 6]))


# --------------------------------------------------------------------------- the command line
BAD_ARGUMENTS = [
    (["train", "--epochs", "-1", "--out", "m.npz"], "argument --epochs: must be an integer >= 1, got -1"),
    (["train", "--batch-size", "0", "--out", "m.npz"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["train", "--batch-size", "-4", "--out", "m.npz"], "argument --batch-size: must be an integer >= 1, got -4"),
    (["train", "--lr", "nan", "--out", "m.npz"], "argument --lr: must be a finite number > 0, got nan"),
    (["train", "--val-fraction", "1", "--out", "m.npz"], "argument --val-fraction: must be a finite number > 0 and <= 0.95, got 1.0"),
    (["train", "--out", "."], "argument --out: '.' is a folder; give the path of a file to write"),
    (["train", "--epochs", "two", "--out", "m.npz"], "argument --epochs: expected an integer, got 'two'"),
    (["distill", "--out", "r", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["distill", "--out", "r", "--T", "0"], "argument --T: must be a finite number > 0, got 0.0"),
    (["distill", "--out", "r", "--mu", "-1"], "argument --mu: must be a finite number >= 0, got -1.0"),
    (["profile", "--classes", "0"], "argument --classes: must be an integer >= 1, got 0"),
    (["profile", "--channels", "0"], "argument --channels: must be an integer >= 1, got 0"),
    (["export", "x.npz", "--out", "."], "argument --out: '.' is a folder; give the path of a file to write"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGUMENTS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_nonsense_arguments_are_refused_up_front(argv, message, workdir, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
    assert workdir() == []


FAILURES = [
    (["evaluate", "missing.npz"], "checkpoint 'missing.npz' does not exist"),
    (["evaluate", "."], "'.' is a folder; expected a checkpoint file"),
    (["data", "info", "nope"], "unknown dataset 'nope'"),
    (["data", "info", "wisdm", "--path", "."], "expected WISDM_ar_v1.1_raw.txt at '.', which is a folder"),
    (["profile", "--channels", "1000000"], "in_channels must be an integer in [1, 65536]"),
    (["distill", "--out", "r", "--teacher", "none.npz", "--quiet"], "teacher checkpoint 'none.npz' does not exist"),
]


@pytest.mark.parametrize("argv,message", FAILURES, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_user_errors_are_one_line_and_exit_2(argv, message, workdir, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_full_disk_is_one_line_and_leaves_nothing(workdir, capsys, monkeypatch):
    io.save("m.npz", model_tree())
    before = workdir()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io.os, "fsync", full)
    for out in ("out.deploy.npz", "out.onnx"):
        assert main(["export", "m.npz", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "No space left on device" in err, err
    assert workdir() == before


def test_a_bug_is_reported_as_one_line_with_status_1(workdir, capsys, monkeypatch):
    from tinysml import cli

    def broken(args):
        raise KeyError("oops")
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["profile"].set_defaults(run=broken)
    assert main(["profile"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "TINYSML_DEBUG=1" in err
