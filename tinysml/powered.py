"""The powered, pre-registered study (docs/preregistration.md) and its report: enough seeds that a
paired interval resolves about one point of accuracy, the analysis fixed before any run.

    tinysml evidence --powered                # run (or resume) the study: uci-har and hapt, seeds 0..29
    tinysml evidence --released               # uci-har at the authors' released budget, seeds 0..4
    tinysml evidence --report-only            # docs/results.md from the committed records alone

Every finished run's record (config, teacher sha256, validation history, test scores; no weights)
is committed under ``evidence/powered/<dataset>`` (``evidence/released/uci-har``), so the study
resumes on any machine from the repository and its report needs nothing else.

The analysis, exactly as pre-registered:

- per hypothesis (H1-H4) and dataset, the paired differences d_s = a_s - b_s of test accuracy
  over the seeds s where both runs finished; their mean and Student's t interval
  mean +- t_{q, n-1} sd(d) / sqrt(n);
- the four hypotheses of a dataset are one family: decisions read the Bonferroni-adjusted
  interval, q = 1 - 0.05 / 4 / 2 (a 98.75% interval); the unadjusted 95% one is shown and decides
  nothing; macro-F1 is analysed the same way and decides nothing;
- the verdict, on the adjusted interval in accuracy points: **supported** if it lies above 0,
  **contradicted** if below 0, **no difference that matters** if it includes 0 and lies within
  [-1, +1], else **not resolved**. Until every run of a dataset has finished, its intervals are
  interim and carry no verdict.
"""
from __future__ import annotations

import math
import os

from .forest_plot import forest_plot
from .power import HYPOTHESES, MAX_SEEDS, mean_spread, paired_ci, plan_rows

DATASETS = ["uci-har", "hapt"]
SEEDS = list(range(30))
METHODS = ["student alone", "KD (Hinton)", "FitNets", "SMLDist", "SMLDist, direct logits loss [ours]"]
FAMILY_ALPHA = 0.05
LEVEL = 1 - FAMILY_ALPHA / len(HYPOTHESES)          # Bonferroni over the four hypotheses of one dataset
MARGIN = 0.01                                       # one point: the smallest difference that matters
RECORDS = "evidence/powered"

RELEASED = {"dataset": "uci-har", "seeds": list(range(5)),
            "methods": ["student alone", "KD (Hinton)", "SMLDist", "SMLDist, direct logits loss [ours]"]}
RELEASED_RECORDS = "evidence/released"
RELEASED_QUESTIONS = {h: HYPOTHESES[h] for h in ("H1", "H2", "H3")}   # FitNets (H4) does not run at that budget


# --------------------------------------------------------------------------- the decision rule
def verdict(interval, margin: float = MARGIN) -> str:
    """The pre-registered verdict of one adjusted interval (lo, hi) of a difference."""
    lo, hi = interval
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    if -margin <= lo and hi <= margin:
        return "no difference that matters"
    return "not resolved"


def failed(record: dict) -> bool:
    """A finished run whose test scores are not finite failed (the pre-registration's definition;
    a run that ended with an error or was killed leaves no record at all)."""
    test = record.get("student", {}).get("test", {})
    return not all(isinstance(test.get(k), (int, float)) and math.isfinite(test[k]) for k in ("accuracy", "macro_f1"))


def analyse(found: dict, seeds=SEEDS, level: float = LEVEL, devices: bool = True) -> list:
    """One row per hypothesis: method, against, the seeds paired, mean difference, adjusted and 95%
    intervals of test accuracy, the same for macro-F1, and (with ``devices``) the adjusted interval
    over the seeds each device ran. ``found`` is {method: {seed: record}}, failed runs excluded."""
    rows = []
    for name, (method, against) in HYPOTHESES.items():
        a, b = found.get(method, {}), found.get(against, {})
        paired = [s for s in seeds if s in a and s in b]
        row = {"hypothesis": name, "method": method, "against": against, "seeds": paired}
        for metric in ("accuracy", "macro_f1"):
            x = [a[s]["student"]["test"][metric] for s in paired]
            y = [b[s]["student"]["test"][metric] for s in paired]
            mean, adjusted = paired_ci(x, y, level)
            row[metric] = {"mean": mean, "adjusted": adjusted, "unadjusted": paired_ci(x, y, 0.95)[1],
                           "per_seed": [u - v for u, v in zip(x, y)]}
        if devices:
            by_device = {}
            for s in paired:
                by_device.setdefault(a[s].get("config", {}).get("device", "cpu"), []).append(s)
            row["by_device"] = {dev: paired_ci([a[s]["student"]["test"]["accuracy"] for s in ss],
                                               [b[s]["student"]["test"]["accuracy"] for s in ss], level)
                                for dev, ss in by_device.items()}
        rows.append(row)
    return rows


