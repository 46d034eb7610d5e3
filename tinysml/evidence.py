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
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from . import io, powered
from .arguments import COUNT
from .compare import collect, run_all
from .power import mean_spread, paired_ci

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


# --------------------------------------------------------------------------- the document
def _fmt(mean, ci):
    if ci is None:
        return f"{100 * mean:+.1f} (1 seed)"
    return f"{100 * mean:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _preamble(sizes: dict) -> list:
    """A dataset section's protocol, split sizes and budget, in words."""
    if sizes["subjects"]:
        protocol = ("subject-wise: the test subjects are never trained on; the validation split is carved "
                    "from the training subjects")
    else:
        protocol = "the dataset's own train/test split; validation carved from the training windows"
    steps, epochs, ms = math.ceil(sizes["train"] / BASE["batch_size"]), BASE["student_epochs"], min_steps(sizes["train"])
    budget = (f"every epoch runs at least {ms} steps ({math.ceil(ms / steps)} passes), so the students' {epochs} "
              f"epochs are {epochs * max(steps, ms)} steps." if ms else
              f"the students' {epochs} epochs are {epochs * steps} steps.")
    return [f"Protocol: {protocol}. {sizes['classes']} classes; {sizes['train']} training, {sizes['val']} validation "
            f"and {sizes['test']} test windows (seed 0's split): every model selection here was made on "
            f"{sizes['val']} validation windows.",
            f"Budget: a pass over the training windows is {steps} steps of {BASE['batch_size']}; {budget}"]


def _against_smldist(found: dict, variants) -> list:
    """The SMLDist variants (ablations, ours, the head search) paired against SMLDist itself, seed by
    seed: what each part of the method is worth. Empty where no variant ran."""
    released = found.get("SMLDist", {})
    rows = []
    for name in [v for v in variants if v.startswith("SMLDist") and v != "SMLDist" and found.get(v)]:
        common = sorted(set(found[name]) & set(released))
        if not common:
            continue
        a = [found[name][s]["student"]["test"]["accuracy"] for s in common]
        b = [released[s]["student"]["test"]["accuracy"] for s in common]
        mean, ci = paired_ci(a, b)
        per_seed = ", ".join(f"{100 * (x - y):+.1f}" for x, y in zip(a, b))
        rows.append(f"| {name} | {_fmt(mean, ci)} | {per_seed} |")
    if not rows:
        return []
    return ["", "Against SMLDist itself (test accuracy points, paired by seed; 95% CI, then seed by seed):", "",
            "| variant | vs SMLDist (95% CI) | per seed |", "|---|---|---|", *rows]


def dataset_section(dataset: str, found: dict, seeds, variants, sizes: dict, command: str) -> tuple[str, dict]:
    """The markdown section of one dataset, and its paired statistics for the summary:
    {name: {"accuracy": mean, "alone": (mean diff, CI, pairs), "kd": (...)}}."""
    expected = (1 + len(variants)) * len(seeds)
    done = sum(len(found.get(n, {})) for n in ["teacher", *variants])
    status = "complete" if done == expected else f"INCOMPLETE: {done} of {expected} runs finished"
    lines = [f"## {dataset} ({status})", "", *_preamble(sizes), "", "Produced by", "", f"    {command}", "",
             "| model | seeds | test accuracy | test macro-F1 | vs student alone, points (95% CI) | "
             "vs KD, points (95% CI) | still improving |", "|---|---|---|---|---|---|---|"]
    references = {"alone": ("student alone", found.get("student alone", {})), "kd": ("KD (Hinton)", found.get("KD (Hinton)", {}))}
    stats = {}
    for name in ["teacher", *variants]:
        runs = found.get(name)
        if not runs:
            lines.append(f"| {name} | 0 | — | — | — | — | — |")
            continue
        part = "teacher" if name == "teacher" else "student"
        acc = {s: r[part]["test"]["accuracy"] for s, r in runs.items()}
        stats[name] = {"accuracy": float(np.mean(list(acc.values())))}
        cells = []
        for key, (ref_name, ref) in references.items():
            common = sorted(set(acc) & set(ref))
            if name == ref_name or not common:
                cells.append("—")
                continue
            mean, ci = paired_ci([acc[s] for s in common], [ref[s]["student"]["test"]["accuracy"] for s in common])
            cells.append(_fmt(mean, ci))
            stats[name][key] = (mean, ci, len(common))
        flagged = [f"seed {s}" for s, r in runs.items() if still_improving(_history(r, name))]
        lines.append(f"| {name} | {len(runs)} | {mean_spread(list(acc.values()))} | "
                     f"{mean_spread([r[part]['test']['macro_f1'] for r in runs.values()])} | {cells[0]} | {cells[1]} | "
                     f"{', '.join(flagged) or 'no'} |")
    lines += _against_smldist(found, variants)
    lines += ["", "Test accuracy and macro-F1: mean ± sample std (n - 1) over the finished seeds. Differences: "
              "paired by seed, in accuracy points, with a 95% confidence interval from Student's t over the "
              "seeds both rows have finished. \"Still improving\": the seeds whose best validation macro-F1 came "
              "in the last fifth of the final phase and beat all earlier epochs by more than 0.5 points.", ""]
    return "\n".join(lines), stats


