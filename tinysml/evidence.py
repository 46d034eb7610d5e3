"""The evidence: SMLDist against the baselines on four real datasets, and a cross-dataset verdict.

    tinysml evidence                      # run (or resume) every grid, then write docs/results.md
    tinysml evidence --report-only        # write docs/results.md from whatever runs have finished

What runs is the plan (``tinysml/evidence_plan.py``: datasets, seeds, variants, budgets, the
variant of ours); this module runs it, grid by grid, and ``tinysml/evidence_report.py`` writes the
document from the finished runs.

Runs resume: rerun the command after a kill or in another sitting; a table whose runs are not all
finished says so in its heading. Nothing here selects on test data.
"""
from __future__ import annotations

import argparse
import os

from . import evidence_plan, evidence_report, powered
from .arguments import COUNT
from .compare import collect, run_all


def grid_args(dataset: str, seeds, variants, out: str, workers=None, threads: int = 1,
              device: str = "cpu", records: str | None = None) -> argparse.Namespace:
    """The ``tinysml compare`` arguments of one dataset's grid."""
    n_train = evidence_plan.split_sizes(dataset)["train"]
    return argparse.Namespace(dataset=dataset, seeds=list(seeds), variants=list(variants), out=out,
                              min_steps_per_epoch=evidence_plan.min_steps(n_train), workers=workers,
                              threads=threads, device=device, records=records,
                              verbose=False, **evidence_plan.BASE)


# --------------------------------------------------------------------------- running
def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="tinysml evidence", description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=None, choices=list(evidence_plan.PLAN),
                   help=f"the grids to run (default: all four, or the study's two with --powered; the doc always "
                        f"covers all; {evidence_plan.SELECTION} first: it chooses ours)")
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
    if study:       # the earlier evidence is rewritten from its own runs; --records is the study's folder
        evidence_report.report(os.path.join("runs", "evidence"), args.doc, **{f"{study}_records": args.records})
    else:
        evidence_report.report(out, args.doc, args.records)
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
    for d in [d for d in evidence_plan.PLAN if d in (args.datasets or list(evidence_plan.PLAN))]:
        plan = evidence_plan.PLAN[d]
        if d == evidence_plan.SELECTION:
            variants = evidence_plan.CORE + plan["extra"]
        else:
            selection = evidence_plan.SELECTION
            found = collect(os.path.join(out, selection), evidence_plan.PLAN[selection]["seeds"], evidence_plan.ABLATIONS,
                            evidence_plan.records_of(args.records, selection))
            ours, _, _ = evidence_plan.fixed_ours(out, found, record=True, records=args.records)
            if ours is None:
                raise SystemExit(f"tinysml evidence: {d} needs the variant of ours, chosen on {selection}'s "
                                 f"validation split: run --datasets {selection} first")
            variants = evidence_plan.CORE + [ours]
        run_all(grid_args(d, plan["seeds"], variants, os.path.join(out, d), args.workers, device=args.device,
                          records=evidence_plan.records_of(args.records, d)))


if __name__ == "__main__":
    main()
