"""The pipeline's phases one at a time: the head search (its soft targets, the teacher read from
the cache or run afresh, resuming from its file) and the teacher-only run (the split, scaling and
data path the config names, what it prints). (tests/test_pipeline.py runs whole methods.)"""
import dataclasses
import types

import numpy as np
import pytest
from helpers import recording_fit

from tinysml import io
from tinysml import search as S
from tinysml.data import load
from tinysml.data.prepare import prepare
from tinysml.distill import pipeline
from tinysml.distill.pipeline import SMLDistConfig
from tinysml.train import evaluate

CFG = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=1, student_epochs=1,
                    stage_epochs=1, search=True, search_epochs=2, search_space={"linear": {"dropout": [0.0]},
                                                                                "mlp": {"hidden": [8]}})


@pytest.fixture(scope="module")
def parts():
    data = prepare(load(CFG.dataset), CFG.val_fraction, CFG.seed, CFG.scaling)
    teacher, _ = pipeline._models_for(CFG, data.dataset.window_shape, data.dataset.num_classes)
    teacher.eval()
    return data, teacher


def _student(data):
    return pipeline._models_for(CFG, data.dataset.window_shape, data.dataset.num_classes)[1]


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_search_learns_from_the_softmax_of_the_teachers_logits_even_large_ones(parts, tmp_path, monkeypatch):
    data, teacher = parts
    seen = {}
    real = S.search

    def search(*args, **kw):
        seen["soft"] = kw["soft_train"]
        return real(*args, **kw)
    monkeypatch.setattr(S, "search", search)
    logits = 60.0 * np.random.default_rng(0).standard_normal((len(data.train[0]), data.dataset.num_classes))
    cache = types.SimpleNamespace(arrays={"logits": logits.astype(np.float32)})     # confident: exp(2 * 60) overflows
    pipeline.search_head(CFG, teacher, _student(data), data, str(tmp_path), pipeline._Progress(True), "inline", cache)
    assert seen["soft"].dtype == np.float32 and np.isfinite(seen["soft"]).all()
    np.testing.assert_allclose(seen["soft"], _softmax(logits.astype(np.float32)), rtol=1e-5, atol=1e-7)


def test_the_cached_and_the_live_teacher_choose_the_same_head(parts, tmp_path):
    from tinysml.distill.teacher_cache import teacher_outputs
    data, teacher = parts
    cache = teacher_outputs(teacher, data.train[0], str(tmp_path / "cache"))
    live, cached = _student(data), _student(data)
    a = pipeline.search_head(CFG, teacher, live, data, str(tmp_path / "a"), pipeline._Progress(True), "inline", None)
    b = pipeline.search_head(CFG, teacher, cached, data, str(tmp_path / "b"), pipeline._Progress(True), "inline", cache)
    assert a["spec"] == b["spec"] and a["macro_f1"] == b["macro_f1"]
    for k, v in a["state"].items():
        np.testing.assert_array_equal(v, b["state"][k])


def test_a_finished_search_is_reused_and_its_winner_installed(parts, tmp_path, monkeypatch, capsys):
    data, teacher = parts
    first = pipeline.search_head(CFG, teacher, _student(data), data, str(tmp_path), pipeline._Progress(False), "inline")
    assert (tmp_path / "search.npz").exists()
    board = (tmp_path / "leaderboard.md").read_text()
    assert capsys.readouterr().out.endswith("[search] leaderboard:\n" + board.rstrip("\n") + "\n")
    monkeypatch.setattr(S, "search", lambda *a, **kw: pytest.fail("searched again"))
    student = _student(data)
    again = pipeline.search_head(CFG, teacher, student, data, str(tmp_path), pipeline._Progress(False), "inline")
    assert capsys.readouterr().out == f"[search] reusing {tmp_path / 'search.npz'}: {first['spec']}\n"
    assert again["spec"] == first["spec"] and student.config.head == first["spec"]
    for k, v in student.classifier.state_dict().items():
        np.testing.assert_array_equal(v, first["state"][k])


