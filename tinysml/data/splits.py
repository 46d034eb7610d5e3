"""Train/validation splits carved from the training data (never from the test subjects)."""
from __future__ import annotations

import numpy as np

from .dataset import WindowSet


def validation_split(train: WindowSet, fraction: float = 0.2, seed: int = 0):
    """Split training windows into (train, val).

    With subject ids, whole subjects go to validation (about ``fraction`` of them, at least one), so
    no subject is on both sides. Without (ids of -1), a split stratified by class.
    """
    rng = np.random.default_rng(seed)
    if train.subject_wise:
        subjects = np.unique(train.subjects)
        if len(subjects) < 2:
            raise ValueError("a subject-wise validation split needs at least two training subjects")
        n_val = max(1, int(round(fraction * len(subjects))))
        val_subjects = rng.choice(subjects, size=n_val, replace=False)
        is_val = np.isin(train.subjects, val_subjects)
    else:
        is_val = np.zeros(len(train), dtype=bool)
        for c in np.unique(train.y):
            members = np.flatnonzero(train.y == c)
            n_val = max(1, int(round(fraction * len(members)))) if len(members) > 1 else 0
            is_val[rng.choice(members, size=n_val, replace=False)] = True
    return train.take(~is_val), train.take(is_val)


def leave_one_subject_out(windows: WindowSet):
    """Yield (subject, train, test) for each subject: that subject's windows are the test fold."""
    if not windows.subject_wise:
        raise ValueError("leave-one-subject-out needs subject ids; this data set has none")
    for s in np.unique(windows.subjects):
        held = windows.subjects == s
        yield int(s), windows.take(~held), windows.take(held)
