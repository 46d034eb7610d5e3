"""One seeded random generator for everything stochastic at training time (dropout, shuffling,
augmentation). The training loop re-seeds it per epoch from (seed, epoch), so a run resumed after
a kill draws exactly the numbers an uninterrupted run would have drawn."""
from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(*seed: int) -> np.random.Generator:
    """Reset the global generator from one or more integers (e.g. ``manual_seed(seed, epoch)``)."""
    global _rng
    _rng = np.random.default_rng(list(seed) if len(seed) > 1 else seed[0])
    return _rng


def get_rng() -> np.random.Generator:
    return _rng