def test_the_teacher_alone_is_trained_on_the_split_and_scaling_the_config_names(tmp_path, monkeypatch, capsys):
    paths = []
    monkeypatch.setattr(pipeline, "load", lambda name, path=None: paths.append(path) or load(name))
    cfg = dataclasses.replace(CFG, search=False, seed=1, scaling="zscore", data_path="/data/bm")
    r = pipeline.run_teacher(cfg, str(tmp_path))
    assert paths == ["/data/bm"]
    assert capsys.readouterr().out.startswith("[teacher] har-teacher: ")
    teacher, tree = io.load_model(str(tmp_path / "teacher.npz"))
    assert tree["data_path"] == "/data/bm" and tree["scaler"]["kind"] == "zscore"
    data = prepare(load("basicmotions"), cfg.val_fraction, 1, "zscore")
    assert r["test"] == evaluate(teacher, *data.test) and r["val"] == evaluate(teacher, *data.val)
    assert r["params"] == teacher.num_parameters()


def test_the_teacher_alone_run_prints_nothing_when_quiet(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "fit", recording_fit([]))
    pipeline.run_teacher(dataclasses.replace(CFG, search=False), str(tmp_path), quiet=True)
    assert capsys.readouterr().out == ""


def test_each_progress_line_is_flushed_as_it_is_printed(monkeypatch):
    """A user following a long run in a log file (stdout to a file is block-buffered) sees each
    phase line when the phase starts, not when the buffer fills."""
    import io as _io
    import sys

    class Stdout(_io.StringIO):
        def flush(self):
            flushed.append(self.getvalue())
    flushed = []
    monkeypatch.setattr(sys, "stdout", Stdout())
    pipeline._Progress(False)("[stage] anchor 0")
    assert flushed == ["[stage] anchor 0\n"]
    pipeline._Progress(True)("[stage] anchor 1")
    assert flushed == ["[stage] anchor 0\n"] and sys.stdout.getvalue() == "[stage] anchor 0\n"


def test_the_search_runs_the_configured_candidates_epochs_seed_and_executor(parts, tmp_path, monkeypatch):
    """search_budget samples that many candidates of the space with the run's seed (else the whole
    grid); the candidates train search_epochs epochs from the run's seed, where the caller said."""
    data, teacher = parts
    calls = []
    real = S.search
    monkeypatch.setattr(S, "search", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    space = {"linear": {"dropout": [0.0, 0.1, 0.2]}, "mlp": {"hidden": [8, 16]}}
    cfg = dataclasses.replace(CFG, search_space=space, search_budget=2, search_epochs=1, seed=4)
    pipeline.search_head(cfg, teacher, _student(data), data, str(tmp_path / "a"), pipeline._Progress(True), "inline")
    pipeline.search_head(dataclasses.replace(cfg, search_budget=None), teacher, _student(data), data,
                         str(tmp_path / "b"), pipeline._Progress(True), "inline")
    (sampled, kw), (grid, _) = calls
    assert sampled[0] == S.sample(space, 2, 4) and grid[0] == S.candidates(space) and len(grid[0]) == 5
    assert sampled[6] == "inline" and (kw["epochs"], kw["seed"]) == (1, 4)
    np.testing.assert_array_equal(sampled[2], data.train[1])
    np.testing.assert_array_equal(sampled[4], data.val[1])


@pytest.mark.parametrize("scope", ["anchor", "all"])
def test_each_stage_anchor_trains_its_parameters_with_its_recipe(parts, tmp_path, monkeypatch, scope):
    """One fit per anchor: the stage budget and learning rate, no weight decay, no schedule, the
    stage optimiser (else the run's), selection on minus the stage loss; the parameters of the
    anchor's scope; a checkpoint per anchor. Then the distilled student is saved and reused."""
    from tinysml.distill.stage import stage_loss
    from tinysml.tensor import Tensor, no_grad
    from tinysml.train import TrainConfig
    data, teacher = parts
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls))
    uniform = scope == "all"
    cfg = dataclasses.replace(CFG, stage_scope=scope, stage_epochs=3, stage_lr=5e-4, optimizer="radam",
                              stage_optimizer=None if scope == "anchor" else "sgd", gamma=0.5, tau=2.0,
                              uniform_freq=uniform)
    student = _student(data)
    pipeline.stage_distillation(cfg, teacher, student, data, str(tmp_path), pipeline._Progress(True))
    assert len(calls) == len(student.anchors) == 3
    for s, call in enumerate(calls):
        wrapped = call["model"]
        assert call["config"] == TrainConfig(epochs=3, batch_size=16, lr=5e-4, weight_decay=0.0, schedule="none",
                                             optimizer="radam" if scope == "anchor" else "sgd", seed=0,
                                             select_metric="neg_stage_loss")
        expected = wrapped.stage_parameters(s) if scope == "anchor" else student.parameters() + wrapped.adapters[s].parameters()
        assert [id(p) for p in call["params"]] == [id(p) for p in expected]
        assert call["checkpoint"] == str(tmp_path / f"stage{s}.train.npz") and call["fingerprint"] == {"anchor": s}
        assert call["batch_index"] is True and call["progress"] is False          # a quiet log: no progress bars
        # training: the stage loss of a batch against the teacher's stage-s feature, with the config's gamma, tau, uniform
        idx = np.arange(3, 11)
        x = Tensor(data.train[0][idx])
        with no_grad():
            want = stage_loss(wrapped.stage_feature(x, s), teacher.forward_stages(x, upto=s)[0][s].data, 0.5, 2.0,
                              uniform).item()
        assert call["loss_fn"](wrapped, x, data.train[1][idx], idx).item() == pytest.approx(want, rel=1e-6)
        # validation: minus the mean stage loss of the validation windows, in eval mode, mode restored
        student.train()
        score = call["evaluate_fn"](wrapped)
        assert student.training
        student.eval()
        with no_grad():
            x = Tensor(data.val[0])
            want = stage_loss(wrapped.stage_feature(x, s), teacher.forward_stages(x, upto=s)[0][s].data, 0.5, 2.0,
                              uniform).item()
        assert score == {"neg_stage_loss": pytest.approx(-want, rel=1e-6)}
        assert not student.training and call["evaluate_fn"](wrapped) == score     # eval mode stays eval
    saved = io.load(str(tmp_path / "stage.npz"))["state"]
    assert set(saved) == set(student.state_dict())


