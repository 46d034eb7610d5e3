"""The evidence document (tinysml/evidence_report.py) piece by piece, against tables worked out by
hand: a dataset's section (protocol, budget, every row's mean ± spread, paired intervals against
the student alone and KD, the still-improving flags, the ablations against SMLDist, the INCOMPLETE
count), the cross-dataset summary and its generated verdict, and what the report keeps of an
existing document.
(The plan and the commands: tests/test_evidence_commands.py; a tiny plan end to end:
tests/test_evidence.py.)

The accuracies are chosen so that every interval is simple: differences that are equal on every
seed give a zero-width interval; differences 0.02, 0.03, 0.04 over three seeds have mean 0.03 and
standard deviation 0.01, so the 95% interval is 0.03 ± t(0.975, 2) · 0.01 / √3 = 0.03 ± 0.0248
(t = 4.3027); two seeds use t(0.975, 1) = 12.706."""
import os

import pytest

from tinysml import evidence_report, io

FLAT = [0.5, 0.9, 0.9, 0.9, 0.9]                                             # peaked early: not improving
RISING = [0.5, 0.7, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.95]          # best at the end, by 5 points


def _student(acc, f1, history=FLAT):
    return {"student": {"test": {"accuracy": acc, "macro_f1": f1}}, "history": [{"macro_f1": v} for v in history]}


def _teacher(acc, f1, run_dir):
    return {"teacher": {"test": {"accuracy": acc, "macro_f1": f1}}, "run_dir": str(run_dir)}


@pytest.fixture
def found(tmp_path):
    """Three seeds; FitNets never ran; one ablation finished two seeds; SMLDist's seeds 1 and 2 and
    the teacher's seed 2 were still improving."""
    teacher_dirs = [tmp_path / f"teacher{s}" for s in range(3)]
    for d in teacher_dirs:
        d.mkdir()
    io.save(str(teacher_dirs[2] / "teacher.train.npz"), {"history": [{"macro_f1": v} for v in RISING]})
    io.save(str(teacher_dirs[0] / "teacher.train.npz"), {"history": [{"macro_f1": v} for v in FLAT]})
    return {
        "teacher": {s: _teacher(a, f, teacher_dirs[s]) for s, (a, f) in enumerate([(0.90, 0.89), (0.92, 0.91), (0.94, 0.93)])},
        "student alone": {s: _student(a, f) for s, (a, f) in enumerate([(0.80, 0.79), (0.82, 0.81), (0.84, 0.83)])},
        "KD (Hinton)": {s: _student(a, f) for s, (a, f) in enumerate([(0.82, 0.81), (0.84, 0.83), (0.86, 0.85)])},
        "SMLDist": {0: _student(0.82, 0.81), 1: _student(0.85, 0.84, RISING), 2: _student(0.88, 0.87, RISING)},
        "SMLDist, no memory loss": {0: _student(0.85, 0.84), 1: _student(0.83, 0.82)},
    }


VARIANTS = ["student alone", "KD (Hinton)", "FitNets", "SMLDist", "SMLDist, no memory loss"]
SIZES = {"subjects": True, "classes": 6, "train": 1000, "val": 200, "test": 500}

SECTION = """\
## uci-har (INCOMPLETE: 14 of 18 runs finished)

Protocol: subject-wise: the test subjects are never trained on; the validation split is carved from the training subjects. 6 classes; 1000 training, 200 validation and 500 test windows (seed 0's split): every model selection here was made on 200 validation windows.
Budget: a pass over the training windows is 16 steps of 64; every epoch runs at least 64 steps (4 passes), so the students' 15 epochs are 960 steps.

Produced by

    tinysml evidence --out runs/e --doc d.md --datasets uci-har

| model | seeds | test accuracy | test macro-F1 | vs student alone, points (95% CI) | vs KD, points (95% CI) | still improving |
|---|---|---|---|---|---|---|
| teacher | 3 | 0.9200 ± 0.0200 | 0.9100 ± 0.0200 | +10.0 [+10.0, +10.0] | +8.0 [+8.0, +8.0] | seed 2 |
| student alone | 3 | 0.8200 ± 0.0200 | 0.8100 ± 0.0200 | — | -2.0 [-2.0, -2.0] | no |
| KD (Hinton) | 3 | 0.8400 ± 0.0200 | 0.8300 ± 0.0200 | +2.0 [+2.0, +2.0] | — | no |
| FitNets | 0 | — | — | — | — | — |
| SMLDist | 3 | 0.8500 ± 0.0300 | 0.8400 ± 0.0300 | +3.0 [+0.5, +5.5] | +1.0 [-1.5, +3.5] | seed 1, seed 2 |
| SMLDist, no memory loss | 2 | 0.8400 ± 0.0141 | 0.8300 ± 0.0141 | +3.0 [-22.4, +28.4] | +1.0 [-24.4, +26.4] | no |

Against SMLDist itself (test accuracy points, paired by seed; 95% CI, then seed by seed):

| variant | vs SMLDist (95% CI) | per seed |
|---|---|---|
| SMLDist, no memory loss | +0.5 [-31.3, +32.3] | +3.0, -2.0 |

Test accuracy and macro-F1: mean ± sample std (n - 1) over the finished seeds. Differences: paired by seed, in accuracy points, with a 95% confidence interval from Student's t over the seeds both rows have finished. "Still improving": the seeds whose best validation macro-F1 came in the last fifth of the final phase and beat all earlier epochs by more than 0.5 points.
"""


