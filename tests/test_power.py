"""tinysml/power.py: the seeds a paired comparison needs, against a hand computation, and the plan
read from a grid's finished runs."""
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

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


def _scores(root, scores):
    """A grid folder whose runs scored {variant: [(accuracy, macro-F1) per seed]} (results.json files)."""
    from tinysml.compare import _run_dir
    for name, values in scores.items():
        for seed, (acc, f1) in enumerate(values):
            d = _run_dir(str(root), seed, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump({"student": {"test": {"accuracy": acc, "macro_f1": f1}}}, f)


def _grid(root, accuracies):
    """A grid folder whose runs scored {variant: [accuracy per seed]}, macro-F1 one point lower."""
    _scores(root, {name: [(acc, acc - 0.01) for acc in values] for name, values in accuracies.items()})


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


def test_the_plan_table_reads_exactly_so(tmp_path, capsys):
    """A number of seeds, more than any study (a paired sd of 0.56), and too few runs; seeds from
    --max-seed only; the metric asked for (checked by hand for H1: d = 2, 1 points, sd 0.707,
    t_{0.975,1} = 12.706 gives 6.35; 5 seeds give 2.776 * 0.707 / sqrt(5) = 0.88 <= 1 point)."""
    _scores(tmp_path, {"student alone": [(0.90, 0.80), (0.92, 0.80), (0.5, 0.5)],
                       "SMLDist": [(0.92, 0.80), (0.93, 0.82), (0.9, 0.9)],
                       "KD (Hinton)": [(0.10, 0.80), (0.90, 0.81), (0.5, 0.5)]})
    power.main(["--grid", str(tmp_path), "--half-width", "0.01", "--max-seed", "2"])       # seed 2 not read
    assert capsys.readouterr().out == """\
| comparison | seeds | mean difference | paired sd | 95% half-width now | seeds for +-0.0100 |
|---|---|---|---|---|---|
| H1: SMLDist - student alone | 2 | +0.0150 | 0.0071 | 0.0635 | 5 |
| H2: SMLDist - KD (Hinton) | 2 | +0.4250 | 0.5586 | 5.0190 | > 1000 |
| H3: SMLDist, direct logits loss [ours] - SMLDist | 0 | +nan | nan | inf | not enough runs |
| H4: FitNets - student alone | 0 | +nan | nan | inf | not enough runs |

(test accuracy; paired differences over the seeds where both runs finished)
"""
    power.main(["--grid", str(tmp_path), "--metric", "macro_f1", "--max-seed", "2"])        # d = 0, 2 points
    out = capsys.readouterr().out
    assert "| H1: SMLDist - student alone | 2 | +0.0100 | 0.0141 | 0.1271 | 17 |" in out   # 0.0075 by default
    assert out.endswith("(test macro_f1; paired differences over the seeds where both runs finished)\n")
    assert power.seeds_needed(0.01414213562, 0.0075) == 17


def test_one_pair_or_none_gives_no_spread_and_no_warning(tmp_path):
    import warnings
    found = {"SMLDist": {0: {"student": {"test": {"accuracy": 0.9, "macro_f1": 0.9}}}},
             "student alone": {0: {"student": {"test": {"accuracy": 0.8, "macro_f1": 0.7}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # numpy's empty-slice warnings fail the test
        rows = {r["comparison"]: r for r in power.plan_rows(found, 0.01)}
    assert rows["H1"]["seeds"] == 1 and rows["H1"]["mean"] == pytest.approx(0.1) and math.isnan(rows["H1"]["sd"])
    assert rows["H1"]["half_width"] == math.inf and rows["H1"]["needed"] is None
    assert rows["H2"]["seeds"] == 0 and math.isnan(rows["H2"]["mean"])
    assert list(power.paired(found, "SMLDist", "student alone")) == pytest.approx([0.1])            # accuracy by default
    assert list(power.paired(found, "SMLDist", "student alone", "macro_f1")) == pytest.approx([0.2])


def test_two_pairs_are_enough_for_a_plan_and_the_level_is_passed_on():
    found = {m: {s: {"student": {"test": {"accuracy": a, "macro_f1": a}}} for s, a in enumerate(v)}
             for m, v in {"SMLDist": [0.92, 0.93], "student alone": [0.90, 0.92]}.items()}
    h1 = power.plan_rows(found, 0.01, level=0.99)[0]
    sd = math.sqrt(0.5) * 0.01
    assert h1["seeds"] == 2 and h1["sd"] == pytest.approx(sd)
    assert h1["half_width"] == pytest.approx(stats.t.ppf(0.995, 1) * sd / math.sqrt(2))
    assert h1["needed"] == power.seeds_needed(sd, 0.01, level=0.99) == 7           # 0.95 would give 5
    assert power.seeds_needed(sd, 0.01) == 5


def test_seeds_needed_at_its_edges():
    # sd 1, target 0.5: t_{0.975,16} / sqrt(17) = 2.120 / 4.123 = 0.514 > 0.5; t_{0.975,17} / sqrt(18) = 0.497
    assert power.seeds_needed(1.0, 0.5) == 18
    assert power.seeds_needed(0.017, power.half_width(0.017, 23)) == 23           # the target itself is reached
    assert power.seeds_needed(0.017, 0.0075, max_seeds=23) == 23                  # the last seed allowed counts
    assert power.seeds_needed(0.017, 0.0075, max_seeds=22) is None
    # at 99%: t_{0.995,37} / sqrt(38) * 0.017 = 2.715 * 0.002758 = 0.00749 <= 0.0075, 37 seeds give 0.00760
    assert power.seeds_needed(0.017, 0.0075, level=0.99) == 38


def test_the_standalone_parser_names_itself_and_says_what_it_does():
    p = power.build_parser()
    assert p.prog == "tinysml power"
    assert p.description == ("How many seeds a question needs: from a grid's finished runs, per comparison of two "
                             "methods, the\nstandard deviation of their paired differences over seeds and the number "
                             "of seeds whose paired\n95% interval would have a requested half-width.")
