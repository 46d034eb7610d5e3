"""The forest plot of the powered section (tinysml/forest_plot.py): what it draws, read back from the
figure: a row per hypothesis from the top in the analysis' order, every seed's difference, the mean,
both intervals where they exist, the +-1 point band, the title and the legend."""
import os

import numpy as np
import pytest

from tinysml import powered
from tinysml.forest_plot import forest_plot

plt = pytest.importorskip("matplotlib.pyplot")


def _found():
    """Three seeds of every method but KD, so H2 has no pair; test accuracy = macro-F1."""
    acc = {"student alone": [0.90, 0.92, 0.91], "SMLDist": [0.92, 0.93, 0.95], "FitNets": [0.91, 0.91, 0.93],
           "SMLDist, direct logits loss [ours]": [0.93, 0.95, 0.94]}
    return {m: {s: {"student": {"test": {"accuracy": a, "macro_f1": a}}} for s, a in enumerate(v)}
            for m, v in acc.items()}


def test_the_forest_plot_draws_every_seed_and_the_intervals_that_decide(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)                 # keep the figure to read it back
    rows = powered.analyse(_found(), seeds=range(3))
    path = str(tmp_path / "new" / "powered-uci-har.png")
    assert forest_plot("uci-har", rows, path, level=powered.LEVEL, margin=0.01) == path
    assert os.path.getsize(path) > 0                                  # its folder made, the PNG written
    (fig,) = figures
    ax = fig.axes[0]

    labels = [t.get_text() for t in ax.get_yticklabels()]             # bottom to top: H4 ... H1
    assert labels == [f"{r['hypothesis']}: {r['method']}\n- {r['against']} (n={len(r['seeds'])})"
                      for r in reversed(rows)]
    assert labels[-1] == "H1: SMLDist\n- student alone (n=3)" and labels[2] == "H2: SMLDist\n- KD (Hinton) (n=0)"
    assert list(ax.get_yticks()) == [0, 1, 2, 3]

    dots = [c.get_offsets() for c in ax.collections]                  # one scatter per hypothesis, H4 first
    assert len(dots) == 4
    for k, (r, xy) in enumerate(zip(reversed(rows), dots)):
        np.testing.assert_allclose(xy[:, 0], 100 * np.asarray(r["accuracy"]["per_seed"]))
        assert np.all(np.abs(xy[:, 1] - (k + 0.25)) <= 0.08)             # jitter around its row, above the bars
    np.testing.assert_allclose(dots[3][:, 0], [2.0, 1.0, 4.0])            # H1: SMLDist - alone, per seed

    lines = {(tuple(np.round(ln.get_xdata(), 9)), tuple(np.round(ln.get_ydata(), 9))) for ln in ax.lines}
    for k, r in enumerate(reversed(rows)):
        acc = r["accuracy"]
        if not r["seeds"]:
            assert not any(y and all(abs(v - k) < 0.1 for v in y) for _, y in lines)   # nothing drawn on H2's row
            continue
        assert (tuple(np.round([100 * v for v in acc["unadjusted"]], 9)), (k, k)) in lines
        assert (tuple(np.round([100 * v for v in acc["adjusted"]], 9)), (k - 0.08, k - 0.08)) in lines
        assert ((round(100 * acc["mean"], 9),), (k,)) in lines
    assert ((0, 0), (0, 1)) in {(tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in ax.lines}   # the zero line

    (band,) = ax.patches                                               # the +-1 point band, in data units
    corners = ax.transData.inverted().transform(band.get_window_extent().get_points())
    assert corners[:, 0] == pytest.approx([-1.0, 1.0], abs=1e-6)

    assert ax.get_title() == "uci-har: the pre-registered hypotheses, paired by seed"
    assert ax.get_xlabel() == "paired difference in test accuracy (points)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(["within ±1 point", "one seed", "95% interval", "98.75% interval (decides)",
                                     "mean"])


def test_the_forest_plot_without_matplotlib_draws_nothing(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = str(tmp_path / "p.png")
    assert forest_plot("hapt", powered.analyse(_found(), seeds=range(3)), path, level=0.9875, margin=0.01) is None
    assert not os.path.exists(path)
