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
