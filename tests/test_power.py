"""tinysml/power.py: the seeds a paired comparison needs, against a hand computation, and the plan
read from a grid's finished runs."""
import json
import math
import os

import numpy as np
import pytest

from tinysml import cli, power


def test_half_width_and_seeds_needed_by_hand():
    # t_{0.975, 21} = 2.0796, t_{0.975, 22} = 2.0739 (a printed t table): with a paired sd of 0.017,
    # 22 seeds give 2.0796 * 0.017 / sqrt(22) = 0.007538 > 0.0075 and 23 give 0.007352 <= 0.0075
    assert power.half_width(0.017, 22) == pytest.approx(2.0796 * 0.017 / math.sqrt(22), rel=1e-4)
    assert power.half_width(0.017, 23) == pytest.approx(2.0739 * 0.017 / math.sqrt(23), rel=1e-4)
    assert power.seeds_needed(0.017, 0.0075) == 23
    # 3 seeds with sd 0.01: t_{0.975,2} = 4.3027 -> 0.02484; 2 seeds: t_{0.975,1} = 12.706 -> 0.0898
    assert power.seeds_needed(0.01, 0.025) == 3
    assert power.seeds_needed(0.01, 0.09) == 2
    assert power.seeds_needed(0.0, 0.001) == 2
    assert power.seeds_needed(0.05, 0.001) is None                 # past MAX_SEEDS
    assert power.seeds_needed(0.01, 0.0) is None and power.half_width(0.01, 1) == math.inf


@pytest.mark.parametrize("sd, target", [(0.017, 0.0075), (0.038, 0.01), (0.002, 0.0005), (0.09, 0.04)])
def test_seeds_needed_is_the_first_n_that_reaches_the_target(sd, target):
    n = power.seeds_needed(sd, target)
    assert power.half_width(sd, n) <= target
    assert n == 2 or power.half_width(sd, n - 1) > target


def _grid(root, accuracies):
    """A grid folder with results.json files: accuracies {variant: [per seed]}."""
    from tinysml.compare import _run_dir
    for name, values in accuracies.items():
        for seed, acc in enumerate(values):
            d = _run_dir(str(root), seed, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump({"student": {"test": {"accuracy": acc, "macro_f1": acc - 0.01}}}, f)


def test_the_plan_reads_the_paired_differences_of_a_grid(tmp_path, capsys):
    alone = [0.90, 0.92, 0.91, 0.93]
    sml = [0.92, 0.93, 0.94, 0.93]                 # differences 0.02, 0.01, 0.03, 0.00
    _grid(tmp_path, {"student alone": alone, "SMLDist": sml, "KD (Hinton)": [0.91]})
    rows = {r["comparison"]: r for r in power.plan(str(tmp_path), 0.01)}
    d = np.array(sml) - np.array(alone)
    h1 = rows["H1"]
    assert h1["seeds"] == 4 and h1["mean"] == pytest.approx(d.mean()) and h1["sd"] == pytest.approx(d.std(ddof=1))
    assert h1["half_width"] == pytest.approx(power.half_width(d.std(ddof=1), 4))
    assert h1["needed"] == power.seeds_needed(d.std(ddof=1), 0.01)
    assert rows["H2"]["seeds"] == 1 and rows["H2"]["needed"] is None       # one pair: no spread yet
    assert rows["H4"]["seeds"] == 0
    cli.main(["power", "--grid", str(tmp_path), "--half-width", "0.01"])
    out = capsys.readouterr().out
    assert "| H1: SMLDist - student alone | 4 | +0.0150 |" in out and "not enough runs" in out
