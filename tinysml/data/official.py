"""Readers for the official layouts of data sets users download themselves.

Each function takes the folder (or file) as the publisher distributes it, checks the layout, and
returns a HARDataset (fixed-split protocols) or Recordings (to window with ``windows.py``). A path
that does not match says what was expected and where the data comes from.
"""
from __future__ import annotations

import csv
import glob
import io
import os
import re
import zipfile

import numpy as np

from .dataset import HARDataset, WindowSet
from .formats import DataFormatError
from .windows import Recording, fill_gaps, resample, windows_from_recordings


def _require(path: str, what: str, where: str, folder: bool = False) -> None:
    """``path`` must exist and be a file (or, with ``folder``, a folder)."""
    if not os.path.exists(path):
        raise DataFormatError(f"expected {what} at {path!r}, which does not exist. {where}")
    if folder != os.path.isdir(path):
        raise DataFormatError(f"expected {what} at {path!r}, which is a {'file' if folder else 'folder'}. {where}")


def _table(path: str, columns: int, sep=None) -> np.ndarray:
    """A numeric text table with exactly ``columns`` columns (NaN allowed)."""
    if not os.path.isfile(path):
        raise DataFormatError(f"expected a text table of {columns} columns at {path!r}, which is "
                              f"{'a folder' if os.path.isdir(path) else 'missing'}")
    try:
        data = np.loadtxt(path, delimiter=sep, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataFormatError(f"{path}: not a numeric table of {columns} columns ({err})") from err
    if data.shape[1] != columns:
        raise DataFormatError(f"{path}: expected {columns} columns per line, found {data.shape[1]}")
    return data


# --------------------------------------------------------------------------- UCI HAR Dataset
UCI_HAR_WHERE = ("Download 'UCI HAR Dataset.zip' from the UCI repository (https://archive.ics.uci.edu/dataset/240) "
                 "and unzip it; pass the 'UCI HAR Dataset' folder.")
UCI_SIGNALS = ["body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y", "body_gyro_z",
               "total_acc_x", "total_acc_y", "total_acc_z"]


def read_uci_har_folder(root: str) -> HARDataset:
    """The published 'UCI HAR Dataset' folder: {train,test}/Inertial Signals/<signal>_<split>.txt
    (128 values a line), y_<split>.txt (1-6), subject_<split>.txt, activity_labels.txt. 9 channels."""
    _require(root, "the 'UCI HAR Dataset' folder", UCI_HAR_WHERE, folder=True)
    labels_path = os.path.join(root, "activity_labels.txt")
    _require(labels_path, "the UCI HAR Dataset folder (activity_labels.txt)", UCI_HAR_WHERE)
    names = []
    for lineno, line in enumerate(open(labels_path, encoding="utf-8", errors="replace"), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] != str(len(names) + 1):
            raise DataFormatError(f"{labels_path}:{lineno}: expected '<id> <NAME>' with id {len(names) + 1}, "
                                  f"got {line.strip()[:60]!r}")
        names.append(parts[1])
    parts = {}
    for split in ("train", "test"):
        folder = os.path.join(root, split, "Inertial Signals")
        _require(folder, f"the {split} inertial signals folder", UCI_HAR_WHERE, folder=True)
        X = np.stack([_table(os.path.join(folder, f"{s}_{split}.txt"), 128) for s in UCI_SIGNALS], axis=1)
        y_path = os.path.join(root, split, f"y_{split}.txt")
        y = _table(y_path, 1)[:, 0]
        bad = (y != np.round(y)) | (y < 1) | (y > len(names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{y_path}:{i + 1}: label {y[i]:g} is not one of the {len(names)} activities "
                                  f"(1..{len(names)}) of activity_labels.txt")
        y = y.astype(np.int64) - 1
        subj = _table(os.path.join(root, split, f"subject_{split}.txt"), 1)[:, 0].astype(np.int64)
        if not len(X) == len(y) == len(subj):
            raise DataFormatError(f"{root}/{split}: {len(X)} windows, {len(y)} labels, {len(subj)} subject ids")
        parts[split] = WindowSet(X.astype(np.float32), y, subj)
    return HARDataset("uci-har-published", parts["train"], parts["test"], names, UCI_SIGNALS, 50.0,
                      "UCI HAR Dataset as published (7,352 / 2,947 windows)")


# --------------------------------------------------------------------------- HAPT RawData
HAPT_WHERE = ("Download the 'Smartphone-Based Recognition of Human Activities and Postural Transitions' zip from UCI "
              "(https://archive.ics.uci.edu/dataset/341); pass its RawData folder.")


def read_hapt_rawdata(root: str) -> list:
    """HAPT's RawData folder: acc_expXX_userYY.txt and gyro_expXX_userYY.txt (3 columns each) and
    labels.txt (experiment, user, activity, first sample, last sample; 1-based, inclusive)."""
    _require(root, "HAPT's RawData folder", HAPT_WHERE, folder=True)
    _require(os.path.join(root, "labels.txt"), "HAPT's RawData/labels.txt", HAPT_WHERE)
    spans = _table(os.path.join(root, "labels.txt"), 5).astype(np.int64)
    used = np.zeros(len(spans), bool)
    recs = []
    for acc_path in sorted(glob.glob(os.path.join(root, "acc_exp*_user*.txt"))):
        m = re.search(r"acc_exp(\d+)_user(\d+)\.txt$", acc_path)
        exp, user = int(m.group(1)), int(m.group(2))
        gyro_path = acc_path.replace("acc_exp", "gyro_exp")
        _require(gyro_path, "the gyroscope file matching " + os.path.basename(acc_path), HAPT_WHERE)
        acc, gyro = _table(acc_path, 3), _table(gyro_path, 3)
        n = min(len(acc), len(gyro))
        labels = -np.ones(n, np.int64)
        for row, (e, u, act, first, last) in enumerate(spans):
            if e == exp and u == user:
                if not 1 <= first <= last <= n:
                    raise DataFormatError(f"{os.path.join(root, 'labels.txt')}:{row + 1}: the span {first}..{last} "
                                          f"does not fit experiment {exp} of user {user}, which has {n} samples "
                                          f"(spans are 1-based and inclusive)")
                labels[first - 1:last] = act
                used[row] = True
        recs.append(Recording(np.hstack([acc[:n], gyro[:n]]).astype(np.float32), labels, user))
    if not recs:
        raise DataFormatError(f"{root}: no acc_expXX_userYY.txt files. {HAPT_WHERE}")
    if not used.all():
        row = int(np.flatnonzero(~used)[0])
        raise DataFormatError(f"{os.path.join(root, 'labels.txt')}:{row + 1}: experiment {spans[row, 0]} of user "
                              f"{spans[row, 1]} has no acc/gyro files in {root}")
    return recs


# --------------------------------------------------------------------------- WISDM v1.1
WISDM_WHERE = ("Download WISDM_ar_latest.tar.gz (v1.1) from the WISDM lab (https://www.cis.fordham.edu/wisdm/dataset.php); "
               "pass WISDM_ar_v1.1_raw.txt.")
WISDM_ACTIVITIES = ["Walking", "Jogging", "Upstairs", "Downstairs", "Sitting", "Standing"]


def read_wisdm(path: str):
    """WISDM v1.1 raw file: records 'user,activity,timestamp,x,y,z;' (20 Hz phone accelerometer).
    Malformed records (the file has some) are skipped and counted. Returns (recordings, report)."""
    _require(path, "WISDM_ar_v1.1_raw.txt", WISDM_WHERE)
    rows, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for record in f.read().replace("\n", ";").split(";"):
            fields = [p.strip() for p in record.split(",")]
            if fields == [""]:
                continue
            if len(fields) != 6 or fields[1] not in WISDM_ACTIVITIES:
                bad += 1
                continue
            try:
                rows.append((int(fields[0]), WISDM_ACTIVITIES.index(fields[1]), float(fields[3]), float(fields[4]), float(fields[5])))
            except ValueError:
                bad += 1
    if not rows:
        raise DataFormatError(f"{path}: no record of the form 'user,activity,timestamp,x,y,z;'. {WISDM_WHERE}")
    data = np.array(rows)
    # a recording = a maximal run of one user doing one activity, in file order
    key = data[:, 0] * 100 + data[:, 1]
    cuts = np.r_[0, np.flatnonzero(np.diff(key) != 0) + 1, len(data)]
    recs = [Recording(data[a:b, 2:5].astype(np.float32), data[a:b, 1].astype(np.int64), int(data[a, 0]))
            for a, b in zip(cuts[:-1], cuts[1:])]
    return recs, {"records": len(rows), "malformed": bad}


# --------------------------------------------------------------------------- PAMAP2
PAMAP2_WHERE = "Download PAMAP2_Dataset.zip from UCI (https://archive.ics.uci.edu/dataset/231); pass its Protocol folder."
PAMAP2_IMU = ["hand", "chest", "ankle"]


def read_pamap2(root: str, max_gap: int = 10):
    """PAMAP2 Protocol/subject1XX.dat: 54 space-separated columns (timestamp, activityID, heart
    rate, then 17 per IMU: temperature, acc +-16g xyz, acc +-6g xyz, gyro xyz, mag xyz, 4 orientation).
    Keeps acc16 + gyro of the 3 IMUs (18 channels, 100 Hz); activity 0 (transient) is dropped later
    by the label map. NaN gaps up to ``max_gap`` samples are interpolated, longer ones dropped.
    Returns (recordings, report)."""
    _require(root, "PAMAP2's Protocol folder", PAMAP2_WHERE, folder=True)
    files = sorted(glob.glob(os.path.join(root, "subject1*.dat")))
    if not files:
        raise DataFormatError(f"{root}: no subject1XX.dat files. {PAMAP2_WHERE}")
    cols = [3 + 17 * i + j for i in range(3) for j in (1, 2, 3, 7, 8, 9)]
    recs, report = [], {"filled": 0, "dropped": 0}
    for path in files:
        data = _table(path, 54)
        signal, invalid, r = fill_gaps(data[:, cols], max_gap)
        report["filled"] += r["filled"]
        report["dropped"] += r["dropped"]
        labels = data[:, 1].astype(np.int64)
        labels[invalid] = -1                           # samples left invalid never enter a window
        signal[invalid] = 0
        subject = int(re.search(r"subject(\d+)\.dat$", path).group(1))
        recs.append(Recording(signal.astype(np.float32), labels, subject))
    return recs, report


# --------------------------------------------------------------------------- RealWorld-HAR
REALWORLD_WHERE = ("Download realworld2016_dataset.zip (Sztyler & Stuckenschmidt, 2016; "
                   "https://sensor.informatik.uni-mannheim.de/#dataset_realworld); pass the folder holding "
                   "proband1 ... proband15.")
REALWORLD_ACTIVITIES = ["climbingdown", "climbingup", "jumping", "lying", "standing", "sitting", "running", "walking"]
REALWORLD_POSITIONS = ["chest", "forearm", "head", "shin", "thigh", "upperarm", "waist"]
REALWORLD_SENSORS = ["acc", "gyr", "mag"]


def _realworld_csv(zip_path: str, sensor: str, activity: str, position: str):
    """(times in ms, (N, 3) values) of one sensor at one position, from '<sensor>_<activity>_csv.zip'."""
    name = f"{sensor}_{activity}_{position}.csv"
    try:
        with zipfile.ZipFile(zip_path) as z:
            if name not in z.namelist():
                raise DataFormatError(f"{zip_path}: no member {name!r}. {REALWORLD_WHERE}")
            reader = csv.reader(io.TextIOWrapper(z.open(name), encoding="utf-8", errors="replace"))
            header = next(reader, [])
            if header[:5] != ["id", "attr_time", "attr_x", "attr_y", "attr_z"]:
                raise DataFormatError(f"{zip_path}/{name}: expected columns id,attr_time,attr_x,attr_y,attr_z, got {header}")
            rows = []
            for lineno, row in enumerate(reader, 2):
                try:
                    if len(row) < 5:
                        raise ValueError(f"{len(row)} fields")
                    rows.append([float(v) for v in row[1:5]])
                except ValueError as err:
                    raise DataFormatError(f"{zip_path}/{name}:{lineno}: expected id,time,x,y,z numbers, got "
                                          f"{','.join(row)[:60]!r} ({err})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataFormatError(f"{zip_path}: not a readable zip file ({err}); download it again. {REALWORLD_WHERE}") from err
    if len(rows) < 2:
        raise DataFormatError(f"{zip_path}/{name}: fewer than two samples")
    data = np.array(rows)
    return data[:, 0], data[:, 1:4]


def read_realworld(root: str, rate_hz: float = 50.0) -> list:
    """RealWorld-HAR: probandN/data/<sensor>_<activity>_csv.zip with one CSV per body position.
    The 7 positions x (acc, gyr, mag) x 3 axes = 63 channels are interpolated onto one common
    ``rate_hz`` time grid over the span all 21 streams cover."""
    _require(root, "the RealWorld-HAR folder", REALWORLD_WHERE, folder=True)
    probands = sorted(glob.glob(os.path.join(root, "proband*")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p))))
    if not probands:
        raise DataFormatError(f"{root}: no proband* folders. {REALWORLD_WHERE}")
    recs = []
    for folder in probands:
        subject = int(re.sub(r"\D", "", os.path.basename(folder)))
        for a, activity in enumerate(REALWORLD_ACTIVITIES):
            streams = []
            for sensor in REALWORLD_SENSORS:
                zip_path = os.path.join(folder, "data", f"{sensor}_{activity}_csv.zip")
                if not os.path.exists(zip_path):
                    break
                streams += [_realworld_csv(zip_path, sensor, activity, pos) for pos in REALWORLD_POSITIONS]
            if len(streams) != len(REALWORLD_SENSORS) * len(REALWORLD_POSITIONS):
                continue                                   # this activity is missing for this proband
            start = max(t[0] for t, _ in streams)
            stop = min(t[-1] for t, _ in streams)
            grid = np.arange(start, stop, 1000.0 / rate_hz)
            if len(grid) < 2:
                continue
            signal = np.stack([np.interp(grid, t, v[:, k]) for t, v in streams for k in range(3)], axis=1)
            recs.append(Recording(signal.astype(np.float32), np.full(len(grid), a, np.int64), subject))
    if not recs:
        raise DataFormatError(f"{root}: no complete recording found. {REALWORLD_WHERE}")
    return recs


def realworld_dataset(root: str, length: int = 225, test_subjects=(14, 15)) -> HARDataset:
    """The released code's protocol: 5 s windows (250 samples at 50 Hz) resampled to ``length``
    steps, 50% overlap, probands 14 and 15 held out."""
    recs = read_realworld(root)
    label_map = {i: i for i in range(len(REALWORLD_ACTIVITIES))}

    def windows(keep):
        ws = windows_from_recordings([r for r in recs if keep(r.subject)], 250, 125, label_map)
        X = resample(ws.X.transpose(2, 0, 1), 250, length).transpose(1, 2, 0) if len(ws) else ws.X[..., :length]
        return WindowSet(X, ws.y, ws.subjects)

    channels = [f"{s}-{p}-{ax}" for s in REALWORLD_SENSORS for p in REALWORLD_POSITIONS for ax in "xyz"]
    return HARDataset("realworld", windows(lambda s: s not in test_subjects), windows(lambda s: s in test_subjects),
                      REALWORLD_ACTIVITIES, channels, 50.0 * length / 250, "RealWorld-HAR, 7 positions x acc/gyr/mag")
