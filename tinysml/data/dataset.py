"""The in-memory form of every HAR dataset: windows, labels, subjects and their metadata."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WindowSet:
    """Windows X (n, C, L) float32 with labels y (n,) int64 and subject ids (n,) int64 (-1 = unknown)."""
    X: np.ndarray
    y: np.ndarray
    subjects: np.ndarray

    def __post_init__(self):
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.subjects = np.asarray(self.subjects, dtype=np.int64)
        if self.X.ndim != 3:
            raise ValueError(f"windows must have shape (n, channels, length), got {self.X.shape}")
        if not len(self.X) == len(self.y) == len(self.subjects):
            raise ValueError(f"{len(self.X)} windows, {len(self.y)} labels and {len(self.subjects)} subject ids")

    def __len__(self):
        return len(self.y)

    def take(self, index) -> "WindowSet":
        return WindowSet(self.X[index], self.y[index], self.subjects[index])

    @property
    def shape(self):
        """(channels, length) of one window."""
        return self.X.shape[1:]

    @property
    def subject_wise(self) -> bool:
        """Every window's subject is known: splits carved from this set keep subjects whole."""
        return bool((self.subjects >= 0).all())


@dataclass
class HARDataset:
    """A dataset with its fixed train/test partition (by protocol) and what a reader needs to know."""
    name: str
    train: WindowSet
    test: WindowSet
    class_names: list
    channel_names: list
    rate_hz: float
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Whatever reader produced it, a dataset that cannot be trained on honestly is refused here:
        no windows, windows of two shapes, labels outside the class list, NaN or infinite values."""
        if not self.class_names or not all(isinstance(n, str) for n in self.class_names):
            raise ValueError(f"{self.name}: class_names must be a non-empty list of strings, got {self.class_names!r}")
        if len(self.train) == 0 or len(self.test) == 0:
            raise ValueError(f"{self.name}: the {'train' if len(self.train) == 0 else 'test'} split has no windows "
                             f"(are the recordings shorter than one window of {self.train.X.shape[-1]} samples?)")
        if self.train.shape != self.test.shape:
            raise ValueError(f"{self.name}: train windows are {self.train.shape}, test windows {self.test.shape}")
        for split, ws in (("train", self.train), ("test", self.test)):
            bad = (ws.y < 0) | (ws.y >= self.num_classes)
            if bad.any():
                raise ValueError(f"{self.name}: {int(bad.sum())} {split} window(s) have labels outside 0..{self.num_classes - 1} "
                                 f"(e.g. {int(ws.y[bad][0])} at window {int(np.flatnonzero(bad)[0])}); the class list "
                                 f"has {self.num_classes} entries")
            finite = np.isfinite(ws.X).all(axis=(1, 2))
            if not finite.all():
                raise ValueError(f"{self.name}: {int((~finite).sum())} {split} window(s) hold NaN or infinite values "
                                 f"(first: window {int(np.flatnonzero(~finite)[0])})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def window_shape(self):
        return self.train.shape

    def info(self) -> str:
        C, L = self.window_shape
        counts = np.bincount(self.train.y, minlength=self.num_classes)
        lines = [f"{self.name}: {len(self.train)} train / {len(self.test)} test windows of {C} x {L} "
                 + (f"at {self.rate_hz:g} Hz, " if self.rate_hz == self.rate_hz else "") + f"{self.num_classes} classes",
                 f"  channels: {', '.join(self.channel_names)}",
                 "  classes (train count): " + ", ".join(f"{n} ({c})" for n, c in zip(self.class_names, counts))]
        if self.description:
            lines.append("  " + self.description)
        for key in ("source", "licence", "test_subjects"):
            if self.extra.get(key):
                lines.append(f"  {key.replace('_', ' ')}: {self.extra[key]}")
        return "\n".join(lines)
