"""The pre-registered study (tinysml/powered.py): the decision rule at its edges, the analysis
against a hand computation of the Bonferroni-adjusted t interval, no verdict before every run has
finished, failed runs named and not analysed, and the study grids' budgets."""
import math
import os

import numpy as np
import pytest
from scipy import stats

from tinysml import compare, evidence, powered, records
from tinysml.distill.pipeline import RELEASED_RECIPE


@pytest.mark.parametrize("interval, expected", [
    ((0.001, 0.03), "supported"),                       # above 0, even though it reaches past one point
    ((0.0001, 0.005), "supported"),                     # above 0 and inside +-1: above 0 wins
    ((-0.03, -0.001), "contradicted"),
    ((-0.01, 0.01), "no difference that matters"),      # the band's edges belong to it
    ((-0.004, 0.006), "no difference that matters"),
    ((-0.004, 0.0101), "not resolved"),                 # includes 0 and reaches past one point
    ((-0.02, 0.0), "not resolved")])                   # touches 0: not below it
def test_the_decision_rule(interval, expected):
    assert powered.verdict(interval) == expected


def _record(acc, f1=None, device="cpu"):
    return {"config": {"device": device}, "student": {"test": {"accuracy": acc, "macro_f1": acc if f1 is None else f1}}}


def test_the_analysis_is_a_bonferroni_adjusted_paired_t_interval():
    a = [0.95, 0.94, 0.96, 0.93, 0.97]
    b = [0.94, 0.94, 0.94, 0.92, 0.95]
    found = {"SMLDist": {s: _record(v) for s, v in enumerate(a)},
             "student alone": {s: _record(v) for s, v in enumerate(b)}}
    row = powered.analyse(found, seeds=range(5))[0]                  # H1: SMLDist - student alone
    assert row["hypothesis"] == "H1" and row["seeds"] == [0, 1, 2, 3, 4]
    d = np.subtract(a, b)                                              # 0.01 0 0.02 0.01 0.02
    half = stats.t.ppf(1 - 0.05 / 4 / 2, 4) * d.std(ddof=1) / math.sqrt(5)
    assert powered.LEVEL == pytest.approx(0.9875)
    assert row["accuracy"]["mean"] == pytest.approx(0.012)
    assert row["accuracy"]["adjusted"] == pytest.approx((0.012 - half, 0.012 + half))
    half95 = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert row["accuracy"]["unadjusted"] == pytest.approx((0.012 - half95, 0.012 + half95))
    assert row["accuracy"]["per_seed"] == pytest.approx(list(d))
    assert [r["seeds"] for r in powered.analyse(found, seeds=range(5))[1:]] == [[], [], []]   # nothing to pair


def test_only_seeds_where_both_finished_are_paired_and_devices_are_split():
    found = {"FitNets": {0: _record(0.9), 1: _record(0.91, device="cuda"), 2: _record(0.92, device="cuda")},
             "student alone": {0: _record(0.89), 2: _record(0.90, device="cuda"), 3: _record(0.5)}}
    row = powered.analyse(found, seeds=range(4))[3]                  # H4
    assert row["seeds"] == [0, 2] and row["accuracy"]["mean"] == pytest.approx(0.015)
    assert set(row["by_device"]) == {"cpu", "cuda"}


def test_failed_runs_are_named_not_analysed(tmp_path):
    records.save(str(tmp_path / "hapt"), "SMLDist", 0, _record(float("nan")))
    records.save(str(tmp_path / "hapt"), "SMLDist", 1, _record(0.9))
    found, bad = powered.load(str(tmp_path), "hapt", seeds=[0, 1])
    assert bad == ["SMLDist seed 0"] and list(found["SMLDist"]) == [1]
    assert powered.failed({"student": {"test": {"accuracy": 0.9}}})   # a score missing is a failure too


def test_no_verdict_until_every_run_has_finished(tmp_path):
    rng = np.random.default_rng(0)
    found = {m: {s: _record(0.9 + 0.02 * (m == "SMLDist") + 0.003 * rng.standard_normal()) for s in range(3)}
             for m in powered.METHODS}
    text, _ = powered.dataset_table("uci-har", found, [], seeds=range(3))
    assert "(complete)" in text and "**supported**" in text          # H1: +2 points, tight
    del found["KD (Hinton)"][2]
    text, _ = powered.dataset_table("uci-har", found, ["KD (Hinton) seed 2"], seeds=range(3))
    assert "INCOMPLETE: 14 of 15 runs finished" in text and "supported" not in text
    assert "waits for every run" in text and "Failed runs (to be re-run, never dropped): KD (Hinton) seed 2" in text


