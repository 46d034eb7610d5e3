"""The evidence: SMLDist against the baselines on four real datasets, and a cross-dataset verdict.

    tinysml evidence                      # run (or resume) every grid, then write docs/results.md
    tinysml evidence --report-only        # write docs/results.md from whatever runs have finished

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

Runs resume: rerun the command after a kill or in another sitting; a table whose runs are not all
finished says so in its heading. Nothing here selects on test data.

This module is the plan and the running; the document written from the finished runs is
``tinysml/evidence_report.py``.
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from . import io, powered
from .arguments import COUNT
from .compare import collect, run_all

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


# --------------------------------------------------------------------------- the plan
def grid_args(dataset: str, seeds, variants, out: str, workers=None, threads: int = 1,
              device: str = "cpu", records: str | None = None) -> argparse.Namespace:
    """The ``tinysml compare`` arguments of one dataset's grid."""
    return argparse.Namespace(dataset=dataset, seeds=list(seeds), variants=list(variants), out=out,
                              min_steps_per_epoch=min_steps(_split_sizes(dataset)["train"]), workers=workers,
                              threads=threads, device=device, records=records,
                              verbose=False, **BASE)


def min_steps(n_train: int) -> int:
    """MIN_STEPS where a pass over ``n_train`` training windows makes fewer batches; else 0 (one
    pass per epoch, so the large datasets' runs are plain epochs)."""
    return MIN_STEPS if math.ceil(n_train / BASE["batch_size"]) < MIN_STEPS else 0


def _split_sizes(dataset: str, seed: int = 0) -> dict:
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


def _records(records: str | None, dataset: str) -> str | None:
    return os.path.join(records, dataset) if records else None


# --------------------------------------------------------------------------- running
def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="tinysml evidence", description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=None, choices=list(PLAN),
                   help=f"the grids to run (default: all four, or the study's two with --powered; the doc always "
                        f"covers all; {SELECTION} first: it chooses ours)")
    study = p.add_mutually_exclusive_group()
    study.add_argument("--powered", action="store_true",
                       help="run the pre-registered study (docs/preregistration.md): uci-har and hapt, seeds 0-29, "
                            "student alone, KD, FitNets, SMLDist, ours; records under evidence/powered/")
    study.add_argument("--released", action="store_true",
                       help="run uci-har at the authors' released budget, seeds 0-4 (student alone, KD, SMLDist, "
                            "ours); records under evidence/released/")
    p.add_argument("--out", default=None, help="grids go to OUT/<dataset> (resumed; default runs/evidence, "
                                               "runs/powered with --powered, runs/released with --released)")
    p.add_argument("--doc", default="docs/results.md", help="the document to write")
    p.add_argument("--report-only", action="store_true", help="run nothing; write the doc from the finished runs")
    p.add_argument("--workers", type=COUNT, default=None, help="local processes (default: one per core)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: every run on the GPU")
    p.add_argument("--archive", default=None, help="afterwards (also after a failure) pack OUT's runs into this .tar.gz")
    p.add_argument("--resume-from", default=None, help="first unpack a grid archive into OUT (local files win)")
    p.add_argument("--records", default=None, help="run records committed to the repository (RECORDS/<dataset>): "
                                                   "written as runs finish, read for the report, never run again "
                                                   "(default: none; evidence/powered with --powered, "
                                                   "evidence/released with --released)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv) if not isinstance(argv, argparse.Namespace) else argv
    from .compare import carried
    study = "powered" if args.powered else "released" if args.released else None
    out = args.out or os.path.join("runs", study or "evidence")
    with carried(out, args.resume_from, args.archive):
        if not args.report_only:
            if study:
                _run_study(args, study, out)
            else:
                _run_grids(args, out)
    from .evidence_report import report
    if study:       # the earlier evidence is rewritten from its own runs; --records is the study's folder
        report(os.path.join("runs", "evidence"), args.doc, **{f"{study}_records": args.records})
    else:
        report(out, args.doc, args.records)
    print(f"wrote {args.doc}")


def study_args(study: str, dataset: str, out: str, workers=None, device: str = "cpu",
               records: str | None = None) -> argparse.Namespace:
    """The ``tinysml compare`` arguments of one grid of the powered study (the project's budget,
    as the evidence runs it) or of the released-budget grid (the authors' recipe, nothing overridden)."""
    if study == "powered":
        return grid_args(dataset, powered.SEEDS, powered.METHODS[1:], os.path.join(out, dataset), workers,
                         device=device, records=os.path.join(records or powered.RECORDS, dataset))
    plan = powered.RELEASED
    return argparse.Namespace(dataset=dataset, seeds=list(plan["seeds"]), variants=list(plan["methods"][1:]),
                              out=os.path.join(out, dataset), recipe="released", workers=workers, threads=1,
                              device=device, records=os.path.join(records or powered.RELEASED_RECORDS, dataset),
                              verbose=False)


def _run_study(args, study: str, out: str) -> None:
    datasets = powered.DATASETS if study == "powered" else [powered.RELEASED["dataset"]]
    chosen = args.datasets or datasets
    if set(chosen) - set(datasets):
        raise SystemExit(f"tinysml evidence --{study}: the study's datasets are {', '.join(datasets)}; "
                         f"not {', '.join(sorted(set(chosen) - set(datasets)))}")
    for d in [d for d in datasets if d in chosen]:
        run_all(study_args(study, d, out, args.workers, args.device, args.records))


def _run_grids(args, out: str) -> None:
    for d in [d for d in PLAN if d in (args.datasets or list(PLAN))]:
        plan = PLAN[d]
        if d == SELECTION:
            variants = CORE + plan["extra"]
        else:
            ours, _, _ = fixed_ours(out, collect(os.path.join(out, SELECTION), PLAN[SELECTION]["seeds"],
                                                 ABLATIONS, _records(args.records, SELECTION)),
                                    record=True, records=args.records)
            if ours is None:
                raise SystemExit(f"tinysml evidence: {d} needs the variant of ours, chosen on {SELECTION}'s "
                                 f"validation split: run --datasets {SELECTION} first")
            variants = CORE + [ours]
        run_all(grid_args(d, plan["seeds"], variants, os.path.join(out, d), args.workers, device=args.device,
                          records=_records(args.records, d)))


if __name__ == "__main__":
    main()
