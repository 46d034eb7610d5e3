"""The built-in dataset, the .ts reader, scaling and splits."""
import gzip

import numpy as np
import pytest

from tinysml.data import DataFormatError, WindowSet, fit_scaler, iterate_batches, load, read_ts, validation_split


def test_basicmotions_loads_offline():
    d = load("basicmotions")
    assert d.train.X.shape == (40, 6, 100) and d.test.X.shape == (40, 6, 100)
    assert d.train.X.dtype == np.float32 and d.num_classes == 4
    assert np.bincount(d.train.y).tolist() == [10, 10, 10, 10]
    assert np.isfinite(d.train.X).all()


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: allgesturewiimote, basicmotions"):
        load("nope")


def test_ts_reader_errors(tmp_path):
    bad = tmp_path / "bad.ts"
    bad.write_text("@problemName x\n@dimensions 2\n@data\n1,2,3:4,5,6:a\n1,2:3,4:b\n")
    with pytest.raises(DataFormatError, match="equal-length"):
        read_ts(bad)
    wrong_dims = tmp_path / "dims.ts"
    wrong_dims.write_text("@dimensions 3\n@data\n1,2:3,4:a\n")
    with pytest.raises(DataFormatError, match="@dimensions 3"):
        read_ts(wrong_dims)
    nodata = tmp_path / "nodata.ts.gz"
    nodata.write_bytes(gzip.compress(b"@problemName x\n"))
    with pytest.raises(DataFormatError, match="no '@data'"):
        read_ts(nodata)


def test_robust_scaling_fits_training_data_only():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20, 3, 50)).astype(np.float32)
    s1 = fit_scaler(train, "robust")
    Y = s1.transform(train)
    assert Y.min() >= 0 and Y.max() <= 1
    q25, q75 = np.percentile(train.transpose(1, 0, 2).reshape(3, -1), [25, 75], axis=1)
    np.testing.assert_allclose(s1.shift, q25 - 1.5 * (q75 - q25), rtol=1e-5)
    z = fit_scaler(train, "zscore").transform(train)
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0, atol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        s1.transform(np.zeros((1, 4, 50), np.float32))


def test_validation_split_by_subject_and_stratified():
    X = np.zeros((60, 2, 8), np.float32)
    y = np.repeat(np.arange(3), 20)
    subjects = np.tile(np.arange(6), 10)
    tr, va = validation_split(WindowSet(X, y, subjects), 0.34, seed=1)
    assert not set(tr.subjects) & set(va.subjects) and len(set(va.subjects)) == 2
    tr, va = validation_split(WindowSet(X, y, -np.ones(60)), 0.25, seed=1)
    assert np.bincount(va.y).tolist() == [5, 5, 5] and len(tr) == 45


def test_batches_cover_each_window_once():
    X, y = np.arange(10)[:, None, None].astype(np.float32), np.arange(10)
    seen = np.concatenate([yb for _, yb in iterate_batches(X, y, 4, np.random.default_rng(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(yb) for _, yb in iterate_batches(X, y, 4, None, drop_last=True)] == [4, 4]