def test_a_dataset_section_is_the_table_worked_out_by_hand(found):
    text, stats = evidence_report.dataset_section("uci-har", found, [0, 1, 2], VARIANTS, SIZES,
                                           evidence_report._command("uci-har", "runs/e", "d.md"))
    assert text == SECTION
    assert set(stats) == {"teacher", "student alone", "KD (Hinton)", "SMLDist", "SMLDist, no memory loss"}
    assert stats["SMLDist"]["accuracy"] == pytest.approx(0.85)
    mean, ci, n = stats["SMLDist"]["alone"]
    assert mean == pytest.approx(0.03) and ci == pytest.approx((0.03 - 0.024842, 0.03 + 0.024842), abs=1e-6) and n == 3
    assert stats["SMLDist, no memory loss"]["kd"][2] == 2                   # paired over the seeds both finished
    assert "kd" not in stats["KD (Hinton)"] and "alone" not in stats["student alone"]


def test_a_complete_section_and_the_dataset_own_split(found):
    found = {k: v for k, v in found.items() if k != "SMLDist, no memory loss"}
    sizes = {"subjects": False, "classes": 4, "train": 10000, "val": 2000, "test": 3000}
    text, _ = evidence_report.dataset_section("watch", found, [0, 1, 2], ["student alone", "KD (Hinton)", "SMLDist"], sizes,
                                       "cmd")
    assert text.startswith("## watch (complete)\n\nProtocol: the dataset's own train/test split; validation carved "
                           "from the training windows. 4 classes; 10000 training, 2000 validation and 3000 test windows")
    assert "Budget: a pass over the training windows is 157 steps of 64; the students' 15 epochs are 2355 steps.\n" in text
    assert "Against SMLDist itself" not in text                              # no variant of SMLDist ran


def test_a_variant_with_no_seed_in_common_with_smldist_is_not_paired():
    rows = evidence_report._against_smldist({"SMLDist": {0: _student(0.8, 0.8)},
                                      "SMLDist, no stage phase": {1: _student(0.9, 0.9)},
                                      "SMLDist + head search": {}}, ["SMLDist", "SMLDist, no stage phase",
                                                                     "SMLDist + head search"])
    assert rows == []
    rows = evidence_report._against_smldist({"SMLDist": {0: _student(0.8, 0.8)},
                                      "SMLDist, no stage phase": {1: _student(0.9, 0.9)},       # skipped, then
                                      "SMLDist, no memory loss": {0: _student(0.7, 0.7)}},      # the next is paired
                                     ["SMLDist, no stage phase", "SMLDist, no memory loss"])
    assert rows[-1] == "| SMLDist, no memory loss | -10.0 (1 seed) | -10.0 |" and len(rows) == 6
    assert evidence_report._against_smldist({"SMLDist, no memory loss": {0: _student(0.7, 0.7)}},     # SMLDist never ran
                                     ["SMLDist", "SMLDist, no memory loss"]) == []
    one = evidence_report._against_smldist({"SMLDist": {0: _student(0.8, 0.8)}, "SMLDist, no stage phase": {0: _student(0.9, 0.9)}},
                                    ["SMLDist", "SMLDist, no stage phase"])
    assert one[-1] == "| SMLDist, no stage phase | +10.0 (1 seed) | +10.0 |"