def test_the_stage_loss_reads_the_same_teacher_from_the_cache(parts, tmp_path, monkeypatch):
    from tinysml.distill.teacher_cache import teacher_outputs
    from tinysml.tensor import Tensor
    data, teacher = parts
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls))
    cache = teacher_outputs(teacher, data.train[0], str(tmp_path / "cache"))
    pipeline.stage_distillation(CFG, teacher, _student(data), data, str(tmp_path / "a"), pipeline._Progress(True))
    pipeline.stage_distillation(CFG, teacher, _student(data), data, str(tmp_path / "b"), pipeline._Progress(True), cache)
    idx = np.arange(5, 13)
    for live, cached in zip(calls[:3], calls[3:]):
        x = Tensor(data.train[0][idx])
        assert live["loss_fn"](live["model"], x, data.train[1][idx], idx).item() == \
            cached["loss_fn"](cached["model"], x, data.train[1][idx], idx).item()


def test_a_finished_stage_phase_is_reused(parts, tmp_path, monkeypatch, capsys):
    data, teacher = parts
    monkeypatch.setattr(pipeline, "fit", recording_fit([]))
    first = _student(data)
    for p in first.parameters():
        p.data += 1.0                                                      # something to recognise
    io.save(str(tmp_path / "stage.npz"), {"state": first.state_dict()})
    monkeypatch.setattr(pipeline, "fit", lambda *a, **kw: pytest.fail("trained again"))
    student = _student(data)
    pipeline.stage_distillation(CFG, teacher, student, data, str(tmp_path), pipeline._Progress(False))
    assert capsys.readouterr().out == f"[stage] reusing {tmp_path / 'stage.npz'}\n"
    for k, v in student.state_dict().items():
        np.testing.assert_array_equal(v, first.state_dict()[k])


