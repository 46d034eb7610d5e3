"""The pre-registered study (tinysml/powered.py): the decision rule at its edges, the analysis
against a hand computation of the Bonferroni-adjusted t interval, no verdict before every run has
finished, failed runs named and not analysed, and the study grids' budgets."""
import math
import os

import numpy as np
import pytest
from scipy import stats

from tinysml import compare, evidence, evidence_plan, evidence_report, powered, records
from tinysml.distill.pipeline import RELEASED_RECIPE


@pytest.mark.parametrize("interval, expected", [
    ((0.001, 0.03), "supported"),                       # above 0, even though it reaches past one point
    ((0.0001, 0.005), "supported"),                     # above 0 and inside +-1: above 0 wins
    ((-0.03, -0.001), "contradicted"),
    ((-0.01, 0.01), "no difference that matters"),      # the band's edges belong to it
    ((-0.004, 0.006), "no difference that matters"),
    ((-0.004, 0.0101), "not resolved"),                 # includes 0 and reaches past one point
    ((-0.02, 0.0), "not resolved"),                    # touches 0: not below it
    ((0.0, 0.02), "not resolved"),                      # touches 0: not above it
    ((0.0, 0.005), "no difference that matters")])
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
    assert powered.failed({"student": {}}) and powered.failed({"config": {}})   # so are the test scores, or all
    assert not powered.failed(_record(0.9))


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
    text = evidence_report.report(str(tmp_path / "no-runs"), str(doc), powered_records=str(recs),
                           released_records=str(tmp_path / "released"))
    assert text.index("## The powered answer") < text.index("## Summary across datasets") < text.index("## Notes")
    assert "the earlier table" in text and "rows" in text and text.endswith("## Notes\n\nby hand\n")
    assert "### uci-har (INCOMPLETE: 10 of 150 runs finished" in text and "seed 7 of hapt ran twice" in text
    assert "### hapt (INCOMPLETE: 0 of 150 runs finished" in text and "No run has finished yet." in text
    assert os.path.exists(tmp_path / "powered-uci-har.png") and not os.path.exists(tmp_path / "powered-hapt.png")
    assert evidence_report.report(str(tmp_path / "no-runs"), str(doc), powered_records=str(recs),
                           released_records=str(tmp_path / "released")) == text      # rewriting changes nothing
    os.remove(tmp_path / "powered-uci-har.png")
    monkeypatch.chdir(tmp_path)                         # a document in the working folder: its figures beside it
    evidence_report.report("no-runs", "results.md", powered_records="powered", released_records="released")
    assert os.path.exists(tmp_path / "powered-uci-har.png")


def test_the_study_grids_run_the_pre_registered_budgets():
    p = compare.budget(evidence.study_args("powered", "uci-har", "runs/x"))
    assert {k: p[k] for k in evidence_plan.BASE} == evidence_plan.BASE and p["min_steps_per_epoch"] == 0
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


def _study(values: dict, seeds=range(3)) -> dict:
    """{method: {seed: record}}: test accuracy per seed; SMLDist's macro-F1 is its accuracy - seed / 100."""
    return {m: {s: _record(v[s], v[s] - 0.01 * s if m == "SMLDist" else None) for s in seeds} for m, v in values.items()}


# alone +2 points = SMLDist, +2 = KD; ours = SMLDist within 0.1; FitNets spread wide
STUDY = {"student alone": [0.90, 0.92, 0.91], "SMLDist": [0.92, 0.941, 0.929], "KD (Hinton)": [0.94, 0.962, 0.948],
         "SMLDist, direct logits loss [ours]": [0.921, 0.940, 0.929], "FitNets": [0.95, 0.88, 0.91]}


