"""The frozen teacher's cached outputs: the same bits as running the teacher on every batch, so a
run's results do not depend on the cache; the cache is keyed, atomic and checked when read."""
import dataclasses
import json
import os

import numpy as np
import pytest

from tinysml import Tensor, batch_invariant, no_grad
from tinysml.distill.pipeline import SMLDistConfig, run
from tinysml.distill.teacher_cache import TeacherOutputs, cache_key, teacher_forward, teacher_outputs
from tinysml.models import build_model, preset

TINY = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=2, student_epochs=2,
                     stage_epochs=1)
HOPFIELD = {"kind": "mixture", "heads": [{"kind": "hopfield", "patterns": 8, "dim": 16}, {"kind": "linear"}]}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    run(dataclasses.replace(TINY, method="none", student_epochs=0), str(d), quiet=True)
    return str(d / "teacher.npz")


def _without_times(r):
    r = json.loads(json.dumps(r))
    r.pop("config")
    for h in r["history"]:
        h.pop("seconds", None)
    return r


@pytest.mark.parametrize("method", ["smldist", "kd", "fitnet", "at"])
def test_results_are_identical_with_and_without_the_cache(tmp_path, teacher_ckpt, method):
    cached = run(dataclasses.replace(TINY, method=method), str(tmp_path / "cached"), teacher_checkpoint=teacher_ckpt,
                 quiet=True)
    assert os.listdir(os.path.join(os.path.dirname(teacher_ckpt), "teacher-outputs"))     # built beside the teacher
    fresh = run(dataclasses.replace(TINY, method=method, teacher_cache=False), str(tmp_path / "fresh"),
                teacher_checkpoint=teacher_ckpt, quiet=True)
    assert _without_times(cached) == _without_times(fresh)
    for name in ("student.npz",):
        a, b = (np.load(tmp_path / d / name, allow_pickle=False) for d in ("cached", "fresh"))
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


def test_a_windows_outputs_do_not_depend_on_its_batch():
    """What makes cache and recomputation agree bitwise: under batch_invariant() every output of the
    teacher (logits, memory association, every stage) for a window is the same in any batch."""
    teacher = build_model(preset("har-teacher", 6, 100, 4, head=HOPFIELD), seed=0)
    teacher.eval()
    X = np.random.default_rng(0).standard_normal((70, 6, 100)).astype(np.float32)
    whole = TeacherOutputs.compute(teacher, X, chunk=70).arrays
    assert set(whole) == {"logits", "association", "stage0", "stage1", "stage2"}
    for chunk in (1, 16, 33):
        parts = TeacherOutputs.compute(teacher, X, chunk=chunk).arrays
        for k in whole:
            assert np.array_equal(parts[k], whole[k]), (chunk, k)
    idx = np.array([3, 8, 40, 41, 69])
    batch = teacher_forward(teacher, Tensor(X[idx]))
    for k in whole:
        assert np.array_equal(batch[k], whole[k][idx]), k


def test_without_batch_invariance_the_bits_do_differ():
    """The control: plain BLAS products do move the last bits with the batch size (else the test
    above would prove nothing)."""
    teacher = build_model(preset("har-teacher", 6, 100, 4, head=HOPFIELD), seed=0)
    teacher.eval()
    X = np.random.default_rng(0).standard_normal((70, 6, 100)).astype(np.float32)
    with no_grad():
        a = np.concatenate([teacher(Tensor(X[i:i + 1])).data for i in range(70)])
        b = teacher(Tensor(X)).data
        with batch_invariant():
            c = np.concatenate([teacher(Tensor(X[i:i + 1])).data for i in range(70)])
            d = teacher(Tensor(X)).data
    assert not np.array_equal(a, b) and np.allclose(a, b, atol=1e-5)
    assert np.array_equal(c, d)


def test_the_cache_is_keyed_atomic_and_checked(tmp_path):
    teacher = build_model(preset("har-teacher", 6, 100, 4), seed=0)
    teacher.eval()
    X = np.random.default_rng(1).standard_normal((20, 6, 100)).astype(np.float32)
    root = str(tmp_path / "teacher-outputs")
    first = teacher_outputs(teacher, X, root)
    assert os.listdir(root) == [cache_key(teacher, X)]                    # no temporary folder left
    assert isinstance(first.arrays["logits"], np.memmap)
    again = teacher_outputs(teacher, X, root)                              # read, not recomputed
    assert again.folder == first.folder and np.array_equal(again.arrays["stage1"], first.arrays["stage1"])
    # other data or another teacher: another key, never the stale cache
    assert cache_key(teacher, X[:19]) != cache_key(teacher, X)
    other = build_model(preset("har-teacher", 6, 100, 4), seed=1)
    assert cache_key(other, X) != cache_key(teacher, X)
    # a second writer that loses the race keeps the first copy and leaves nothing behind
    TeacherOutputs.compute(teacher, X).save(first.folder)
    assert sorted(os.listdir(root)) == [cache_key(teacher, X)]
    # a damaged cache is refused with what to do
    np.save(os.path.join(first.folder, "logits.npy"), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="delete the folder to rebuild it"):
        TeacherOutputs.load(first.folder)


