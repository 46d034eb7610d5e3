"""How ``run`` wires its phases: what each one is given and what the run reports of it. Training is
replaced by a recorder that evaluates the phase's loss on one batch, so each test takes seconds
(tests/test_pipeline.py trains whole methods): the head search and its result, the conditions of
the head transplant, the FitNets adapter, the teacher cache standing in for the teacher, the
progress bars."""
import dataclasses

import numpy as np
import pytest
from helpers import recording_fit, trained_teacher

from tinysml import io
from tinysml import search as S
from tinysml.distill import pipeline
from tinysml.distill.pipeline import SMLDistConfig, run
from tinysml.distill.stage import StageAdapter
from tinysml.tensor import Tensor

TINY = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=1, student_epochs=1,
                     stage_epochs=1, search_epochs=1, search_space={"linear": {"dropout": [0.0]},
                                                                   "mlp": {"hidden": [8]}})


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return trained_teacher(TINY, tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def fits(monkeypatch):
    """Replace training by a recorder: each call is kept, and its loss is evaluated on the first
    batch of training windows (as the first step would), so whatever the loss reads is read."""
    calls = []
    monkeypatch.setattr(pipeline, "fit", recording_fit(calls, first_step=True))
    return calls


@pytest.fixture
def teacher_off_the_training_windows(monkeypatch):
    """Once the teacher's outputs are cached, running the teacher on a training window fails the test."""
    real = pipeline.teacher_outputs

    def guard(forward, seen):
        def guarded(x, *args, **kw):
            rows = np.ascontiguousarray(x.data if isinstance(x, Tensor) else x)
            assert not any(r.tobytes() in seen for r in rows), "the teacher ran again on training windows"
            return forward(x, *args, **kw)
        return guarded

    def teacher_outputs(teacher, X, root):
        outputs = real(teacher, X, root)
        seen = {row.tobytes() for row in np.ascontiguousarray(X)}
        for name in ("features", "forward_stages"):
            setattr(teacher, name, guard(getattr(teacher, name), seen))
        return outputs
    monkeypatch.setattr(pipeline, "teacher_outputs", teacher_outputs)


@pytest.mark.parametrize("cache", [True, False])
def test_the_searched_head_is_the_students_and_the_run_reports_it(tmp_path, teacher_ckpt, fits, monkeypatch,
                                                                  teacher_off_the_training_windows, cache):
    """search=True: the head search runs (on the caller's executor), its winner becomes the
    student's head and results.json names it with its validation score; with the cache on, no
    phase runs the teacher on the training windows again (the cache is what they read)."""
    executors = []
    real = S.search
    monkeypatch.setattr(S, "search", lambda *a, **kw: executors.append(a[6]) or real(*a[:6], "inline", *a[7:], **kw))
    r = run(dataclasses.replace(TINY, search=True, teacher_cache=cache), str(tmp_path), teacher_checkpoint=teacher_ckpt,
            quiet=True, executor="the caller's")
    assert executors == ["the caller's"]
    winner = io.load(str(tmp_path / "search.npz"))["winner"]
    assert r["search"] == {"spec": winner["spec"], "val_macro_f1": winner["macro_f1"]}
    _, tree = io.load_model(str(tmp_path / "student.npz"))
    assert r["student"]["head"] == winner["spec"] == tree["config"]["head"]
    assert len(fits) == 4                                   # three stage anchors, then the final phase


def test_only_smldist_searches(tmp_path, teacher_ckpt, fits, monkeypatch):
    monkeypatch.setattr(S, "search", lambda *a, **kw: pytest.fail("searched"))
    r = run(dataclasses.replace(TINY, method="kd", search=True), str(tmp_path), teacher_checkpoint=teacher_ckpt,
            quiet=True)
    assert r["search"] is None and not (tmp_path / "search.npz").exists()


@pytest.mark.parametrize("method, overrides, transplanted", [
    ("smldist", {}, True),
    ("smldist", {"transplant_head": False}, False),
    ("smldist", {"mu": 0.0}, False),                        # no memory loss: nothing to start the head from
    ("kd", {}, False),
    ("none", {}, False),
])
def test_the_head_is_transplanted_for_smldist_with_memory_loss_only(tmp_path, teacher_ckpt, fits, capsys, method,
                                                                    overrides, transplanted):
    cfg = dataclasses.replace(TINY, method=method, use_stage=False, **overrides)
    run(cfg, str(tmp_path), teacher_checkpoint=teacher_ckpt)
    head_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[head]")]
    assert head_lines == (["[head] transplanted the teacher's whole head into the student"] if transplanted else [])
    student, _ = io.load_model(str(tmp_path / "student.npz"))
    teacher, _ = io.load_model(teacher_ckpt)
    same = all(np.array_equal(v, teacher.classifier.state_dict()[k]) for k, v in student.classifier.state_dict().items())
    assert same == transplanted


def test_the_fitnets_adapter_is_drawn_from_the_runs_seed_and_trained_with_the_student(tmp_path, teacher_ckpt, fits):
    """The hint adapter maps the student's middle anchor to the teacher's (a 1x1 convolution for a
    student narrower than the teacher); it starts from the run's seed (the run is reproduced from
    its config) and trains beside the student."""
    cfg = dataclasses.replace(TINY, method="fitnet", student="realworld-student", seed=3)
    r = run(cfg, str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)
    (call,) = fits
    trainable = call["model"]
    student, teacher = trainable.student, io.load_model(teacher_ckpt)[0]
    want = StageAdapter(student.stage_shapes()[1], teacher.stage_shapes()[1], np.random.default_rng(3))
    adapter = trainable.hint_adapter
    assert adapter.parameters()
    for p, q in zip(adapter.parameters(), want.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert [id(p) for p in call["params"]] == [id(p) for p in student.parameters() + adapter.parameters()]
    assert r["student"]["params"] == student.num_parameters()          # the adapter is not part of the student


@pytest.mark.parametrize("quiet", [True, False])
def test_the_final_phase_shows_progress_bars_unless_quiet(tmp_path, teacher_ckpt, fits, quiet):
    run(dataclasses.replace(TINY, method="kd"), str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=quiet)
    (call,) = fits
    assert call["progress"] is (not quiet)