def test_a_complete_dataset_reads_exactly_so():
    """Each verdict once, every interval, the means and the failed runs, as docs/results.md shows them
    (checked by hand for H1: d = 2.0, 2.1, 1.9 points, sd 0.1; t_{0.975,2} = 4.303 gives +-0.25 and
    t_{0.99375,2} = 8.860 gives +-0.51). A run of a seed outside the study is not counted or paired."""
    found = _study(STUDY)
    for m in found:
        found[m][7] = _record(0.5)
    text, rows = powered.dataset_table("hapt", found, ["FitNets seed 3", "SMLDist seed 4"], seeds=range(3))
    assert stats.t.ppf(0.975, 2) * 0.001 / math.sqrt(3) == pytest.approx(0.0025, abs=5e-5)
    assert [r["seeds"] for r in rows] == [[0, 1, 2]] * 4
    assert text == """### hapt (complete)

Test accuracy, paired by seed, in points; decisions on the 98.75% (Bonferroni) interval.

| hypothesis | seeds | mean difference | 98.75% interval | verdict | 95% interval (decides nothing) | macro-F1: mean, 98.75% interval |
|---|---|---|---|---|---|---|
| H1: SMLDist - student alone | 3 | +2.00 | [+1.49, +2.51] | **supported** | [+1.75, +2.25] | +1.00 [-4.39, +6.39] |
| H2: SMLDist - KD (Hinton) | 3 | -2.00 | [-2.51, -1.49] | **contradicted** | [-2.25, -1.75] | -3.00 [-7.88, +1.88] |
| H3: SMLDist, direct logits loss [ours] - SMLDist | 3 | +0.00 | [-0.51, +0.51] | **no difference that matters** | [-0.25, +0.25] | +1.00 [-3.88, +5.88] |
| H4: FitNets - student alone | 3 | +0.33 | [-22.73, +23.40] | **not resolved** | [-10.87, +11.53] | +0.33 [-22.73, +23.40] |

Mean test accuracy ± sample std over seeds (seeds finished): student alone 0.9100 ± 0.0100 (3); KD (Hinton) 0.9500 ± 0.0111 (3); FitNets 0.9133 ± 0.0351 (3); SMLDist 0.9300 ± 0.0105 (3); SMLDist, direct logits loss [ours] 0.9300 ± 0.0095 (3).

Failed runs (to be re-run, never dropped): FitNets seed 3, SMLDist seed 4."""


def test_a_study_of_any_seeds_pairs_those_seeds():
    found = {m: {40 + s: r for s, r in by_seed.items()} for m, by_seed in _study(STUDY).items()}
    text, rows = powered.dataset_table("hapt", found, [], seeds=[40, 41, 42])
    assert [r["seeds"] for r in rows] == [[40, 41, 42]] * 4 and "| H1: SMLDist - student alone | 3 | +2.00 |" in text


def test_an_incomplete_dataset_lists_every_hypothesis_and_decides_none():
    found = _study({m: v for m, v in STUDY.items() if m != "SMLDist"})     # SMLDist not started: H1-H3 unpaired
    text, _ = powered.dataset_table("uci-har", found, [], seeds=range(3))
    table = text.split("\n\n")[2].splitlines()[2:]
    assert table == ["| H1: SMLDist - student alone | 0 | — | — | no runs yet | — | — |",
                     "| H2: SMLDist - KD (Hinton) | 0 | — | — | no runs yet | — | — |",
                     "| H3: SMLDist, direct logits loss [ours] - SMLDist | 0 | — | — | no runs yet | — | — |",
                     "| H4: FitNets - student alone | 3 | +0.33 | [-22.73, +23.40] | **waits for every run** | "
                     "[-10.87, +11.53] | +0.33 [-22.73, +23.40] |"]
    assert text.startswith("### uci-har (INCOMPLETE: 12 of 15 runs finished; interim, no verdict)")


def test_a_difference_that_rounds_to_zero_reads_plus_zero():
    assert powered._pts(-1e-17) == "+0.00" and powered._pts(-0.00004) == "+0.00" and powered._pts(-0.0001) == "-0.01"
    assert powered._interval((-0.0123, 0.0456)) == "[-1.23, +4.56]" and powered._interval(None) == "—"


