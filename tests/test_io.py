"""Checkpoints: round trip, atomic writes, clear errors for foreign, mismatched and truncated files."""
import os

import numpy as np
import pytest

from tinysml import io
from tinysml.models import build_model, preset


def test_tree_round_trip(tmp_path):
    tree = {"a": np.arange(3.0), "b": {"c": [1, "x", None, np.ones((2, 2), np.float32)]}, "d": 2.5}
    io.save(tmp_path / "t.npz", tree)
    back = io.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["b"]["c"][:3] == [1, "x", None] and back["b"]["c"][3].dtype == np.float32 and back["d"] == 2.5


def test_model_round_trip(tmp_path):
    model = build_model(preset("har-student", 6, 100, 4), seed=5)
    io.save_model(tmp_path / "m.npz", model, class_names=["a", "b", "c", "d"])
    loaded, tree = io.load_model(tmp_path / "m.npz")
    assert tree["class_names"] == ["a", "b", "c", "d"]
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and np.array_equal(v, v2)


def test_checkpoint_of_another_architecture_names_the_tensors(tmp_path):
    student = build_model(preset("har-student", 6, 100, 4))
    io.save_model(tmp_path / "s.npz", student)
    teacher = build_model(preset("har-teacher", 6, 100, 4))
    with pytest.raises(ValueError, match=r"stem.0.weight: checkpoint \(16, 6, 3\) vs model \(32, 6, 3\)"):
        teacher.load_state_dict(io.load(tmp_path / "s.npz")["state"])


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9, 0.999])
def test_truncated_checkpoint_is_reported_as_such(tmp_path, keep):
    model = build_model(preset("har-student", 6, 100, 4))
    path = tmp_path / "m.npz"
    io.save_model(path, model)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(io.CheckpointError, match="truncated or corrupt"):
        io.load_model(path)


def test_foreign_npz_and_missing_file(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(io.CheckpointError, match="not a tinysml checkpoint"):
        io.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.load(tmp_path / "nothing.npz")


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "c.npz"
    io.save(path, {"x": np.ones(2)})
    with pytest.raises(TypeError):
        io.save(path, {"x": object()})
    assert np.array_equal(io.load(path)["x"], np.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def _half_then(action):
    """A stand-in for np.savez that writes half a zip into the file it is given, then ``action()``."""
    def savez(f, **arrays):
        f.write(b"PK\x03\x04" + b"half of a checkpoint" * 100)
        f.flush()
        action()
    return savez


def test_a_write_that_fails_midway_keeps_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    io.save(path, {"x": np.arange(5.0)})
    old = path.read_bytes()

    def disk_full():
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(io.np, "savez", _half_then(disk_full))
    with pytest.raises(OSError, match="No space left"):
        io.save(path, {"x": np.ones(3)})
    assert path.read_bytes() == old and sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_a_process_killed_midway_through_a_write_keeps_the_old_file(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "c.npz"
    io.save(path, {"x": np.arange(5.0)})
    old = path.read_bytes()
    script = (f"import os, signal, sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n"
              "import numpy as np\nfrom tinysml import io\nimport test_io\n"
              "io.np.savez = test_io._half_then(lambda: os.kill(os.getpid(), signal.SIGKILL))\n"
              f"io.save({str(path)!r}, {{'x': np.ones(3)}})\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    assert path.read_bytes() == old
    np.testing.assert_array_equal(io.load(path)["x"], np.arange(5.0))


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the result has the mode open() would give."""
    old = os.umask(0o022)
    try:
        io.save(tmp_path / "c.npz", {"x": np.ones(2)})
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "c.npz").st_mode & 0o777) == 0o644
