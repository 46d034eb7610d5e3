"""BasicMotions, shipped inside the package (see builtin/README.md for its origin and licence)."""
from __future__ import annotations

import os

import numpy as np

from .dataset import HARDataset, WindowSet
from .formats import read_ts

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "builtin")


def load_basicmotions() -> HARDataset:
    """40 train / 40 test windows of 6 x 100 (watch accelerometer + gyroscope, 10 Hz), 4 classes."""
    X_train, labels_train, header = read_ts(os.path.join(BUILTIN_DIR, "BasicMotions_TRAIN.ts.gz"))
    X_test, labels_test, _ = read_ts(os.path.join(BUILTIN_DIR, "BasicMotions_TEST.ts.gz"))
    class_names = header["classlabel"].split()[1:]      # "true Standing Running Walking Badminton"
    index = {name: i for i, name in enumerate(class_names)}
    to_int = lambda labels: np.array([index[s] for s in labels])  # noqa: E731
    unknown = lambda n: np.full(n, -1)  # noqa: E731
    return HARDataset(
        name="basicmotions",
        train=WindowSet(X_train, to_int(labels_train), unknown(len(X_train))),
        test=WindowSet(X_test, to_int(labels_test), unknown(len(X_test))),
        class_names=class_names,
        channel_names=["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"],
        rate_hz=10.0,
        description="UEA BasicMotions (smart watch); subjects are not recorded in the archive, so the "
                    "validation split is stratified by class",
        extra={"source": "built in (tinysml/data/builtin/, from sktime 1.2.0's copy of the UEA archive)",
               "licence": "BSD-3 (sktime); see tinysml/data/builtin/"},
    )