def test_intervals_are_written_in_points_with_signs():
    assert evidence_report._fmt(0.0123, (-0.004, 0.0286)) == "+1.2 [-0.4, +2.9]"
    assert evidence_report._fmt(-0.05, None) == "-5.0 (1 seed)"


def test_a_section_without_the_references_has_no_differences():
    found = {"SMLDist": {0: _student(0.8, 0.8), 1: _student(0.9, 0.9)}}                 # no student alone, no KD
    text, stats = evidence_report.dataset_section("hapt", found, [0, 1], ["student alone", "KD (Hinton)", "SMLDist"],
                                           SIZES, "cmd")
    assert "| student alone | 0 | — | — | — | — | — |\n| KD (Hinton) | 0 | — | — | — | — | — |\n" in text
    assert "| SMLDist | 2 | 0.8500 ± 0.0707 | 0.8500 ± 0.0707 | — | — | no |" in text
    assert stats == {"SMLDist": {"accuracy": pytest.approx(0.85)}}
    assert "## hapt (INCOMPLETE: 2 of 8 runs finished)" in text                     # 4 rows (teacher too) x 2 seeds


def test_a_teacher_without_its_training_history_is_not_flagged(tmp_path):
    assert evidence_report._history(_teacher(0.9, 0.9, tmp_path), "teacher") == []
    assert evidence_report._history(_student(0.9, 0.9, RISING), "KD (Hinton)") == [{"macro_f1": v} for v in RISING]


STATS_2 = {"teacher": {"accuracy": 0.9}, "student alone": {"accuracy": 0.70},
           "KD (Hinton)": {"accuracy": 0.75, "alone": (0.05, (0.01, 0.09), 3)},
           "SMLDist": {"accuracy": 0.72, "alone": (0.02, (-0.01, 0.05), 3), "kd": (-0.03, (-0.05, -0.01), 3)},
           "SMLDist, no memory loss": {"accuracy": 0.76, "alone": (0.06, None, 1)}}


def test_the_summary_counts_wins_and_best_means_and_generates_its_verdict(found):
    _, stats_1 = evidence_report.dataset_section("uci-har", found, [0, 1, 2], VARIANTS, SIZES, "cmd")
    means = {"SMLDist, no frequency term": 0.8, "SMLDist, no memory loss": 0.9}
    text = evidence_report.summary_section({"uci-har": stats_1, "hapt": STATS_2}, "SMLDist, no memory loss", means)
    lines = text.split("\n")
    assert lines[:4] == [
        "## Summary across datasets", "",
        "Paired difference in test accuracy (points; 95% CI over seeds) against the student alone, and in brackets "
        "against KD. A dataset counts as a win when the interval against the student alone lies above zero; \"of N\" "
        "counts the datasets where the method has finished runs.", ""]
    assert lines[4] == "| method | uci-har | hapt | wins vs student alone | best student mean |"
    assert lines[5] == "|---|---|---|---|---|"
    assert lines[6:11] == [
        "| KD (Hinton) | +2.0 [+2.0, +2.0] | +5.0 [+1.0, +9.0] | 2 of 2 | 0 |",
        "| FitNets | — | — | 0 of 0 | 0 |",
        "| AT | — | — | 0 of 0 | 0 |",
        "| SMLDist | +3.0 [+0.5, +5.5] (+1.0 [-1.5, +3.5] vs KD) | +2.0 [-1.0, +5.0] (-3.0 [-5.0, -1.0] vs KD) | 1 of 2 | 1 |",
        "| SMLDist, no memory loss (ours, chosen on uci-har validation) | +3.0 [-22.4, +28.4] (+1.0 [-24.4, +26.4] vs KD) "
        "| +6.0 (1 seed) | 0 of 2 | 1 |"]
    assert ("The variant of ours is **SMLDist, no memory loss**, chosen on uci-har's validation split (mean validation "
            "macro-F1 over the seeds every candidate had finished when the choice was made: SMLDist, no memory loss "
            "0.9000, SMLDist, no frequency term 0.8000).") in lines
    assert lines[11:14] == ["", lines[12], ""] and lines[12].startswith("The variant of ours is **")
    assert lines[14].startswith("**Verdict**") and lines[15:] == [""]
    assert ("**Verdict** (generated from the table above): SMLDist's interval against the student alone lies above "
            "zero on 1 of the 2 datasets where it has finished runs (of 2 planned); against KD it lies above zero on 0, "
            "below zero on 1, and includes zero on 1 of the 2 datasets where both ran. With 3-5 seeds an interval "
            "excludes zero only for effects of a point or more: where it includes zero, the evidence neither supports "
            "nor rules out a difference.") in lines


