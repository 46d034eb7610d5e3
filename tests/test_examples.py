"""The results script: a two-seed comparison on the built-in dataset writes the table it promises."""
import os
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare_writes_mean_spread_paired_deltas_and_per_seed_rows(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    doc = tmp_path / "docs" / "results.md"
    monkeypatch.setattr(sys, "argv", [
        "compare.py", "--dataset", "basicmotions", "--seeds", "0", "1", "--teacher-epochs", "1",
        "--student-epochs", "1", "--stage-epochs", "1", "--batch-size", "16", "--variants", "SMLDist",
        "--teacher-label-smoothing", "0.1", "--teacher-jitter", "0",
        "--out", str(tmp_path / "runs"), "--doc", str(doc)])
    runpy.run_path(os.path.join(ROOT, "examples", "compare.py"), run_name="__main__")
    text = doc.read_text()
    assert "mean ± sample std (n - 1) over seeds [0, 1]" in text
    summary = text.split("Every run, seed by seed")[0]
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert "±" in rows["SMLDist"] and "(paired by seed)" in text          # mean ± std and the paired delta
    assert rows["student alone"].count("—") == 1                           # no delta against itself
    assert "seed 1 test acc / val F1" in text                              # every run, seed by seed
    assert (tmp_path / "docs" / "confusion_smldist.png").exists() and (tmp_path / "docs" / "curves.png").exists()
    assert "--teacher-label-smoothing 0.1" in text                         # the command re-runs the recipe,
    assert "--teacher-jitter 0.0" in text                                  # zeros too (0 is not the default)
    assert "--variants SMLDist" in text                                    # ... and the same subset
    # a re-run (every run reused) regenerates the tables and keeps the hand-written analysis
    doc.write_text(text + "\n## What the table says\n\nSMLDist wins.\n")
    runpy.run_path(os.path.join(ROOT, "examples", "compare.py"), run_name="__main__")
    again = doc.read_text()
    assert again.count("## What the table says") == 1 and again.endswith("SMLDist wins.\n")
    assert again.startswith(text)