@pytest.mark.parametrize("a_shape, b_shape", [((5, 7), (7, 3)), ((4, 5, 7), (4, 7, 3)), ((4, 5, 7), (7, 3)),
                                              ((2, 4, 5, 7), (4, 7, 3))])
def test_batch_invariant_products_equal_plain_ones_for_any_batch_dimensions(a_shape, b_shape):
    """The row-by-row form keeps b's batch dimensions aligned with a's (a (B, n, k) @ b (B, k, m))."""
    from tinysml import functions as F
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    with no_grad():
        plain = F.matmul(Tensor(a), Tensor(b)).data
        with batch_invariant():
            rows = F.matmul(Tensor(a), Tensor(b)).data
    assert rows.shape == plain.shape and np.allclose(rows, plain, rtol=1e-12, atol=1e-12)


def test_a_cache_being_written_is_hidden_beside_its_folder_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """While the arrays are written, the only entry under the cache root is one hidden folder (the
    same file system, so the rename into place is atomic; never a half-written key folder). A write
    that fails leaves the root as it was."""
    outputs = TeacherOutputs({"logits": np.ones((4, 3), np.float32), "stage0": np.zeros((4, 2, 5), np.float32)})
    root = tmp_path / "teacher-outputs"
    seen = []
    save = np.save

    def watching_save(path, *args, **kw):
        seen.append(sorted(os.listdir(root)))
        return save(path, *args, **kw)
    monkeypatch.setattr(np, "save", watching_save)
    folder = outputs.save(str(root / "key"))
    assert len(seen) == 2 and all(len(entries) == 1 and entries[0].startswith(".") for entries in seen)
    assert os.listdir(root) == ["key"] and sorted(os.listdir(folder)) == ["logits.npy", "meta.json", "stage0.npy"]

    def failing_save(path, *args, **kw):
        raise OSError("disk full")
    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        outputs.save(str(root / "other"))
    assert os.listdir(root) == ["key"]


def test_a_cache_of_another_format_is_refused_with_what_to_do(tmp_path):
    outputs = TeacherOutputs({"logits": np.ones((4, 3), np.float32)})
    folder = outputs.save(str(tmp_path / "key"))
    meta = json.load(open(os.path.join(folder, "meta.json")))
    json.dump({**meta, "format": 0}, open(os.path.join(folder, "meta.json"), "w"))
    with pytest.raises(ValueError) as err:
        TeacherOutputs.load(folder)
    assert str(err.value) == f"{folder}: teacher-output cache format 0, expected 1; delete the folder to rebuild it"


def test_the_cache_key_is_32_hex_digits():
    teacher = build_model(preset("har-student", 6, 20, 4), seed=0)
    key = cache_key(teacher, np.zeros((2, 6, 20), np.float32))
    assert len(key) == 32 and int(key, 16) >= 0 and key == key.lower()


@pytest.mark.parametrize("damage", ["dtype", "shape"])
def test_an_array_of_another_dtype_or_shape_alone_is_refused(tmp_path, damage):
    outputs = TeacherOutputs({"logits": np.ones((4, 3), np.float32)})
    folder = outputs.save(str(tmp_path / "key"))
    wrong = np.ones((4, 3), np.float64) if damage == "dtype" else np.ones((4, 5), np.float32)   # same rows
    np.save(os.path.join(folder, "logits.npy"), wrong)
    with pytest.raises(ValueError) as err:
        TeacherOutputs.load(folder)
    assert str(err.value) == (f"{folder}/logits.npy is {wrong.dtype} {wrong.shape}, its meta.json says float32 "
                              f"[4, 3]; delete the folder to rebuild it")


def test_rows_given_as_a_list_gather_like_an_index_array(monkeypatch):
    """Indices that are not a NumPy array take the device path (a copy made once, then ``take``);
    on the CPU it must give the same rows. While a CUDA graph is being captured, that first copy
    is refused, since a host-to-device copy cannot be recorded."""
    arrays = {"logits": np.arange(12, dtype=np.float32).reshape(4, 3), "stage0": np.arange(8.0).reshape(4, 2)}
    outputs = TeacherOutputs(arrays)
    for _ in range(2):                                            # the copy made on the first call, reused
        got = outputs.batch([3, 0])
        for name in arrays:
            np.testing.assert_array_equal(got[name], arrays[name][[3, 0]])
    import tinysml.cuda_graph as G
    monkeypatch.setattr(G, "capturing", lambda: True)
    with pytest.raises(RuntimeError) as err:
        TeacherOutputs(arrays).batch([1])
    assert str(err.value) == "the teacher's outputs must be on the GPU before a step is captured"
