"""Per-channel scaling, fitted on training windows only and stored with the model.

Robust IQR scaling (docs/algorithm.md, section 1, the authors' choice): with the channel's quartiles Q25, Q75
and IQR = Q75 - Q25, clip to [Q25 - 1.5 IQR, Q75 + 1.5 IQR] and map that range linearly to [0, 1].
Z-score: (x - mean) / std.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Scaler:
    """x -> clip((x - shift) / scale, low, high) per channel; ``kind`` records how it was fitted."""
    kind: str
    shift: np.ndarray        # (C,)
    scale: np.ndarray        # (C,)
    low: float = -np.inf
    high: float = np.inf

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 3 or X.shape[1] != self.shift.shape[0]:
            raise ValueError(f"scaler fitted on {self.shift.shape[0]} channels got windows of shape {X.shape}")
        Y = (X - self.shift[None, :, None]) / self.scale[None, :, None]
        if np.isfinite(self.low) or np.isfinite(self.high):
            np.clip(Y, self.low, self.high, out=Y)
        return Y.astype(np.float32, copy=False)

    def to_tree(self) -> dict:
        return {"kind": self.kind, "shift": self.shift, "scale": self.scale,
                "low": float(self.low) if np.isfinite(self.low) else None,
                "high": float(self.high) if np.isfinite(self.high) else None}

    @classmethod
    def from_tree(cls, t: dict) -> "Scaler":
        return cls(t["kind"], np.asarray(t["shift"], np.float32), np.asarray(t["scale"], np.float32),
                   -np.inf if t["low"] is None else t["low"], np.inf if t["high"] is None else t["high"])


def _per_channel(X):
    return X.transpose(1, 0, 2).reshape(X.shape[1], -1)        # (C, n * L)


def fit_scaler(X_train: np.ndarray, kind: str = "robust") -> Scaler:
    """Fit on training windows (n, C, L). ``kind``: "robust" (IQR, clipped to [0, 1]), "zscore", "none"."""
    C = X_train.shape[1]
    if kind == "none":
        return Scaler("none", np.zeros(C, np.float32), np.ones(C, np.float32))
    values = _per_channel(X_train.astype(np.float64))
    if kind == "robust":
        q25, q75 = np.percentile(values, [25, 75], axis=1)
        iqr = q75 - q25
        lo, hi = q25 - 1.5 * iqr, q75 + 1.5 * iqr
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        return Scaler("robust", lo.astype(np.float32), span.astype(np.float32), 0.0, 1.0)
    if kind == "zscore":
        std = values.std(axis=1)
        return Scaler("zscore", values.mean(axis=1).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32))
    raise ValueError(f"unknown scaling {kind!r}; expected robust, zscore or none")
