"""The pipeline's phases one at a time: the head search (its soft targets, the teacher read from
the cache or run afresh, resuming from its file) and the teacher-only run (the split, scaling and
data path the config names, what it prints). (tests/test_pipeline.py runs whole methods.)"""
import dataclasses
import types

import numpy as np
import pytest

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
    first = pipeline.search_head(CFG, teacher, _student(data), data, str(tmp_path), pipeline._Progress(True), "inline")
    assert (tmp_path / "search.npz").exists() and (tmp_path / "leaderboard.md").exists()
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
