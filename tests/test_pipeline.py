"""The SMLDist pipeline: every method runs, phases resume after a kill, a config mismatch is refused."""
import dataclasses
import json
import os
import subprocess
import sys
import types

import pytest
from helpers import trained_teacher

from tinysml.distill.pipeline import SMLDistConfig, run

TINY = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=2, student_epochs=2,
                     stage_epochs=1)
WORKER = os.path.join(os.path.dirname(__file__), "pipeline_worker.py")


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return trained_teacher(TINY, tmp_path_factory.mktemp("teacher"))


@pytest.mark.parametrize("method", ["smldist", "kd", "fitnet", "at", "none"])
def test_every_method_runs_and_reports(tmp_path, teacher_ckpt, method):
    r = run(dataclasses.replace(TINY, method=method), str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)
    assert json.load(open(tmp_path / "config.json"))["method"] == method
    # two tiny epochs on basicmotions already beat chance (0.25) by far, for the teacher and every student
    assert r["teacher"]["test"]["accuracy"] >= 0.5 and r["student"]["test"]["accuracy"] >= 0.4, r["student"]["test"]
    assert r["cost_ratio_macs"] == pytest.approx(r["student"]["macs"] / r["teacher"]["macs"]) and r["cost_ratio_macs"] < 0.5
    assert len(r["history"]) == TINY.student_epochs and 1 <= r["student"]["best_epoch"] <= TINY.student_epochs
    # the reported test score is the saved student's: re-evaluated from the file, through the deploy path
    from tinysml.data import load
    from tinysml.deploy import Predictor
    from tinysml.metrics import accuracy
    data = load("basicmotions")
    predicted = Predictor.load(tmp_path / "student.npz", use_numba=False).predict(data.test.X)
    assert accuracy(data.test.y, predicted) == pytest.approx(r["student"]["test"]["accuracy"])


def test_config_mismatch_on_resume_is_refused(tmp_path, teacher_ckpt):
    run(TINY, str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)
    with pytest.raises(ValueError, match=r"(?s)another configuration.*gamma: saved 1.0 vs now 0.0"):
        run(dataclasses.replace(TINY, gamma=0.0), str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)


