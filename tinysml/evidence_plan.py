"""The evidence's plan: which grids run, with what budget, and how the variant of ours is chosen
(``tinysml/evidence.py`` runs it, ``tinysml/evidence_report.py`` writes its document).

Each dataset is one ``tinysml compare`` grid (teacher, student alone, KD, FitNets, AT, SMLDist and
one SMLDist variant of ours) under ``OUT/<dataset>``; uci-har also runs every ablation and the head
search, with 5 seeds (the others 3). The variant of ours is chosen on uci-har's *validation* split
(the best mean validation macro-F1 among its SMLDist variants other than the released one and the
head search) and then applied unchanged to the other three datasets.

Budgets: 50 teacher epochs, 15 student epochs (plus 2 stage epochs per anchor), batch 64, and on a
dataset whose training windows make fewer than ``MIN_STEPS`` batches, every epoch passes over them
again until it has run ``MIN_STEPS`` steps, so a small dataset gets as many optimisation steps as a
large one. Every run's validation curve is checked: a row is marked where a run's best validation
score came in the last fifth of its epochs and beat everything before by more than half a point
(still improving when its budget ended).
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import io

MIN_STEPS = 64
CORE = ["KD (Hinton)", "FitNets", "AT", "SMLDist"]
ABLATIONS = ["SMLDist, direct logits loss [ours]", "SMLDist, no frequency term", "SMLDist, no memory loss",
             "SMLDist, no stage phase"]
SELECTION = "uci-har"
PLAN = {                                   # dataset -> seeds, variants beyond CORE (ours is added to the others)
    "uci-har": {"seeds": [0, 1, 2, 3, 4], "extra": ABLATIONS + ["SMLDist + head search"]},
    "hapt": {"seeds": [0, 1, 2], "extra": []},
    "watch": {"seeds": [0, 1, 2], "extra": []},
    "gesturepebble-z1": {"seeds": [0, 1, 2], "extra": []},
}
BASE = {"teacher_epochs": 50, "student_epochs": 15, "stage_epochs": 2, "batch_size": 64,
        "teacher_label_smoothing": 0.1, "teacher_jitter": 0.05, "teacher_scale": 0.1}


# --------------------------------------------------------------------------- statistics
def still_improving(history, metric: str = "macro_f1", tail: float = 0.2, margin: float = 0.005) -> bool:
    """Whether a run was still improving when its budget ended: its best validation score came in
    the last ``tail`` of the epochs and beat every earlier epoch by more than ``margin``."""
    scores = [h[metric] for h in history]
    if len(scores) < 3:
        return False
    k = max(2, math.ceil(tail * len(scores)))
    return max(scores[-k:]) > max(scores[:-k]) + margin


# --------------------------------------------------------------------------- choices
def min_steps(n_train: int) -> int:
    """MIN_STEPS where a pass over ``n_train`` training windows makes fewer batches; else 0 (one
    pass per epoch, so the large datasets' runs are plain epochs)."""
    return MIN_STEPS if math.ceil(n_train / BASE["batch_size"]) < MIN_STEPS else 0


def split_sizes(dataset: str, seed: int = 0) -> dict:
    """Seed 0's split of ``dataset`` as the runs make it: window counts, subject-wise or not, classes."""
    from .data import load
    from .data.prepare import prepare
    from .distill.pipeline import SMLDistConfig
    cfg = SMLDistConfig()                       # the runs' validation fraction and scaling
    data = prepare(load(dataset), cfg.val_fraction, seed, cfg.scaling)
    return {"train": len(data.train[0]), "val": len(data.val[0]), "test": len(data.test[0]),
            "subjects": data.dataset.train.subject_wise, "classes": data.dataset.num_classes}


def choose_ours(found: dict) -> tuple[str | None, dict]:
    """The SMLDist variant of ours: the best mean validation macro-F1 on the selection dataset among
    the SMLDist variants other than the released one and the head search, over the seeds where every
    candidate has finished. Returns (name or None, {candidate: mean val F1})."""
    candidates = [v for v in ABLATIONS if v in found]
    seeds = sorted(set.intersection(*(set(found[v]) for v in candidates))) if candidates else []
    if not seeds:
        return None, {}
    means = {v: float(np.mean([found[v][s]["student"]["val"]["macro_f1"] for s in seeds])) for v in candidates}
    return max(means, key=means.get), means


def fixed_ours(out: str, found: dict, record: bool, records: str | None = None) -> tuple[str | None, dict, bool]:
    """Our variant as recorded in ``OUT/ours.json`` (or ``RECORDS/ours.json``) once the first other
    dataset's grid started (so it is applied unchanged, whatever finishes on uci-har later); else
    chosen now from the finished runs (and recorded when ``record``). Returns (name, mean
    validation F1s, fixed?)."""
    import json
    places = [os.path.join(out, "ours.json")] + ([os.path.join(records, "ours.json")] if records else [])
    for path in places:
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            return saved["variant"], saved["val_macro_f1"], True
    ours, means = choose_ours(found)
    if record and ours is not None:
        for path in places:
            io.write_json(path, {"variant": ours, "val_macro_f1": means, "selection": SELECTION})
    return ours, means, record and ours is not None


def records_of(records: str | None, dataset: str) -> str | None:
    """The folder of ``dataset``'s committed run records under ``records`` (None: none)."""
    return os.path.join(records, dataset) if records else None