def _history(results: dict, name: str) -> list:
    """The final phase's validation history of a run (the teacher's own training for the teacher)."""
    if name != "teacher":
        return results["history"]
    path = os.path.join(results["run_dir"], "teacher.train.npz")
    return list(io.load(path)["history"]) if os.path.exists(path) else []


def summary_section(all_stats: dict, ours: str | None, means: dict, fixed: bool = True) -> str:
    """The cross-dataset summary and a verdict generated from the numbers, not written by hand."""
    methods = [m for m in [*CORE, ours] if m]
    datasets = list(all_stats)
    lines = ["## Summary across datasets", "",
             "Paired difference in test accuracy (points; 95% CI over seeds) against the student alone, and "
             "in brackets against KD. A dataset counts as a win when the interval against the student alone "
             "lies above zero; \"of N\" counts the datasets where the method has finished runs.", "",
             "| method | " + " | ".join(datasets) + " | wins vs student alone | best student mean |",
             "|---|" + "---|" * (len(datasets) + 2)]
    verdict = []
    for m in methods:
        cells, wins, best, ran = [], 0, 0, 0
        for d in datasets:
            st = all_stats[d].get(m, {})
            if "alone" not in st:
                cells.append("—")
                continue
            ran += 1
            mean, ci, n = st["alone"]
            kd = st.get("kd")
            cells.append(_fmt(mean, ci) + (f" ({_fmt(kd[0], kd[1])} vs KD)" if kd else ""))
            wins += ci is not None and ci[0] > 0
            students = {k: v["accuracy"] for k, v in all_stats[d].items() if k != "teacher" and "accuracy" in v}
            best += bool(students) and max(students, key=students.get) == m
        label = f" ({'' if '[ours]' in m else 'ours, '}chosen on {SELECTION} validation)" if m == ours else ""
        lines.append(f"| {m}{label} | " + " | ".join(cells)
                     + f" | {wins} of {ran} | {best} |")
        verdict.append((m, wins))
    chosen = ("The variant of ours is **" + ours + f"**, chosen on {SELECTION}'s validation split (mean validation "
              "macro-F1 over the seeds every candidate had finished when the choice was made: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]))
              + ")" + ("." if fixed else f", provisionally: it is fixed (OUT/ours.json) when the first other "
                       f"dataset's grid starts, from the {SELECTION} runs finished by then.")
              if ours else f"The variant of ours is not chosen yet ({SELECTION}'s variant runs are not finished).")
    sml = dict(verdict)["SMLDist"]                  # CORE holds SMLDist: always a row
    sml_ran = sum("alone" in all_stats[d].get("SMLDist", {}) for d in datasets)
    kd_sml = [all_stats[d]["SMLDist"]["kd"] for d in datasets if "kd" in all_stats[d].get("SMLDist", {})]
    above_kd = sum(ci is not None and ci[0] > 0 for _, ci, _ in kd_sml)
    below_kd = sum(ci is not None and ci[1] < 0 for _, ci, _ in kd_sml)
    lines += ["", chosen, "", "**Verdict** (generated from the table above): "
              f"SMLDist's interval against the student alone lies above zero on {sml} of the {sml_ran} datasets "
              f"where it has finished runs (of {len(datasets)} planned); "
              f"against KD it lies above zero on {above_kd}, below zero on {below_kd}, and includes zero on "
              f"{len(kd_sml) - above_kd - below_kd} of the {len(kd_sml)} datasets where both ran. "
              + ("With 3-5 seeds an interval excludes zero only for effects of a point or more: where it includes zero, "
                 "the evidence neither supports nor rules out a difference." if datasets else ""), ""]
    return "\n".join(lines)


