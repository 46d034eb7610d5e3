"""The one place where a dataset becomes model inputs: carve validation from the training
subjects, fit the scaling on what remains for training (never on validation or test windows),
and apply it to all three parts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import HARDataset
from .scaling import Scaler, fit_scaler
from .splits import validation_split


@dataclass
class Prepared:
    dataset: HARDataset
    scaler: Scaler
    train: tuple          # (X (n, C, L) float32 scaled, y (n,))
    val: tuple
    test: tuple
    train_subjects: np.ndarray
    val_subjects: np.ndarray


def prepare(dataset: HARDataset, val_fraction: float = 0.2, seed: int = 0, scaling: str = "robust") -> Prepared:
    train, val = validation_split(dataset.train, val_fraction, seed)
    scaler = fit_scaler(train.X, scaling)                     # training part only
    scale = scaler.transform
    return Prepared(dataset, scaler, (scale(train.X), train.y), (scale(val.X), val.y),
                    (scale(dataset.test.X), dataset.test.y), np.unique(train.subjects), np.unique(val.subjects))