def load(records: str, dataset: str, methods=METHODS, seeds=SEEDS) -> tuple[dict, list]:
    """({method: {seed: record}} of the finished, non-failed runs of one dataset's study, [failed
    runs as "method seed k"])."""
    from . import records as recs
    found, bad = {}, []
    for name, by_seed in recs.load(os.path.join(records, dataset), seeds, methods).items():
        for seed, rec in by_seed.items():
            if failed(rec):
                bad.append(f"{name} seed {seed}")
            else:
                found.setdefault(name, {})[seed] = rec
    return found, bad


# --------------------------------------------------------------------------- the report
def _pts(x: float) -> str:
    """A difference in points, signed, to two places ("+0.00", never "-0.00")."""
    return f"{round(100 * x, 2) + 0.0:+.2f}"


def _interval(ci) -> str:
    return "—" if ci is None else f"[{_pts(ci[0])}, {_pts(ci[1])}]"


def dataset_table(dataset: str, found: dict, bad: list, seeds=SEEDS) -> tuple[str, list]:
    """The markdown of one dataset's hypotheses, and its analysis rows (runs of other seeds ignored)."""
    found = {m: {s: r for s, r in by_seed.items() if s in seeds} for m, by_seed in found.items()}
    finished = sum(len(found.get(m, {})) for m in METHODS)
    complete = finished == len(METHODS) * len(seeds)
    rows = analyse(found, seeds)
    state = ("complete" if complete else
             f"INCOMPLETE: {finished} of {len(METHODS) * len(seeds)} runs finished; interim, no verdict")
    lines = [f"### {dataset} ({state})", "",
             f"Test accuracy, paired by seed, in points; decisions on the {100 * LEVEL:.2f}% (Bonferroni) interval.", "",
             f"| hypothesis | seeds | mean difference | {100 * LEVEL:.2f}% interval | verdict | 95% interval (decides nothing) "
             f"| macro-F1: mean, {100 * LEVEL:.2f}% interval |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc, f1 = r["accuracy"], r["macro_f1"]
        if not r["seeds"]:
            lines.append(f"| {r['hypothesis']}: {r['method']} - {r['against']} | 0 | — | — | no runs yet | — | — |")
            continue
        decided = (verdict(acc["adjusted"]) if complete and acc["adjusted"] else "waits for every run")
        lines.append(f"| {r['hypothesis']}: {r['method']} - {r['against']} | {len(r['seeds'])} | {_pts(acc['mean'])} | "
                     f"{_interval(acc['adjusted'])} | **{decided}** | {_interval(acc['unadjusted'])} | "
                     f"{_pts(f1['mean'])} {_interval(f1['adjusted'])} |")
    means = [f"{m} {mean_spread([r['student']['test']['accuracy'] for r in found[m].values()])} ({len(found[m])})"
             for m in METHODS if m in found]
    if means:
        lines += ["", "Mean test accuracy ± sample std over seeds (seeds finished): " + "; ".join(means) + "."]
    devices = sorted({d for r in rows for d in r["by_device"]})
    if len(devices) > 1:
        per_device = [f"{r['hypothesis']} " + ", ".join(f"{dev} {_interval(r['by_device'][dev][1])}"
                                                         for dev in devices if dev in r["by_device"])
                      for r in rows if r["by_device"]]
        lines += ["", "Sensitivity (pre-registered), the adjusted interval over the seeds each device ran: "
                  + "; ".join(per_device) + "."]
    if bad:
        lines += ["", "Failed runs (to be re-run, never dropped): " + ", ".join(bad) + "."]
    return "\n".join(lines), rows


def released_table(records: str = RELEASED_RECORDS) -> str:
    """The exploratory released-budget table: per method the seeds finished, mean ± std of test
    accuracy and macro-F1, and the 95% paired interval against the student alone and against KD."""
    plan = RELEASED
    found, bad = load(records, plan["dataset"], plan["methods"], plan["seeds"])
    want = len(plan["methods"]) * len(plan["seeds"])
    finished = sum(len(v) for v in found.values())
    state = "complete" if finished == want else f"INCOMPLETE: {finished} of {want} runs finished"
    lines = [f"### The authors' released budget, {plan['dataset']} (exploratory; {state})", "",
             "Batch 256; teacher and final phase 200 epochs of Ranger (lr 1e-3) with ReduceLROnPlateau; each stage "
             "anchor 200 epochs of Adam (lr 1e-4) over every student parameter; selection on the validation split. "
             "Produced by `tinysml evidence --released`.", ""]
    if finished:
        lines += released_rows(found, plan["methods"])
        lines += released_power(found, os.path.join(records, plan["dataset"]))
    else:
        lines.append("No run has finished yet.")
    if bad:
        lines += ["", "Failed runs (to be re-run, never dropped): " + ", ".join(bad) + "."]
    return "\n".join(lines)


def released_power(found: dict, folder: str) -> list:
    """What a claim at the released budget would cost: per question with two or more paired seeds,
    the 95% half-width its seeds give now and the seeds a ±1-point interval would need, taking the
    paired standard deviation as measured (``tinysml power``; a planning figure, no verdict)."""
    rows = [r for r in plan_rows(found, MARGIN, comparisons=RELEASED_QUESTIONS) if r["seeds"] >= 2]
    if not rows:
        return []

    def needed(r):
        return f"over {MAX_SEEDS}" if r["needed"] is None else str(r["needed"])
    parts = [f"{r['method']} - {r['against']}: ±{100 * r['half_width']:.2f} points at {r['seeds']} seeds, "
             f"±{100 * MARGIN:.0f} would need {needed(r)}" for r in rows]
    return ["", "What a claim at this budget would need (95% paired intervals; paired standard deviation as "
            f"measured here, `tinysml power --grid {folder} --half-width {MARGIN}`): " + "; ".join(parts) + "."]


def released_rows(found: dict, methods) -> list:
    """The released-budget table's markdown rows: mean ± std per method, paired intervals."""
    lines = ["| method | seeds | test accuracy | test macro-F1 | vs student alone, points (95%) | vs KD, points (95%) |",
             "|---|---|---|---|---|---|"]

    def diff(m, ref):
        if m == ref or m not in found or ref not in found:
            return "—"
        s = sorted(set(found[m]) & set(found[ref]))
        mean, ci = paired_ci([found[m][k]["student"]["test"]["accuracy"] for k in s],
                             [found[ref][k]["student"]["test"]["accuracy"] for k in s])
        return f"{_pts(mean)} {_interval(ci)}"

    for m in methods:
        if m not in found:
            lines.append(f"| {m} | 0 | — | — | — | — |")
            continue
        cells = [mean_spread([r["student"]["test"][metric] for r in found[m].values()])
                 for metric in ("accuracy", "macro_f1")]
        lines.append(f"| {m} | {len(found[m])} | {cells[0]} | {cells[1]} | {diff(m, 'student alone')} | "
                     f"{diff(m, 'KD (Hinton)')} |")
    return lines


def section(records: str = RECORDS, released: str = RELEASED_RECORDS, figures: str = "docs") -> str:
    """The first section of docs/results.md: the pre-registered hypotheses per dataset, their
    forest plots (written under ``figures``), the deviations from the plan, the released budget."""
    lines = ["## The powered answer (pre-registered)", "",
             "The study of `docs/preregistration.md`, committed before its first run: uci-har and hapt, seeds 0-29, "
             "the student alone, KD, FitNets, SMLDist and our direct-logits variant at the project's budget, one "
             "teacher per seed. Produced by `tinysml evidence --powered` (the runs) and `tinysml evidence "
             "--report-only` (this section, from the records committed under `evidence/powered/`). H1: SMLDist vs "
             "the student alone; H2: SMLDist vs KD; H3: ours vs SMLDist; H4: FitNets vs the student alone. Verdicts "
             f"by the pre-registered rule on the Bonferroni-adjusted {100 * LEVEL:.2f}% interval: supported (above "
             "0), contradicted (below 0), no difference that matters (includes 0, within ±1 point), not resolved.", ""]
    for dataset in DATASETS:
        found, bad = load(records, dataset)
        text, rows = dataset_table(dataset, found, bad)
        lines += [text, ""]
        pic = (forest_plot(dataset, rows, os.path.join(figures, f"powered-{dataset}.png"), level=LEVEL, margin=MARGIN)
               if found else None)
        if pic:
            lines += [f"![{dataset}: paired differences per seed]({os.path.basename(pic)})", ""]
    deviations = os.path.join(records, "deviations.md")          # written by hand, committed with the records
    dev = open(deviations, encoding="utf-8").read().strip() if os.path.exists(deviations) else ""
    lines += ["### Deviations from the plan", "", dev or "None so far.", "", released_table(released), ""]
    return "\n".join(lines)