@pytest.mark.parametrize("kill_at", ["teacher", "stage", "final"])
def test_resumes_after_a_kill_in_any_phase(tmp_path, kill_at):
    """SIGKILL inside a phase, rerun: the phase resumes from its last checkpoint (it does not start
    again), the run completes and equals an uninterrupted one."""
    env = dict(os.environ, TINYSML_BACKEND="numpy")
    straight = subprocess.run([sys.executable, WORKER, str(tmp_path / "a"), "none"], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    killed = subprocess.run([sys.executable, WORKER, str(tmp_path / "b"), kill_at], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    again = subprocess.run([sys.executable, WORKER, str(tmp_path / "b"), "none"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    checkpoint = {"teacher": "teacher", "stage": "stage0", "final": "final"}[kill_at] + ".train.npz"
    assert f"resumed from {tmp_path / 'b' / checkpoint} after epoch 2\n" in again.stdout, again.stdout
    a = json.load(open(tmp_path / "a" / "results.json"))
    b = json.load(open(tmp_path / "b" / "results.json"))
    assert a["student"]["test"] == b["student"]["test"] and a["teacher"]["test"] == b["teacher"]["test"]


def test_device_is_checked_and_may_change_on_resume(tmp_path, teacher_ckpt):
    """A finished CPU run resumes under device='cuda' (the device does not change results), and
    asking for a GPU without CuPy says what to install."""
    run(TINY, str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)
    assert run(dataclasses.replace(TINY, device="cuda"), str(tmp_path), quiet=True)["student"]
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install 'tinysml\\[cuda12\\]'"):
            run(dataclasses.replace(TINY, device="cuda"), str(tmp_path / "gpu"), teacher_checkpoint=teacher_ckpt,
                quiet=True)


def test_the_teacher_recipe_reaches_the_teacher_only(tmp_path, monkeypatch):
    """Label smoothing and augmentation configured for the teacher train the teacher; the student
    trains with the plain recipe every student method shares."""
    from tinysml.distill import pipeline
    seen = []

    def fit(model, train, val, config, **kw):
        seen.append(config)
        return types.SimpleNamespace(best_epoch=0, history=[])
    monkeypatch.setattr(pipeline, "fit", fit)
    cfg = dataclasses.replace(TINY, method="none", teacher_label_smoothing=0.1, teacher_jitter=0.05,
                              teacher_scale=0.2)
    run(cfg, str(tmp_path), quiet=True)
    teacher, student = seen
    assert (teacher.label_smoothing, teacher.augment_jitter, teacher.augment_scale) == (0.1, 0.05, 0.2)
    assert (student.label_smoothing, student.augment_jitter, student.augment_scale) == (0.0, 0.0, 0.0)


def test_the_teacher_is_part_of_the_run_identity(tmp_path, teacher_ckpt):
    """A run resumed under another teacher is refused (a student is never distilled from two),
    whether the other teacher is another file, the same path with new content, or one trained in
    the run directory; resumed with no teacher, it reuses the recorded, unchanged checkpoint."""
    import shutil
    from tinysml import io
    teacher = tmp_path / "teacher.npz"
    shutil.copy(teacher_ckpt, teacher)
    tree = io.load(teacher)
    tree["state"]["stem.0.weight"] = tree["state"]["stem.0.weight"] * 1.01
    other = tmp_path / "other.npz"
    io.save(other, tree)
    run_dir = str(tmp_path / "run")
    first = run(TINY, run_dir, teacher_checkpoint=str(teacher), quiet=True)
    assert first["teacher_identity"]["sha256"] == json.load(open(tmp_path / "run" / "teacher.json"))["sha256"]
    with pytest.raises(ValueError, match=r"was started with the teacher checkpoint .*teacher.npz.*, now given the "
                                         r"teacher checkpoint .*other.npz.*refusing to resume a student under another"):
        run(TINY, run_dir, teacher_checkpoint=str(other), quiet=True)
    assert run(TINY, run_dir, quiet=True) == first                     # the recorded teacher, unchanged
    moved = tmp_path / "moved.npz"
    os.replace(teacher, moved)
    with pytest.raises(FileNotFoundError, match="which is gone; pass it again with --teacher"):
        run(TINY, run_dir, quiet=True)
    assert run(TINY, run_dir, teacher_checkpoint=str(moved), quiet=True) == first   # same content, new path
    io.save(moved, tree)                                                           # same path, new content
    with pytest.raises(ValueError, match="refusing to resume a student under another teacher"):
        run(TINY, run_dir, teacher_checkpoint=str(moved), quiet=True)
    trained_here = str(tmp_path / "trained")
    run(dataclasses.replace(TINY, student_epochs=0, method="none"), trained_here, quiet=True)
    with pytest.raises(ValueError, match="was started with a teacher trained in the run directory"):
        run(dataclasses.replace(TINY, student_epochs=0, method="none"), trained_here, teacher_checkpoint=str(other),
            quiet=True)


def test_the_progress_lines_say_what_each_phase_did(tmp_path, teacher_ckpt, capsys):
    """What a user reads on stdout, phase by phase, with the numbers the run returns; ``quiet``
    prints nothing."""
    from tinysml import io
    run_dir = tmp_path / "s"
    r = run(TINY, str(run_dir), teacher_checkpoint=teacher_ckpt)
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("epoch ")]
    teacher, _ = io.load_model(teacher_ckpt)
    student, _ = io.load_model(str(run_dir / "student.npz"))
    cache = os.path.join(os.path.dirname(teacher_ckpt), "teacher-outputs") + os.sep
    assert lines[0] == f"[teacher] loaded {teacher_ckpt}"
    assert lines[1].startswith("[teacher] outputs on the 32 training windows: " + cache)
    assert lines[2:5] == [f"[stage] anchor {s}: {student.stage_shapes()[s]} <- teacher {teacher.stage_shapes()[s]}"
                          for s in range(3)]
    assert lines[5:] == [
        "[head] transplanted the teacher's whole head into the student",
        f"[final] smldist: student har-student, {student.num_parameters():,} parameters",
        f"[done] student test accuracy {r['student']['test']['accuracy']:.4f}, macro-F1 "
        f"{r['student']['test']['macro_f1']:.4f}; teacher {r['teacher']['test']['accuracy']:.4f}; "
        f"MACs ratio {r['cost_ratio_macs']:.3f}"]
    assert run(TINY, str(run_dir), teacher_checkpoint=teacher_ckpt) == r
    assert capsys.readouterr().out == f"[done] {run_dir / 'results.json'}\n"
    run(TINY, str(run_dir), teacher_checkpoint=teacher_ckpt, quiet=True)
    assert capsys.readouterr().out == ""
    trained_here = tmp_path / "t"
    run(dataclasses.replace(TINY, method="none", teacher_epochs=1, student_epochs=0), str(trained_here))
    assert not (trained_here / "teacher-outputs").exists()            # no teacher in the loss: no cache
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"[teacher] har-teacher: {teacher.num_parameters():,} parameters"
    assert "[final] none: student har-student, " in out[-2] and out[-1].startswith("[done] student test accuracy ")


def test_the_results_file_holds_what_was_measured(tmp_path, teacher_ckpt, monkeypatch):
    """results.json, field by field, against the saved models evaluated again on the run's split."""
    from dataclasses import asdict
    from tinysml import io, profile
    from tinysml.data import load
    from tinysml.data.fetch import sha256_file
    from tinysml.data.prepare import prepare
    from tinysml.train import evaluate
    cfg = dataclasses.replace(TINY, method="kd", scaling="zscore", data_path="/data/bm")
    paths = []
    import tinysml.distill.pipeline as pipeline
    monkeypatch.setattr(pipeline, "load", lambda name, path=None: paths.append(path) or load(name))
    r = run(cfg, str(tmp_path), teacher_checkpoint=teacher_ckpt, quiet=True)
    assert paths == ["/data/bm"]
    assert r == json.load(open(tmp_path / "results.json"))
    assert r["config"] == json.loads(json.dumps(asdict(cfg)))
    assert r["teacher_identity"] == {"source": "checkpoint", "sha256": sha256_file(teacher_ckpt), "path": teacher_ckpt}
    data = prepare(load("basicmotions"), TINY.val_fraction, TINY.seed, "zscore")
    teacher, _ = io.load_model(teacher_ckpt)
    student, tree = io.load_model(str(tmp_path / "student.npz"))
    assert (tree["dataset"], tree["data_path"]) == ("basicmotions", "/data/bm") and tree["scaler"]["kind"] == "zscore"
    assert tree["class_names"] == data.dataset.class_names
    t_cost, s_cost = profile.summary(teacher, (6, 100)), profile.summary(student, (6, 100))
    assert r["teacher"] == json.loads(json.dumps({"test": evaluate(teacher, *data.test), "val": evaluate(teacher, *data.val),
                                                  **t_cost}))
    assert r["student"]["val"] == evaluate(student, *data.val) and r["student"]["head"] == student.config.head
    assert {k: r["student"][k] for k in s_cost} == s_cost and r["search"] is None
    assert r["cost_ratio_params"] == s_cost["params"] / t_cost["params"]
    assert r["cost_ratio_macs"] == s_cost["macs"] / t_cost["macs"]
    assert [h["epoch"] for h in r["history"]] == [1, 2]