def report(out: str, doc: str, records: str | None = None, powered_records: str | None = None,
           released_records: str | None = None) -> str:
    """Write ``doc``: first the powered study's section (``tinysml/powered.py``, from the records
    under ``powered_records`` and ``released_records``), then the earlier 3-5-seed evidence from
    every run finished under ``out`` (and, with ``records``, every run recorded there:
    ``tinysml/records.py``), then the doc's hand-written notes; returns the text. Where none of the
    earlier runs is on this machine or recorded, the earlier sections are kept as the doc has them."""
    found_all, all_stats, sections = {}, {}, []
    for d, plan in PLAN.items():
        found_all[d] = collect(os.path.join(out, d), plan["seeds"], ["student alone", *CORE, *plan["extra"],
                                                                     *ABLATIONS], _records(records, d))
    earlier = kept_earlier(doc) if not any(found_all.values()) else None
    if earlier is None:
        ours, means, fixed = fixed_ours(out, found_all[SELECTION], record=False, records=records)
        for d, plan in PLAN.items():
            variants = ["student alone", *CORE] + (plan["extra"] if d == SELECTION else [ours] if ours else [])
            text, stats = dataset_section(d, found_all[d], plan["seeds"], variants, _split_sizes(d),
                                          _command(d, out, doc))
            sections.append(text)
            all_stats[d] = stats
        earlier = summary_section(all_stats, ours, means, fixed) + "\n" + "\n\n".join(sections)
    head = ["# Results: SMLDist against the baselines", "",
            "`tinysml evidence --report-only` rewrites this file from the runs finished so far and the run records "
            "committed under `evidence/`. Its first section is the pre-registered powered study "
            "(`docs/preregistration.md`). The sections after it are the earlier evidence at 3-5 seeds, produced by `"
            + _command(None, out, doc) + "`. " + __doc__.split("\n\n")[2].replace("\n", " "), ""]
    study = powered.section(powered_records or powered.RECORDS, released_records or powered.RELEASED_RECORDS,
                            os.path.dirname(doc) or ".")
    text = ("\n".join(head) + "\n" + study
            + "\n" + earlier.rstrip("\n") + "\n")
    text += kept_notes(doc)
    io.write_atomic(doc, lambda f: f.write(text.encode()))
    return text


EARLIER = "## Summary across datasets"    # the earlier evidence starts here


def kept_earlier(doc: str) -> str | None:
    """The earlier sections of an existing doc (from EARLIER up to the notes), or None."""
    if not os.path.exists(doc):
        return None
    text = open(doc, encoding="utf-8").read()
    if EARLIER not in text:
        return None
    start = text.index(EARLIER)
    end = text.index(NOTES, start) if NOTES in text[start:] else len(text)
    return text[start:end]


NOTES = "\n## Notes"      # the hand-written part of the doc starts here; kept when the tables are rewritten


def kept_notes(doc: str) -> str:
    """The hand-written notes of an existing doc (re-read them against new numbers: the script does
    not know what they say)."""
    if not os.path.exists(doc):
        return ""
    text = open(doc, encoding="utf-8").read()
    return text[text.index(NOTES):] if NOTES in text else ""


def _command(dataset, out, doc) -> str:
    return (f"tinysml evidence --out {out} --doc {doc}" + (f" --datasets {dataset}" if dataset else ""))


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
