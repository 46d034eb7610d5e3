"""Mini-batches over a WindowSet: a shuffled index per epoch, windows gathered batch by batch
(the dataset itself is never copied as a whole)."""
from __future__ import annotations

import numpy as np


def iterate_batches(X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
                    drop_last: bool = False, with_index: bool = False):
    """Yield (X_batch, y_batch), or (X_batch, y_batch, indices) ``with_index``; shuffled when ``rng``
    is given. A final batch of one window is dropped in training (batch norm needs two), as is any
    short batch with ``drop_last``."""
    n = len(y)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if (drop_last and len(idx) < batch_size) or (rng is not None and len(idx) < 2):
            break
        if rng is not None:
            idx = np.sort(idx)   # gather in memory order; the batch's content is what is random
        yield (X[idx], y[idx], idx) if with_index else (X[idx], y[idx])


def count_batches(n: int, batch_size: int, shuffled: bool = True, drop_last: bool = False) -> int:
    """How many batches ``iterate_batches`` yields for n windows (what a progress bar counts)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and not drop_last and (rest >= 2 or not shuffled) else 0)


def augment(X: np.ndarray, rng: np.random.Generator, jitter: float = 0.0, scale: float = 0.0,
            max_shift: int = 0) -> np.ndarray:
    """Random training-time augmentation of a batch (B, C, L), returned as a new array:
    additive Gaussian jitter (std ``jitter``), per-window-and-channel scaling by N(1, ``scale``),
    and a circular time shift of up to ``max_shift`` steps. All off by default."""
    out = X.copy()
    if jitter:
        out += rng.normal(0, jitter, out.shape).astype(out.dtype)
    if scale:
        out *= rng.normal(1, scale, out.shape[:2] + (1,)).astype(out.dtype)
    if max_shift:
        shifts = rng.integers(-max_shift, max_shift + 1, len(out))
        for i, s in enumerate(shifts):
            out[i] = np.roll(out[i], s, axis=-1)
    return out
