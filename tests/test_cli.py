import json

import pytest

from tinysml.cli import main


def test_data_list_and_info(capsys):
    assert main(["data", "list"]) == 0
    assert "basicmotions" in capsys.readouterr().out
    assert main(["data", "info", "basicmotions"]) == 0
    assert "40 train / 40 test" in capsys.readouterr().out


def test_train_then_evaluate(tmp_path, capsys):
    out = str(tmp_path / "s.npz")
    assert main(["train", "--preset", "har-student", "--epochs", "2", "--out", out, "--quiet",
                 "--label-smoothing", "0.1", "--jitter", "0.05", "--scale", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] > 0 and 0 <= result["test"]["accuracy"] <= 1
    assert main(["evaluate", out]) == 0
    assert "macro_f1" in capsys.readouterr().out
    assert main(["export", out, "--out", str(tmp_path / "d.npz")]) == 0
    assert "classes" in capsys.readouterr().out
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    assert main(["export", out, "--out", str(tmp_path / "s.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "checked with onnxruntime before writing: max |logit difference|" in printed
    assert float(printed.split("difference|")[1].split()[0]) < 1e-4 and (tmp_path / "s.onnx").stat().st_size > 0


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "info", "nope"]) == 2


def test_pipeline_flags_reach_the_config():
    from tinysml.cli import _config_from_args, build_parser
    args = build_parser().parse_args(["distill", "--out", "r", "--method", "kd", "--teacher-epochs", "7",
                                      "--teacher-label-smoothing", "0.1", "--teacher-jitter", "0.05",
                                      "--teacher-scale", "0.2", "--no-stage"])
    cfg = _config_from_args(args)
    assert (cfg.method, cfg.teacher_epochs, cfg.use_stage) == ("kd", 7, False)
    assert (cfg.teacher_label_smoothing, cfg.teacher_jitter, cfg.teacher_scale) == (0.1, 0.05, 0.2)
    assert cfg.student_epochs == 30          # a flag not given keeps the config's default


def test_evaluate_works_on_every_file_the_cli_writes(tmp_path, capsys):
    """A teacher (train-teacher), a student (distill) and its export (deploy file): each records its
    dataset, and the exported file scores exactly as the student it came from."""
    common = ["--dataset", "basicmotions", "--teacher-epochs", "2", "--batch-size", "16", "--quiet"]
    assert main(["train-teacher", *common, "--out", str(tmp_path / "t")]) == 0
    assert main(["distill", *common, "--method", "none", "--student-epochs", "2", "--teacher",
                 str(tmp_path / "t" / "teacher.npz"), "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run" / "student.npz"), "--out", str(tmp_path / "student.deploy.npz")]) == 0
    capsys.readouterr()
    scores = {}
    for name in ("t/teacher.npz", "run/student.npz", "student.deploy.npz"):
        assert main(["evaluate", str(tmp_path / name)]) == 0, name
        printed = capsys.readouterr().out
        scores[name] = json.loads(printed[:printed.index("}") + 1])
        assert scores[name]["dataset"] == "basicmotions" and scores[name]["test_windows"] == 40
        assert "Badminton" in printed                                   # the per-class report
    assert scores["student.deploy.npz"]["accuracy"] == scores["run/student.npz"]["accuracy"]
    assert scores["t/teacher.npz"]["kind"] == "model" and scores["student.deploy.npz"]["kind"] == "deploy"


def test_help_shows_defaults_and_only_the_options_that_apply(capsys):
    import pytest as _pytest
    for argv in (["distill", "--help"], ["train-teacher", "--help"]):
        with _pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "(default: 30)" in out and "(default: basicmotions)" in out and "tinysml data list" in out
        assert ("--student-epochs" in out) == (argv[0] == "distill") and ("--mu" in out) == (argv[0] == "distill")
    with _pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("tinysml 0.1.0")


def test_the_cli_reference_is_what_the_commands_print():
    """docs/cli.md is regenerated from the parsers (its first lines say how); an option, default or
    help text changed without it fails here."""
    import re
    import sys
    from pathlib import Path
    from tinysml.cli_reference import reference
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    written = re.search(r"under Python (\d+)\.(\d+)", text)
    if (int(written[1]), int(written[2])) != sys.version_info[:2]:
        pytest.skip(f"docs/cli.md was written under Python {written[1]}.{written[2]}")
    assert reference() == text
