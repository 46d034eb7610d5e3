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