def test_the_section_reads_exactly_so_around_its_tables(tmp_path, monkeypatch):
    """The head paragraph, a figure under docs/ of the working folder by default, each dataset's
    failed runs, the deviations (or "None so far."), then the released budget."""
    monkeypatch.chdir(tmp_path)
    recs = tmp_path / "powered"
    for m, values in STUDY.items():
        for s, acc in enumerate(values):
            records.save(str(recs / "uci-har"), m, s, _record(acc))
    records.save(str(recs / "uci-har"), "FitNets", 3, _record(float("nan")))
    drawn = []
    real = powered.forest_plot
    monkeypatch.setattr(powered, "forest_plot", lambda *a, **kw: drawn.append((a, kw)) or real(*a, **kw))
    text = powered.section(str(recs), str(tmp_path / "released"))
    ((args, kw),) = drawn                                              # hapt has no run: no figure
    assert args[0] == "uci-har" and args[2] == os.path.join("docs", "powered-uci-har.png")
    assert [r["hypothesis"] for r in args[1]] == ["H1", "H2", "H3", "H4"] and args[1][0]["seeds"] == [0, 1, 2]
    assert kw == {"level": powered.LEVEL, "margin": 0.01}
    assert text.startswith("""## The powered answer (pre-registered)

The study of `docs/preregistration.md`, committed before its first run: uci-har and hapt, seeds 0-29, the student \
alone, KD, FitNets, SMLDist and our direct-logits variant at the project's budget, one teacher per seed. Produced by \
`tinysml evidence --powered` (the runs) and `tinysml evidence --report-only` (this section, from the records \
committed under `evidence/powered/`). H1: SMLDist vs the student alone; H2: SMLDist vs KD; H3: ours vs SMLDist; H4: \
FitNets vs the student alone. Verdicts by the pre-registered rule on the Bonferroni-adjusted 98.75% interval: \
supported (above 0), contradicted (below 0), no difference that matters (includes 0, within ±1 point), not resolved.

### uci-har (INCOMPLETE: 15 of 150 runs finished; interim, no verdict)

""")
    assert os.path.exists(tmp_path / "docs" / "powered-uci-har.png")
    assert ("Failed runs (to be re-run, never dropped): FitNets seed 3.\n\n"
            "![uci-har: paired differences per seed](powered-uci-har.png)\n\n### hapt (INCOMPLETE: 0 of 150") in text
    assert text.endswith("""### Deviations from the plan

None so far.

### The authors' released budget, uci-har (exploratory; INCOMPLETE: 0 of 20 runs finished)

Batch 256; teacher and final phase 200 epochs of Ranger (lr 1e-3) with ReduceLROnPlateau; each stage anchor 200 \
epochs of Adam (lr 1e-4) over every student parameter; selection on the validation split. Produced by `tinysml \
evidence --released`.

No run has finished yet.
""")
    (recs / "deviations.md").write_text("  Seed 4 ran on another machine: ±0 change.\n", encoding="utf-8")
    assert "### Deviations from the plan\n\nSeed 4 ran on another machine: ±0 change.\n\n### The authors'" in \
        powered.section(str(recs), str(tmp_path / "released"))


def test_the_released_table_reads_exactly_so(tmp_path):
    """A method with no run keeps its row; accuracy and macro-F1 in their own columns; a method is
    not compared with itself; two paired seeds are enough for the power line (checked by hand:
    d = 3, 2 points, sd 0.707, t_{0.975,1} = 12.706 gives +-6.35; 5 seeds give 2.776 * 0.707 /
    sqrt(5) = 0.88 <= 1 point where 4 give 1.125)."""
    folder = str(tmp_path / "uci-har")
    for s, (acc, f1) in enumerate([(0.90, 0.89), (0.92, 0.90)]):
        records.save(folder, "student alone", s, _record(acc, f1))
    for s, (acc, f1) in enumerate([(0.93, 0.91), (0.94, 0.93)]):
        records.save(folder, "SMLDist", s, _record(acc, f1))
    records.save(folder, "SMLDist, direct logits loss [ours]", 0, _record(0.95, 0.94))
    text = powered.released_table(str(tmp_path))
    assert text.split("\n\n", 2)[2] == f"""| method | seeds | test accuracy | test macro-F1 | vs student alone, points (95%) | vs KD, points (95%) |
|---|---|---|---|---|---|
| student alone | 2 | 0.9100 ± 0.0141 | 0.8950 ± 0.0071 | — | — |
| KD (Hinton) | 0 | — | — | — | — |
| SMLDist | 2 | 0.9350 ± 0.0071 | 0.9200 ± 0.0141 | +2.50 [-3.85, +8.85] | — |
| SMLDist, direct logits loss [ours] | 1 | 0.9500 | 0.9400 | +5.00 — | — |

What a claim at this budget would need (95% paired intervals; paired standard deviation as measured here, \
`tinysml power --grid {folder} --half-width 0.01`): SMLDist - student alone: ±6.35 points at 2 seeds, ±1 would need 5."""
    records.save(folder, "KD (Hinton)", 0, _record(0.91))
    records.save(folder, "KD (Hinton)", 1, _record(0.92))
    text = powered.released_table(str(tmp_path))
    assert "SMLDist - student alone: ±6.35 points at 2 seeds, ±1 would need 5; SMLDist - KD (Hinton): ±" in text