def test_the_report_puts_the_study_first_and_keeps_the_earlier_sections(tmp_path, monkeypatch):
    doc = tmp_path / "results.md"
    doc.write_text("# old\n\nintro\n\n## Summary across datasets\n\nthe earlier table\n\n## uci-har (complete)\n\nrows\n"
                   "\n## Notes\n\nby hand\n")
    recs = tmp_path / "powered"
    for m in powered.METHODS:
        for s in range(2):
            records.save(str(recs / "uci-har"), m, s, _record(0.9 + 0.01 * s + 0.001 * len(m)))
    (recs / "deviations.md").write_text("seed 7 of hapt ran twice: a kill.")
    text = evidence.report(str(tmp_path / "no-runs"), str(doc), powered_records=str(recs),
                           released_records=str(tmp_path / "released"))
    assert text.index("## The powered answer") < text.index("## Summary across datasets") < text.index("## Notes")
    assert "the earlier table" in text and "rows" in text and text.endswith("## Notes\n\nby hand\n")
    assert "### uci-har (INCOMPLETE: 10 of 150 runs finished" in text and "seed 7 of hapt ran twice" in text
    assert "### hapt (INCOMPLETE: 0 of 150 runs finished" in text and "No run has finished yet." in text
    assert os.path.exists(tmp_path / "powered-uci-har.png") and not os.path.exists(tmp_path / "powered-hapt.png")
    assert evidence.report(str(tmp_path / "no-runs"), str(doc), powered_records=str(recs),
                           released_records=str(tmp_path / "released")) == text      # rewriting changes nothing
    os.remove(tmp_path / "powered-uci-har.png")
    monkeypatch.chdir(tmp_path)                         # a document in the working folder: its figures beside it
    evidence.report("no-runs", "results.md", powered_records="powered", released_records="released")
    assert os.path.exists(tmp_path / "powered-uci-har.png")


def test_the_study_grids_run_the_pre_registered_budgets():
    p = compare.budget(evidence.study_args("powered", "uci-har", "runs/x"))
    assert {k: p[k] for k in evidence.BASE} == evidence.BASE and p["min_steps_per_epoch"] == 0
    a = evidence.study_args("powered", "hapt", "runs/x")
    assert a.seeds == list(range(30)) and a.records == os.path.join("evidence", "powered", "hapt")
    assert set(compare.VARIANTS) >= set(a.variants) and len(a.variants) == 4     # the student alone always runs
    r = evidence.study_args("released", "uci-har", "runs/x")
    assert compare.budget(r) == RELEASED_RECIPE and r.seeds == [0, 1, 2, 3, 4]
    assert r.records == os.path.join("evidence", "released", "uci-har")
    with pytest.raises(SystemExit, match="study's datasets are uci-har, hapt"):
        evidence.main(["--powered", "--datasets", "watch", "--out", "/nonexistent/never-written"])


def test_the_released_table_pairs_finished_seeds_and_names_failed_runs(tmp_path):
    folder = str(tmp_path / powered.RELEASED["dataset"])
    accs = {"student alone": [0.90, 0.91], "KD (Hinton)": [0.92, 0.92], "SMLDist": [0.93, float("nan")]}
    for m, values in accs.items():
        for s, acc in enumerate(values):
            records.save(folder, m, s, _record(acc))
    text = powered.released_table(str(tmp_path))
    assert f"INCOMPLETE: 5 of {len(powered.RELEASED['methods']) * len(powered.RELEASED['seeds'])} runs" in text
    assert "| student alone | 2 | 0.9050 ± 0.0071 |" in text
    assert "| SMLDist | 1 | 0.9300 | 0.9300 | +3.00 — | +1.00 — |" in text       # one pair: no interval
    assert "| KD (Hinton) | 2 | 0.9200 ± 0.0000 | 0.9200 ± 0.0000 | +1.50 [" in text
    assert "Failed runs (to be re-run, never dropped): SMLDist seed 1." in text
    assert "No run has finished yet." in powered.released_table(str(tmp_path / "none"))
    assert "What a claim" not in text                           # no question has two paired seeds


def test_the_released_table_says_how_many_seeds_a_one_point_interval_would_need(tmp_path):
    folder = str(tmp_path / powered.RELEASED["dataset"])
    accs = {"student alone": [0.90, 0.91, 0.92], "SMLDist": [0.92, 0.92, 0.95]}   # d = 2, 1, 3 points: sd 1
    for m, values in accs.items():
        for s, acc in enumerate(values):
            records.save(folder, m, s, _record(acc))
    text = powered.released_table(str(tmp_path))
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)            # by hand: 2.48 points
    need = next(n for n in range(2, 100) if stats.t.ppf(0.975, n - 1) * 0.01 / math.sqrt(n) <= 0.01)
    assert need == 7
    assert (f"SMLDist - student alone: ±{100 * half:.2f} points at 3 seeds, ±1 would need {need}." in text
            and f"`tinysml power --grid {folder} --half-width 0.01`" in text)
    assert "KD" not in text.split("What a claim")[1]               # H2 and H3 have no pairs yet

    for s, acc in enumerate([1.0, 0.0, 1.0]):                     # d = +10, -91, +8 points: no study here narrows that
        records.save(folder, "SMLDist", s, _record(acc))
    assert "±1 would need over 1000." in powered.released_table(str(tmp_path))
