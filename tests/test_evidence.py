"""tinysml evidence: the statistics (paired t intervals, the still-improving rule), the choice of
our variant on validation scores only, and a tiny plan end to end (run, report, incomplete report)."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from tinysml import evidence, evidence_plan, powered
from tinysml.power import paired_ci



def test_paired_ci_is_students_t_over_the_paired_differences():
    a, b = [0.91, 0.95, 0.93, 0.96, 0.90], [0.90, 0.93, 0.94, 0.93, 0.89]
    mean, (lo, hi) = paired_ci(a, b)
    d = np.subtract(a, b)
    assert mean == pytest.approx(d.mean())
    expected = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((expected.low, expected.high))
    assert paired_ci([0.9], [0.8])[1] is None                      # one pair: no interval


@pytest.mark.parametrize("scores, improving", [
    ([0.5, 0.7, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.95], True),      # best at the end, well above
    ([0.5, 0.9, 0.91, 0.90, 0.91, 0.90, 0.89, 0.90, 0.91, 0.912], False),   # flat: within half a point
    ([0.5, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], False),           # peaked early
    ([0.5, 0.6], False),                                                     # too short to tell
    ([0.5, 0.9, 0.5], True),                                                 # three epochs: the last two are the tail
    ([0.5] * 12 + [0.9, 0.6, 0.6], True)])                                   # 15 epochs: the tail is the last 3
def test_still_improving(scores, improving):
    assert evidence_plan.still_improving([{"macro_f1": s} for s in scores]) is improving


def test_improving_means_beating_the_earlier_best_by_more_than_the_margin():
    history = [{"macro_f1": s} for s in (0.5, 0.5, 0.75)]                   # exact in binary: 0.5 + 0.25 == 0.75
    assert not evidence_plan.still_improving(history, margin=0.25)
    assert evidence_plan.still_improving(history, margin=0.125)


def test_our_variant_is_chosen_on_validation_scores_only():
    def run(val, test):
        return {"student": {"val": {"macro_f1": val}, "test": {"accuracy": test, "macro_f1": test}}}
    found = {"SMLDist": {0: run(0.99, 0.99)},                               # the released one is not a candidate
             "SMLDist, direct logits loss [ours]": {0: run(0.90, 0.99), 1: run(0.92, 0.99)},
             "SMLDist, no memory loss": {0: run(0.95, 0.50), 1: run(0.93, 0.50)},
             "SMLDist + head search": {0: run(0.99, 0.99)}}
    ours, means = evidence_plan.choose_ours(found)
    assert ours == "SMLDist, no memory loss" and set(means) == {"SMLDist, direct logits loss [ours]",
                                                                 "SMLDist, no memory loss"}


def test_a_tiny_plan_runs_reports_and_says_when_it_is_incomplete(tmp_path, monkeypatch):
    monkeypatch.setattr(evidence_plan, "PLAN", {"basicmotions": {"seeds": [0, 1], "extra": ["SMLDist, no memory loss"]}})
    monkeypatch.setattr(evidence_plan, "SELECTION", "basicmotions")
    monkeypatch.setattr(evidence_plan, "CORE", ["KD (Hinton)", "SMLDist"])
    monkeypatch.setattr(evidence_plan, "ABLATIONS", ["SMLDist, no memory loss"])
    monkeypatch.setattr(evidence_plan, "MIN_STEPS", 4)
    monkeypatch.setattr(powered, "RECORDS", str(tmp_path / "powered"))        # not the repository's records
    monkeypatch.setattr(powered, "RELEASED_RECORDS", str(tmp_path / "released"))
    monkeypatch.setattr(evidence_plan, "BASE", {**evidence_plan.BASE, "teacher_epochs": 1, "student_epochs": 3, "stage_epochs": 1,
                                           "batch_size": 16})
    out, doc = str(tmp_path / "runs"), str(tmp_path / "results.md")
    evidence.main(["--out", out, "--doc", doc, "--workers", "2"])
    text = open(doc).read()
    assert "## basicmotions (complete)" in text and "## Summary across datasets" in text
    assert "every epoch runs at least 4 steps (2 passes)" in text             # 32 windows: 2 batches a pass
    assert "The variant of ours is **SMLDist, no memory loss**" in text and "**Verdict**" in text
    assert "provisionally" in text                  # only the selection dataset ran: not fixed yet
    assert "| SMLDist, no memory loss | " in text.split("Against SMLDist itself")[1]     # the ablation, paired
    assert not os.path.exists(os.path.join(out, "ours.json"))
    cfg = json.load(open(os.path.join(out, "basicmotions", "seed0", "smldist", "config.json")))
    assert cfg["min_steps_per_epoch"] == 4
    with open(doc, "a") as f:
        f.write("\n## Notes\n\nwritten by hand\n")
    evidence_plan.fixed_ours(out, evidence.collect(os.path.join(out, "basicmotions"), [0, 1], evidence_plan.ABLATIONS), True)
    assert json.load(open(os.path.join(out, "ours.json")))["variant"] == "SMLDist, no memory loss"
    os.remove(os.path.join(out, "basicmotions", "seed1", "kd--hinton", "results.json"))
    evidence.main(["--out", out, "--doc", doc, "--report-only"])
    text = open(doc).read()
    assert "## basicmotions (INCOMPLETE: 9 of 10 runs finished)" in text
    assert text.endswith("## Notes\n\nwritten by hand\n") and text.count("## Notes") == 1
    assert "provisionally" not in text              # recorded in ours.json: fixed