def test_the_device_sensitivity_pairs_the_seeds_each_device_ran():
    """Seeds 0-1 on the CPU (seed 0's record names no device: the CPU), 2-3 on a GPU, by the
    method's record: each device's adjusted interval over its own seeds, and the report's line."""
    fit, alone = [0.95, 0.93, 0.90, 0.94], [0.92, 0.92, 0.91, 0.90]
    found = {"FitNets": {0: {"student": {"test": {"accuracy": fit[0], "macro_f1": fit[0]}}}, 1: _record(fit[1]),
                         2: _record(fit[2], device="cuda"), 3: _record(fit[3], device="cuda")},
             "student alone": {s: _record(v) for s, v in enumerate(alone)}}
    h4 = powered.analyse(found, seeds=range(4))[3]
    for device, seeds in (("cpu", [0, 1]), ("cuda", [2, 3])):
        d = np.array([fit[s] - alone[s] for s in seeds])
        half = stats.t.ppf(1 - 0.05 / 8, 1) * d.std(ddof=1) / math.sqrt(2)
        mean, ci = h4["by_device"][device]
        assert mean == pytest.approx(d.mean()) and ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert set(h4["by_device"]) == {"cpu", "cuda"}
    found["SMLDist"] = {s: _record(0.93) for s in range(3)}              # H1 too, on the CPU only
    text, rows = powered.dataset_table("uci-har", found, [], seeds=range(4))
    h1 = powered._interval(rows[0]["by_device"]["cpu"][1])
    cpu, cuda = (powered._interval(h4["by_device"][dev][1]) for dev in ("cpu", "cuda"))
    assert text.startswith("### uci-har (INCOMPLETE") and text.endswith(
        f"SMLDist 0.9300 ± 0.0000 (3).\n\nSensitivity (pre-registered), the adjusted interval over the seeds each "
        f"device ran: H1 cpu {h1}; H4 cpu {cpu}, cuda {cuda}.")                                       # H2, H3 have no pairs: left out
    assert "Sensitivity" not in powered.dataset_table("uci-har", _study(STUDY), [], seeds=range(3))[0]   # one device


def test_an_empty_pairing_gives_nan_without_a_warning():
    import warnings
    from tinysml.power import paired_ci
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, ci = paired_ci([], [])
    assert math.isnan(mean) and ci is None


def test_the_released_heading_counts_its_own_seeds_and_lists_failed_runs(tmp_path):
    folder = str(tmp_path / powered.RELEASED["dataset"])
    for m in powered.RELEASED["methods"]:
        for s in range(5):
            records.save(folder, m, s, _record(0.9 + 0.01 * s))
        records.save(folder, m, 7, _record(0.5))                     # a seed outside the released five
    text = powered.released_table(str(tmp_path))
    assert text.startswith("""### The authors' released budget, uci-har (exploratory; complete)

Batch 256; teacher and final phase 200 epochs of Ranger (lr 1e-3) with ReduceLROnPlateau; each stage anchor 200 \
epochs of Adam (lr 1e-4) over every student parameter; selection on the validation split. Produced by `tinysml \
evidence --released`.

| method | seeds |""")
    assert "| student alone | 5 | 0.9200 ± 0.0158 |" in text
    for m, s in (("KD (Hinton)", 1), ("SMLDist", 4)):
        records.save(folder, m, s, _record(float("nan")))
    text = powered.released_table(str(tmp_path))
    assert "(exploratory; INCOMPLETE: 18 of 20 runs finished)" in text
    assert text.endswith(".\n\nFailed runs (to be re-run, never dropped): KD (Hinton) seed 1, SMLDist seed 4.")
