"""The evidence's document, docs/results.md: one section per dataset of the 3-5-seed grids (paired
intervals against the student alone and KD, the SMLDist variants against SMLDist, runs still
improving), a summary across datasets with a verdict generated from the numbers, the powered
study's section first (``tinysml/powered.py``), and the doc's hand-written notes kept as they are.

What runs and with which plan (datasets, seeds, variants, budget, the variant of ours) is
``tinysml/evidence_plan.py`` (run by ``tinysml/evidence.py``); this module only reads finished runs
and writes the document:

    tinysml evidence --report-only        # the same as evidence_report.report("runs/evidence", "docs/results.md")
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import evidence_plan, io, powered
from .compare import collect
from .power import mean_spread, paired_ci


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
    base = evidence_plan.BASE
    steps, epochs, ms = math.ceil(sizes["train"] / base["batch_size"]), base["student_epochs"], \
        evidence_plan.min_steps(sizes["train"])
    budget = (f"every epoch runs at least {ms} steps ({math.ceil(ms / steps)} passes), so the students' {epochs} "
              f"epochs are {epochs * max(steps, ms)} steps." if ms else
              f"the students' {epochs} epochs are {epochs * steps} steps.")
    return [f"Protocol: {protocol}. {sizes['classes']} classes; {sizes['train']} training, {sizes['val']} validation "
            f"and {sizes['test']} test windows (seed 0's split): every model selection here was made on "
            f"{sizes['val']} validation windows.",
            f"Budget: a pass over the training windows is {steps} steps of {base['batch_size']}; {budget}"]


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
        flagged = [f"seed {s}" for s, r in runs.items() if evidence_plan.still_improving(_history(r, name))]
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
    methods = [m for m in [*evidence_plan.CORE, ours] if m]
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
        label = f" ({'' if '[ours]' in m else 'ours, '}chosen on {evidence_plan.SELECTION} validation)" if m == ours else ""
        lines.append(f"| {m}{label} | " + " | ".join(cells)
                     + f" | {wins} of {ran} | {best} |")
        verdict.append((m, wins))
    chosen = ("The variant of ours is **" + ours + f"**, chosen on {evidence_plan.SELECTION}'s validation split (mean validation "
              "macro-F1 over the seeds every candidate had finished when the choice was made: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]))
              + ")" + ("." if fixed else f", provisionally: it is fixed (OUT/ours.json) when the first other "
                       f"dataset's grid starts, from the {evidence_plan.SELECTION} runs finished by then.")
              if ours else f"The variant of ours is not chosen yet ({evidence_plan.SELECTION}'s variant runs are not finished).")
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
    core, selection = evidence_plan.CORE, evidence_plan.SELECTION
    for d, plan in evidence_plan.PLAN.items():
        found_all[d] = collect(os.path.join(out, d), plan["seeds"], ["student alone", *core, *plan["extra"],
                                                                     *evidence_plan.ABLATIONS],
                               evidence_plan.records_of(records, d))
    earlier = kept_earlier(doc) if not any(found_all.values()) else None
    if earlier is None:
        ours, means, fixed = evidence_plan.fixed_ours(out, found_all[selection], record=False, records=records)
        for d, plan in evidence_plan.PLAN.items():
            variants = ["student alone", *core] + (plan["extra"] if d == selection else [ours] if ours else [])
            text, stats = dataset_section(d, found_all[d], plan["seeds"], variants, evidence_plan.split_sizes(d),
                                          _command(d, out, doc))
            sections.append(text)
            all_stats[d] = stats
        earlier = summary_section(all_stats, ours, means, fixed) + "\n" + "\n\n".join(sections)
    head = ["# Results: SMLDist against the baselines", "",
            "`tinysml evidence --report-only` rewrites this file from the runs finished so far and the run records "
            "committed under `evidence/`. Its first section is the pre-registered powered study "
            "(`docs/preregistration.md`). The sections after it are the earlier evidence at 3-5 seeds, produced by `"
            + _command(None, out, doc) + "`. " + evidence_plan.__doc__.split("\n\n")[1].replace("\n", " "), ""]
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
