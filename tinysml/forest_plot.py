"""The forest plot of docs/results.md's powered section: one row per pre-registered hypothesis, the
paired difference of every seed and the intervals that decide it (``tinysml/powered.py`` computes
them; this file only draws). Plotting is kept out of the analysis so that the analysis reads alone
and is mutation-tested alone (docs/mutation.md): a figure's colours and sizes change no number.
"""
from __future__ import annotations

import os

import numpy as np


def forest_plot(dataset: str, rows: list, path: str, level: float, margin: float) -> str | None:
    """Write ``path``: per hypothesis (``rows`` as ``powered.analyse`` returns them, drawn top to
    bottom in their order), every seed's paired difference of test accuracy (dots, jittered
    vertically), their mean (a diamond), the ``level`` interval that decides (thick, red) and the
    95% one (thin, black), over the +-``margin`` band of "no difference that matters"; all in
    points. Returns ``path``, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 1.5 + 0.8 * len(rows)))
    ax.axvspan(-100 * margin, 100 * margin, color="0.92", label=f"within ±{100 * margin:g} point")
    ax.axvline(0, color="0.4", linewidth=0.8)
    rng = np.random.default_rng(0)                           # jitter only: the dots' heights mean nothing
    for k, r in enumerate(reversed(rows)):
        acc = r["accuracy"]
        d = 100 * np.asarray(acc["per_seed"])
        ax.scatter(d, k + 0.25 + rng.uniform(-0.08, 0.08, len(d)), s=9, color="tab:blue", alpha=0.6,
                   label="one seed" if k == 0 else None)
        if acc["adjusted"]:
            ax.plot([100 * v for v in acc["unadjusted"]], [k, k], color="black", linewidth=1,
                    label="95% interval" if k == 0 else None)
            ax.plot([100 * v for v in acc["adjusted"]], [k - 0.08, k - 0.08], color="tab:red", linewidth=3,
                    label=f"{100 * level:.2f}% interval (decides)" if k == 0 else None)
        if d.size:
            ax.plot([100 * acc["mean"]], [k], "D", color="black", markersize=5, label="mean" if k == 0 else None)
    ax.set_yticks(range(len(rows)), [f"{r['hypothesis']}: {r['method']}\n- {r['against']} (n={len(r['seeds'])})"
                                     for r in reversed(rows)], fontsize=7)
    ax.set_xlabel("paired difference in test accuracy (points)")
    ax.set_title(f"{dataset}: the pre-registered hypotheses, paired by seed", fontsize=9)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=5, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