def test_the_summary_says_when_ours_is_provisional_or_not_chosen():
    provisional = evidence_report.summary_section({"hapt": STATS_2}, "SMLDist, direct logits loss [ours]", {"x": 0.5}, fixed=False)
    assert ("| SMLDist, direct logits loss [ours] (chosen on uci-har validation) | — | 0 of 0 | 0 |" in provisional)
    assert ("x 0.5000), provisionally: it is fixed (OUT/ours.json) when the first other dataset's grid starts, from "
            "the uci-har runs finished by then.") in provisional
    touching = {"student alone": {"accuracy": 0.7},                      # an interval from exactly 0: no win
                "SMLDist": {"accuracy": 0.72, "alone": (0.01, (0.0, 0.02), 3), "kd": (0.01, (0.0, 0.02), 3)}}
    below_touching = {"SMLDist": {"accuracy": 0.7, "alone": (0.03, (0.02, 0.04), 3), "kd": (-0.01, (-0.02, 0.0), 3)}}
    above = {"SMLDist": {"accuracy": 0.7, "alone": (0.03, (0.02, 0.04), 3), "kd": (0.02, (0.01, 0.03), 3)}}
    text = evidence_report.summary_section({"hapt": touching, "watch": {}, "uci-har": below_touching, "wisdm": above}, None, {})
    assert "| SMLDist | +1.0 [+0.0, +2.0] (+1.0 [+0.0, +2.0] vs KD) | — | " in text      # watch: nothing finished
    assert ("lies above zero on 2 of the 3 datasets where it has finished runs (of 4 planned); against KD it lies above "
            "zero on 1, below zero on 0, and includes zero on 2 of the 3 datasets where both ran.") in text
    none = evidence_report.summary_section({}, None, {})
    assert "The variant of ours is not chosen yet (uci-har's variant runs are not finished)." in none
    assert none.endswith("includes zero on 0 of the 0 datasets where both ran. \n")    # no datasets: no caveat
    assert "| SMLDist |  | 0 of 0 | 0 |" in none and len([line for line in none.split("\n") if line.startswith("| ")]) == 5


def test_the_report_keeps_an_existing_documents_earlier_sections_and_notes(tmp_path):
    doc = tmp_path / "results.md"
    assert evidence_report.kept_earlier(str(doc)) is None and evidence_report.kept_notes(str(doc)) == ""
    doc.write_text("# Results\n\nno sections yet\n")
    assert evidence_report.kept_earlier(str(doc)) is None and evidence_report.kept_notes(str(doc)) == ""
    doc.write_text("# Results\n\n## Summary across datasets\n\nold table\n\n## uci-har\n\nrows\n")
    assert evidence_report.kept_earlier(str(doc)) == "## Summary across datasets\n\nold table\n\n## uci-har\n\nrows\n"
    doc.write_text("# Results\n\n## Summary across datasets\n\nold table\n\n## Notes\n\nby hand\n")
    assert evidence_report.kept_earlier(str(doc)) == "## Summary across datasets\n\nold table\n"
    assert evidence_report.kept_notes(str(doc)) == "\n## Notes\n\nby hand\n"


def test_the_commands_the_document_names():
    assert evidence_report._command(None, "runs/evidence", "docs/results.md") == \
        "tinysml evidence --out runs/evidence --doc docs/results.md"
    assert evidence_report._command("hapt", "o", "d.md") == "tinysml evidence --out o --doc d.md --datasets hapt"


def test_the_document_is_read_as_utf8_whatever_the_locale(tmp_path):
    """The results carry "±" and "—": an existing document is read as UTF-8 even where the
    locale's encoding is ASCII (a C locale with Python's UTF-8 mode off)."""
    import subprocess
    import sys
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## Summary across datasets\n\n| a | 0.91 ± 0.01 | — |\n\n## Notes\n\n± by hand\n",
                   encoding="utf-8")
    code = ("import sys; from tinysml import evidence_report; "
            "sys.stdout.buffer.write((evidence_report.kept_earlier(sys.argv[1]) + evidence_report.kept_notes(sys.argv[1])).encode())")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code, str(doc)], env=env, capture_output=True, check=True).stdout
    assert out.decode() == "## Summary across datasets\n\n| a | 0.91 ± 0.01 | — |\n\n## Notes\n\n± by hand\n"
