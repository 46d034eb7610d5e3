"""Readers of the official layouts, on small files the tests write in exactly those layouts;
windowing, resampling, filtering, gaps, splits, and scaling that never sees held-out subjects."""
import os
import zipfile

import numpy as np
import pytest

from tinysml.data import (DataFormatError, HARDataset, Recording, WindowSet, fill_gaps, gravity_body_split, load,
                          leave_one_subject_out, prepare, resample, window_recording)
from tinysml.data import official

R = np.random.default_rng(0)


def write_rows(path, rows, fmt="%.6f", sep=" "):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savetxt(path, rows, fmt=fmt, delimiter=sep)


# --------------------------------------------------------------------------- UCI HAR Dataset
def make_uci_har(root, n=(5, 4), columns=128):
    root.mkdir(parents=True, exist_ok=True)
    (root / "activity_labels.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(
        ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"], 1)))
    for split, count in zip(("train", "test"), n):
        for s in official.UCI_SIGNALS:
            write_rows(str(root / split / "Inertial Signals" / f"{s}_{split}.txt"), R.standard_normal((count, columns)))
        write_rows(str(root / split / f"y_{split}.txt"), R.integers(1, 7, (count, 1)), fmt="%d")
        write_rows(str(root / split / f"subject_{split}.txt"), R.integers(1, 31, (count, 1)), fmt="%d")


def test_uci_har_folder(tmp_path):
    make_uci_har(tmp_path / "UCI HAR Dataset")
    d = load("uci-har-published", path=str(tmp_path / "UCI HAR Dataset"))
    assert d.train.X.shape == (5, 9, 128) and d.test.X.shape == (4, 9, 128) and d.num_classes == 6
    assert d.train.y.min() >= 0 and d.train.y.max() <= 5


def test_uci_har_wrong_columns_and_wrong_folder(tmp_path):
    make_uci_har(tmp_path / "bad", columns=100)
    with pytest.raises(DataFormatError, match="expected 128 columns per line, found 100"):
        load("uci-har-published", path=str(tmp_path / "bad"))
    with pytest.raises(DataFormatError, match="does not exist.*UCI repository"):
        load("uci-har-published", path=str(tmp_path))


# --------------------------------------------------------------------------- HAPT RawData
def test_hapt_rawdata(tmp_path):
    raw = tmp_path / "RawData"
    for exp, user in [(1, 1), (2, 2)]:
        write_rows(str(raw / f"acc_exp{exp:02d}_user{user:02d}.txt"), R.standard_normal((600, 3)))
        write_rows(str(raw / f"gyro_exp{exp:02d}_user{user:02d}.txt"), R.standard_normal((600, 3)))
    write_rows(str(raw / "labels.txt"), [[1, 1, 5, 1, 300], [1, 1, 7, 301, 340], [2, 2, 1, 50, 560]], fmt="%d")
    d = load("hapt-raw", path=str(raw))      # user 2 is a UCI-HAR test subject
    assert len(d.train) == (300 - 128) // 64 + 1 and set(d.train.y) == {4}
    assert len(d.test) == (511 - 128) // 64 + 1 and set(d.test.y) == {0}


# --------------------------------------------------------------------------- WISDM
def test_wisdm_skips_and_counts_malformed_records(tmp_path):
    lines = []
    for user, act in [(1, "Walking"), (1, "Jogging"), (36, "Sitting")]:
        for t in range(300):
            lines.append(f"{user},{act},{t},{R.normal():.3f},{R.normal():.3f},{R.normal():.3f};")
    lines.insert(10, "1,Walking,11,0.1,;")                    # broken record, as in the real file
    lines.append("33,Jogging,49394992294000,0.0,0.0,;")
    path = tmp_path / "WISDM_ar_v1.1_raw.txt"
    path.write_text("\n".join(lines))
    d = load("wisdm", path=str(path))
    assert d.extra["report"]["malformed"] == 2 and d.window_shape == (3, 128)
    assert set(d.test.subjects) == {36} and len(d.train) == 2 * ((300 - 128) // 64 + 1)
    (tmp_path / "empty.txt").write_text("nothing here\n")
    with pytest.raises(DataFormatError, match="user,activity,timestamp,x,y,z"):
        load("wisdm", path=str(tmp_path / "empty.txt"))


# --------------------------------------------------------------------------- PAMAP2
def test_pamap2_gaps_and_columns(tmp_path):
    proto = tmp_path / "Protocol"
    for subject in (101, 105):
        data = R.standard_normal((1200, 54))
        data[:, 1] = np.repeat([0, 1, 4], 400)                    # transient, lying, walking
        data[100:105, 3 + 1] = np.nan                             # a short gap: interpolated
        data[700:760, 3 + 17 + 7] = np.nan                        # a long gap: dropped
        write_rows(str(proto / f"subject{subject}.dat"), data)
    d = load("pamap2", path=str(proto))
    assert d.window_shape == (18, 256) and d.class_names == ["activity-1", "activity-4"]
    assert d.extra["report"] == {"filled": 10, "dropped": 120}
    assert np.isfinite(d.train.X).all()
    write_rows(str(tmp_path / "bad" / "subject101.dat"), R.standard_normal((10, 50)))
    with pytest.raises(DataFormatError, match="expected 54 columns"):
        load("pamap2", path=str(tmp_path / "bad"))


# --------------------------------------------------------------------------- RealWorld-HAR
def make_realworld(root, probands=(1, 14), activities=("walking", "sitting"), seconds=12):
    for p in probands:
        data = root / f"proband{p}" / "data"
        data.mkdir(parents=True)
        for sensor in official.REALWORLD_SENSORS:
            for act in activities:
                with zipfile.ZipFile(data / f"{sensor}_{act}_csv.zip", "w") as z:
                    for pos in official.REALWORLD_POSITIONS:
                        t0 = 1_000_000 + R.integers(0, 50)
                        rows = ["id,attr_time,attr_x,attr_y,attr_z"] + [
                            f"{i},{t0 + i * 20},{R.normal():.4f},{R.normal():.4f},{R.normal():.4f}" for i in range(seconds * 50)]
                        z.writestr(f"{sensor}_{act}_{pos}.csv", "\n".join(rows))


def test_realworld(tmp_path):
    make_realworld(tmp_path)
    d = load("realworld", path=str(tmp_path))
    assert d.window_shape == (63, 225) and set(d.test.subjects) == {14}
    assert set(d.train.y) == {official.REALWORLD_ACTIVITIES.index("walking"), official.REALWORLD_ACTIVITIES.index("sitting")}
    with pytest.raises(DataFormatError, match="no proband"):
        load("realworld", path=str(tmp_path / "proband1"))


def test_path_datasets_say_where_to_get_them():
    with pytest.raises(ValueError, match="not distributed through a package registry.*PAMAP2_Dataset.zip"):
        load("pamap2")


# --------------------------------------------------------------------------- windows and signals
def test_window_rules():
    labels = np.r_[np.full(300, 1), np.full(50, -1), np.full(200, 2)]
    rec = Recording(np.arange(550 * 2, dtype=np.float32).reshape(550, 2), labels, 1)
    X, y = window_recording(rec, 128, 64, "segment", keep={1, 2})
    assert X.shape == (3 + 2, 2, 128) and y.tolist() == [1, 1, 1, 2, 2]
    assert X[0, 0, 0] == 0 and X[3, 0, 0] == 350 * 2                    # segment windows start at the run
    # starts 0..384: the window at 256 is mostly unlabelled (50 of 128) and is dropped
    _, y = window_recording(rec, 128, 64, "majority", keep={1, 2})
    assert y.tolist() == [1, 1, 1, 1, 2, 2]
    _, y = window_recording(rec, 100, 100, "center", keep=None)      # centres 50, 150, 250, 350, 450
    assert y.tolist() == [1, 1, 1, 2, 2]


def test_resample_gravity_and_gaps():
    t = np.arange(1000) / 100
    sig = np.stack([np.sin(2 * np.pi * 1 * t), np.cos(2 * np.pi * 1 * t)], axis=1)
    half = resample(sig, 100, 50)
    assert half.shape == (500, 2)
    np.testing.assert_allclose(half[50:450, 0], np.sin(2 * np.pi * t[::2][50:450]), atol=0.02)
    acc = np.stack([np.full(1000, 9.81), np.sin(2 * np.pi * 5 * t), np.zeros(1000)], 1)
    gravity, body = gravity_body_split(acc, 100.0)
    assert abs(gravity[300:700, 0].mean() - 9.81) < 1e-3 and np.abs(gravity[300:700, 1]).max() < 0.01
    x = np.arange(20.0)[:, None].copy()
    x[3:5], x[10:17] = np.nan, np.nan
    filled, invalid, report = fill_gaps(x, max_gap=3)
    assert filled[3, 0] == 3 and invalid.sum() == 7 and report == {"filled": 2, "dropped": 7}


def _subject_dataset():
    subjects = np.repeat(np.arange(10), 20)
    X = R.standard_normal((200, 3, 16)).astype(np.float32) + subjects[:, None, None]
    ws = WindowSet(X, np.tile(np.arange(4), 50), subjects)
    test = WindowSet(R.standard_normal((40, 3, 16)).astype(np.float32), np.tile(np.arange(4), 10), np.repeat([20, 21], 20))
    return HARDataset("toy", ws, test, list("abcd"), ["x", "y", "z"], 50.0)


@pytest.mark.parametrize("kind", ["robust", "zscore"])
def test_scaling_never_depends_on_validation_or_test_subjects(kind):
    d = _subject_dataset()
    p1 = prepare(d, 0.3, seed=4, scaling=kind)
    assert not set(p1.train_subjects) & set(p1.val_subjects)
    # wreck every validation and test window: the fitted statistics must not move
    d.test.X[:] = 1e6
    d.train.X[np.isin(d.train.subjects, p1.val_subjects)] = -1e6
    p2 = prepare(d, 0.3, seed=4, scaling=kind)
    np.testing.assert_array_equal(p1.scaler.shift, p2.scaler.shift)
    np.testing.assert_array_equal(p1.scaler.scale, p2.scaler.scale)
    # and they do move when training subjects change (the test can fail)
    d.train.X[np.isin(d.train.subjects, p1.train_subjects)] += 5
    assert not np.allclose(prepare(d, 0.3, seed=4, scaling=kind).scaler.shift, p1.scaler.shift)


def test_leave_one_subject_out():
    d = _subject_dataset()
    folds = list(leave_one_subject_out(d.train))
    assert [s for s, _, _ in folds] == list(range(10))
    for s, train, test in folds:
        assert set(test.subjects) == {s} and s not in set(train.subjects) and len(train) + len(test) == 200
