"""A run directory's identity (distill/run_dir.py), checked directly: the saved config, what may
change on resume, and the teacher a student is distilled from, with every refusal in its words."""
import dataclasses
import hashlib
import json
import os
import re

import pytest

from tinysml.distill.run_dir import RESUMABLE_ANYWHERE, check_run_dir, check_teacher_identity


@dataclasses.dataclass
class Config:
    seed: int = 0
    lr: float = 0.01
    method: str = "smldist"
    device: str = "cpu"
    teacher_cache: bool = True


def saved_config(run_dir):
    return json.load(open(os.path.join(run_dir, "config.json")))


def test_a_new_run_directory_records_its_config_and_accepts_it_again(tmp_path):
    run_dir = str(tmp_path / "a" / "run")
    check_run_dir(run_dir, Config(seed=3))
    assert saved_config(run_dir) == {"seed": 3, "lr": 0.01, "method": "smldist", "device": "cpu",
                                     "teacher_cache": True}
    check_run_dir(run_dir, Config(seed=3))
    assert saved_config(run_dir)["seed"] == 3


def test_another_config_is_refused_with_every_difference_named(tmp_path):
    run_dir = str(tmp_path / "run")
    check_run_dir(run_dir, Config())
    with pytest.raises(ValueError) as err:
        check_run_dir(run_dir, Config(seed=1, method="kd"))
    assert str(err.value) == (f"run directory {run_dir!r} holds a run with another configuration; refusing to resume:\n"
                              f"  method: saved 'smldist' vs now 'kd'\n  seed: saved 0 vs now 1\n"
                              f"use another directory, or remove it to start afresh")
    assert saved_config(run_dir)["seed"] == 0                 # the saved config is left as it was


def test_device_and_teacher_cache_may_change_on_resume(tmp_path):
    assert RESUMABLE_ANYWHERE == ("device", "teacher_cache")
    run_dir = str(tmp_path / "run")
    check_run_dir(run_dir, Config())
    check_run_dir(run_dir, Config(device="cuda", teacher_cache=False))


def test_options_added_after_a_run_was_written_count_as_their_defaults(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"seed": 0, "method": "smldist"}, f)       # written before lr existed
    check_run_dir(run_dir, Config())
    with pytest.raises(ValueError, match=r"lr: saved 0\.01 vs now 0\.5"):
        check_run_dir(run_dir, Config(lr=0.5))


def write_teacher(path, content=b"weights"):
    path.write_bytes(content)
    return str(path), hashlib.sha256(content).hexdigest()


def test_a_teacher_trained_in_the_run_is_recorded_and_another_refused(tmp_path):
    run_dir = str(tmp_path)
    assert check_teacher_identity(run_dir, None) == {"source": "trained in this run"}
    assert json.load(open(tmp_path / "teacher.json")) == {"source": "trained in this run"}
    assert check_teacher_identity(run_dir, None) == {"source": "trained in this run"}
    path, digest = write_teacher(tmp_path / "t.npz")
    with pytest.raises(ValueError) as err:
        check_teacher_identity(run_dir, path)
    assert str(err.value) == (f"run directory {run_dir!r} was started with a teacher trained in the run directory, "
                              f"now given the teacher checkpoint {path!r} (sha256 {digest[:12]}...); refusing to "
                              f"resume a student under another teacher. Use another directory, or remove it to "
                              f"start afresh")


def test_a_teacher_checkpoint_is_recorded_by_content_and_reused_when_not_given(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    path, digest = write_teacher(tmp_path / "t.npz")
    first = check_teacher_identity(run_dir, path)
    assert first == {"source": "checkpoint", "sha256": digest, "path": path}
    assert json.load(open(os.path.join(run_dir, "teacher.json"))) == first
    assert check_teacher_identity(run_dir, None) == first        # resumed with no teacher: the recorded one
    moved = str(tmp_path / "moved.npz")
    os.replace(path, moved)
    assert check_teacher_identity(run_dir, moved) == {**first, "path": moved}   # same content, another path
    other, other_digest = write_teacher(tmp_path / "other.npz", b"other weights")
    with pytest.raises(ValueError) as err:
        check_teacher_identity(run_dir, other)
    assert str(err.value).startswith(
        f"run directory {run_dir!r} was started with the teacher checkpoint {path!r} (sha256 {digest[:12]}...), "
        f"now given the teacher checkpoint {other!r} (sha256 {other_digest[:12]}...); refusing to resume")
    with open(moved, "wb") as f:
        f.write(b"changed weights")                              # the same path with new content
    with pytest.raises(ValueError, match="refusing to resume a student under another teacher"):
        check_teacher_identity(run_dir, moved)
    write_teacher(tmp_path / "t.npz", b"new weights at the recorded path")
    with pytest.raises(ValueError, match="refusing to resume a student under another teacher"):
        check_teacher_identity(run_dir, None)                    # the recorded path now holds another teacher


def test_a_missing_teacher_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError) as err:
        check_teacher_identity(str(tmp_path), missing)
    assert str(err.value) == f"teacher checkpoint {missing!r} does not exist or is not a file"
    assert not (tmp_path / "teacher.json").exists()
    with pytest.raises(FileNotFoundError, match="does not exist or is not a file"):
        check_teacher_identity(str(tmp_path), str(tmp_path))    # a folder is not a checkpoint
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    path, digest = write_teacher(tmp_path / "t.npz")
    check_teacher_identity(run_dir, path)
    os.remove(path)
    with pytest.raises(FileNotFoundError) as err:
        check_teacher_identity(run_dir, None)
    assert str(err.value) == (f"run directory {run_dir!r} was started with the teacher checkpoint {path!r} (sha256 "
                              f"{digest[:12]}...), which is gone; pass it again with --teacher (its sha256 must match)")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_an_option_this_version_does_not_know_is_refused_too(tmp_path):
    """A config.json holding an option this code does not have (written by another version) is a
    run this code cannot promise to continue."""
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(Config()), "warmup": 5}, f)
    with pytest.raises(ValueError, match=r"refusing to resume:\n  warmup: saved 5 vs now None\n"):
        check_run_dir(run_dir, Config())
