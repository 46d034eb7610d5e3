"""How many seeds a question needs: from a grid's finished runs, per comparison of two methods, the
standard deviation of their paired differences over seeds and the number of seeds whose paired
95% interval would have a requested half-width.

    tinysml power --grid runs/evidence/uci-har --half-width 0.0075
    python -c "from tinysml.power import plan; print(plan('runs/evidence/uci-har', 0.0075))"

The interval is the one ``tinysml evidence`` reports (``paired_ci`` below): over n seeds, the
paired differences d_i of a test metric have mean d and sample standard deviation s, and

    half-width(n) = t_{0.975, n-1} s / sqrt(n).

The seeds needed are the smallest n >= 2 with half-width(n) <= the target, taking s as measured
(t depends on n, so n is found by stepping, not by a closed form). A planning figure: s itself is
estimated from few seeds, and the run at n seeds measures its own.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .arguments import COUNT, POSITIVE

# the pre-registered questions (docs/preregistration.md): (method, against)
HYPOTHESES = {"H1": ("SMLDist", "student alone"), "H2": ("SMLDist", "KD (Hinton)"),
              "H3": ("SMLDist, direct logits loss [ours]", "SMLDist"), "H4": ("FitNets", "student alone")}
MAX_SEEDS = 1000


def mean_spread(values) -> str:
    """"mean ± sample std" over seeds, to four places; the mean alone for one seed."""
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")


def paired_ci(a, b, level: float = 0.95):
    """Mean of the paired differences a_i - b_i and its ``level`` confidence interval (Student's t
    over the pairs); the interval is None with fewer than two pairs."""
    from scipy import stats
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else float("nan"), None
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), (float(d.mean() - half), float(d.mean() + half))


def half_width(sd: float, n: int, level: float = 0.95) -> float:
    """t_{(1 + level)/2, n-1} sd / sqrt(n): the half-width of a paired interval over n seeds."""
    from scipy import stats
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))


def seeds_needed(sd: float, target: float, level: float = 0.95, max_seeds: int = MAX_SEEDS) -> int | None:
    """The smallest n >= 2 whose half-width is at most ``target`` for a paired standard deviation
    ``sd``; None when even ``max_seeds`` is not enough (or the target is not positive)."""
    if target <= 0 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    from scipy import stats
    z = stats.norm.ppf(0.5 + level / 2)
    start = max(2, math.floor((z * sd / target) ** 2))         # the normal answer, a lower bound: t > z
    for n in range(start, max_seeds + 1):
        if half_width(sd, n, level) <= target:
            return n
    return None


def paired(found: dict, method: str, against: str, metric: str = "accuracy") -> np.ndarray:
    """The paired differences method - against of a test metric, over the seeds where both finished
    (``found`` as ``compare.collect`` returns it)."""
    a, b = found.get(method, {}), found.get(against, {})
    seeds = sorted(set(a) & set(b))
    return np.array([a[s]["student"]["test"][metric] - b[s]["student"]["test"][metric] for s in seeds])


def plan_rows(found: dict, target: float, metric: str = "accuracy", comparisons: dict | None = None,
              level: float = 0.95) -> list:
    """One row per comparison: its name, the seeds it has, the mean and standard deviation of the
    paired differences, the half-width now, and the seeds needed for ``target``."""
    rows = []
    for name, (method, against) in (comparisons or HYPOTHESES).items():
        d = paired(found, method, against, metric)
        n = len(d)
        sd = float(d.std(ddof=1)) if n >= 2 else math.nan
        rows.append({"comparison": name, "method": method, "against": against, "seeds": n,
                     "mean": float(d.mean()) if n else math.nan, "sd": sd,
                     "half_width": half_width(sd, n, level),           # inf below two pairs
                     "needed": seeds_needed(sd, target, level)})       # None while sd is nan
    return rows


def plan(grid: str, target: float, metric: str = "accuracy", comparisons: dict | None = None,
         seeds=range(100)) -> list:
    """``plan_rows`` for the finished runs of the grid folder ``grid`` (``runs/evidence/<dataset>``)
    or the runs recorded in a records folder (``tinysml/records.py``)."""
    from .compare import collect
    comparisons = comparisons or HYPOTHESES
    names = sorted({n for pair in comparisons.values() for n in pair})
    return plan_rows(collect(grid, list(seeds), names, records_dir=grid), target, metric, comparisons)


def markdown(rows: list, target: float, metric: str) -> str:
    lines = [f"| comparison | seeds | mean difference | paired sd | 95% half-width now | seeds for +-{target:.4f} |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        needed = "not enough runs" if r["seeds"] < 2 else (f"> {MAX_SEEDS}" if r["needed"] is None else str(r["needed"]))
        lines.append(f"| {r['comparison']}: {r['method']} - {r['against']} | {r['seeds']} | "
                     f"{r['mean']:+.4f} | {r['sd']:.4f} | {r['half_width']:.4f} | {needed} |")
    return "\n".join(lines) + f"\n\n(test {metric}; paired differences over the seeds where both runs finished)"


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="tinysml power", description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", required=True, help="a grid's folder (what tinysml compare/evidence wrote: OUT/<dataset>), or its records folder")
    p.add_argument("--half-width", type=POSITIVE, default=0.0075, help="the wanted 95%% interval half-width")
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "macro_f1"], help="the test metric")
    p.add_argument("--max-seed", type=COUNT, default=100, help="look for seeds 0 .. MAX_SEED - 1")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv) if not isinstance(argv, argparse.Namespace) else argv
    rows = plan(args.grid, args.half_width, args.metric, seeds=range(args.max_seed))
    print(markdown(rows, args.half_width, args.metric))