def test_stage_validation_counts_every_window_once_in_chunks_of_256(parts, tmp_path, monkeypatch):
    """The stage score of a validation split larger than one chunk: the chunks' mean stage losses
    weighted by their sizes (the spectral attention is a chunk's own, so chunks are fixed at 256)."""
    from tinysml.distill.stage import stage_loss
    from tinysml.tensor import Tensor, no_grad
    data, teacher = parts
    Xv = np.concatenate([data.val[0]] * 38)[:300] + np.linspace(0, 1, 300, dtype=np.float32)[:, None, None]
    big = dataclasses.replace(data, val=(Xv, np.zeros(300, np.int64)))
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls))
    student = _student(data)
    pipeline.stage_distillation(CFG, teacher, student, big, str(tmp_path), pipeline._Progress(True))
    wrapped = calls[0]["model"]
    student.eval()
    with no_grad():
        parts_ = [(Tensor(Xv[i:j]), j - i) for i, j in ((0, 256), (256, 300))]
        want = sum(stage_loss(wrapped.stage_feature(x, 0), teacher.forward_stages(x, upto=0)[0][0].data).item() * n
                   for x, n in parts_) / 300
    assert calls[0]["evaluate_fn"](wrapped)["neg_stage_loss"] == pytest.approx(-want, rel=1e-6)


def test_the_stage_adapters_are_drawn_from_the_runs_seed(parts, tmp_path, monkeypatch):
    """A student whose stages differ from the teacher's in width gets 1x1 adapters; they are drawn
    from the run's seed, so the run is reproduced from its config."""
    data, teacher = parts
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls))
    from tinysml.distill.stage import StudentStages
    cfg = dataclasses.replace(CFG, student="realworld-student", seed=3)
    for run in ("a", "b"):
        student = pipeline._models_for(cfg, data.dataset.window_shape, data.dataset.num_classes)[1]
        pipeline.stage_distillation(cfg, teacher, student, data, str(tmp_path / run), pipeline._Progress(True))
    a, b = calls[0]["model"].adapters, calls[3]["model"].adapters
    fresh = StudentStages(student, teacher, seed=3).adapters
    weights = [(p.data, q.data) for x, y in zip(a, b) for p, q in zip(x.parameters(), y.parameters())]
    weights += [(p.data, q.data) for x, y in zip(a, fresh) for p, q in zip(x.parameters(), y.parameters())]
    assert len(weights) == 6
    for p, q in weights:
        np.testing.assert_array_equal(p, q)


def test_the_teacher_phase_trains_once_with_its_recipe_then_is_reused(parts, tmp_path, monkeypatch, capsys):
    from tinysml.train import TrainConfig
    data, _ = parts
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls))
    cfg = dataclasses.replace(CFG, teacher_epochs=4, teacher_lr=3e-3, teacher_label_smoothing=0.1, teacher_jitter=0.05,
                              teacher_scale=0.2, data_path="/data/bm")
    teacher = pipeline.train_teacher(cfg, data, str(tmp_path), pipeline._Progress(True))
    (call,) = calls
    assert call["model"] is teacher and call["config"] == TrainConfig(
        epochs=4, batch_size=16, lr=3e-3, label_smoothing=0.1, augment_jitter=0.05, augment_scale=0.2, seed=0)
    assert call["checkpoint"] == str(tmp_path / "teacher.train.npz") and call["progress"] is False
    assert call["fingerprint"] == {"model": teacher.config.to_dict()}
    saved, tree = io.load_model(str(tmp_path / "teacher.npz"))
    assert (tree["dataset"], tree["data_path"], tree["class_names"]) == ("basicmotions", "/data/bm",
                                                                        data.dataset.class_names)
    want = data.scaler.to_tree()
    assert set(tree["scaler"]) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(tree["scaler"][k], v)
    monkeypatch.setattr(pipeline, "fit", lambda *a, **kw: pytest.fail("trained again"))
    again = pipeline.train_teacher(cfg, data, str(tmp_path), pipeline._Progress(False))
    assert capsys.readouterr().out == f"[teacher] reusing {tmp_path / 'teacher.npz'}\n"
    assert {p.data.dtype for p in again.parameters()} == {np.dtype(np.float32)}
    for k, v in again.state_dict().items():
        np.testing.assert_array_equal(v, teacher.state_dict()[k])
