"""bench/gpu_check.py, the one prepared GPU verification: its no-GPU path, the parsing of the
benchmark it runs, and a dry run of every step that needs no GPU."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu_check  # noqa: E402

needs_no_gpu = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")


@needs_no_gpu
def test_without_a_gpu_it_says_so_in_one_line_with_status_3(tmp_path):
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh")], capture_output=True, text=True,
                          env=dict(os.environ, OUT=str(tmp_path / "out")), timeout=60)
    assert proc.returncode == gpu_check.NO_GPU == 3
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("gpu_check: no NVIDIA GPU here")
    assert not (tmp_path / "out").exists()


# bench/vs_torch.py's output on a GPU, as its print_table writes it (numbers made up)
GPU_OUTPUT = """
Totals
what                                         tinysml ms  torch ms   ratio   tinysml rate
all dw fwd layers (sum)                           0.110     0.090    1.22
training step, batch {B} (fwd+bwd+AdamW)            {ours:.3f}     2.000    {ratio:.2f}

depthwise kernels: best {gbs} GB/s = {pct}% of the device's 3350 GB/s (use --batch 1024 or more for the bandwidth target)
"""


@pytest.mark.parametrize("ours,pct,met", [(2.5, 61, (True, True)), (3.2, 30, (False, False))])
def test_the_targets_are_read_from_the_benchmark_output(ours, pct, met):
    check = gpu_check.Check("out", "work", 10, {})
    text = GPU_OUTPUT.format(B=64, ours=ours, ratio=ours / 2, gbs=pct * 33, pct=pct)
    gpu_check._bench_verdicts(check, text, 64, 2048)
    gpu_check._bench_verdicts(check, text.replace("batch 64", "batch 2048"), 2048, 2048)
    step, bandwidth = check.notes
    assert step.startswith(f"- {'met' if met[0] else 'MISSED'}: training step at batch 64 vs torch CUDA")
    assert f"= {ours / 2:.2f}x (target <= 1.5x)" in step
    assert bandwidth.startswith(f"- {'met' if met[1] else 'MISSED'}: depthwise bandwidth at batch 2048")
    assert check.failed == (not all(met))


GRAPHS_OUTPUT = """
targets
  met    har-student step <= 0.5x torch eager: 0.31x
  MISSED har-student step <= 1.5x torch captured: 2.19x
"""

SEED_OUTPUT = """one seed, all runs                           96.8 s

speed-up over the CPU timing file
teacher                                  cpu    608.8 s  cuda     57.8 s    10.5x
student alone                            cpu     55.9 s  cuda      7.4 s     7.5x
"""


def test_graph_targets_and_the_seed_run_are_read_from_their_outputs():
    check = gpu_check.Check("out", "work", 10, {})
    gpu_check._target_verdicts(check, GRAPHS_OUTPUT, "graphs")
    gpu_check._seed_verdicts(check, SEED_OUTPUT)
    assert check.notes == [
        "- met: har-student step <= 0.5x torch eager: 0.31x",
        "- MISSED: har-student step <= 1.5x torch captured: 2.19x",
        "- met: one uci-har seed (teacher + 4 students) on the GPU < 120 s: 96.8 s",
        "- met: teacher: GPU >= 10x one CPU thread: 608.8 s -> 57.8 s = 10.5x",
        "- MISSED: student alone: GPU >= 10x one CPU thread: 55.9 s -> 7.4 s = 7.5x"]
    assert check.failed
    empty = gpu_check.Check("out", "work", 10, {})
    gpu_check._target_verdicts(empty, "it crashed", "graphs")
    gpu_check._seed_verdicts(empty, "it crashed")
    assert empty.failed and all(n.startswith("- MISSED") for n in empty.notes)


def test_missing_figures_are_a_miss_not_a_pass():
    check = gpu_check.Check("out", "work", 10, {})
    gpu_check._bench_verdicts(check, "it crashed half way", 2048, 2048)
    assert check.failed and "no bandwidth line" in check.notes[0]


def test_dry_run_runs_every_step_that_needs_no_gpu(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_check.py"), "--dry-run",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=400,
                          env=dict(os.environ, TINYSML_DATA=str(tmp_path / "data")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / "out" / "summary.md").read_text()
    for step in ("install-pip", "import", "versions", "tests", "pipeline-cpu", "bench-cpu-dry-run"):
        assert f"| {step} | passed |" in summary, summary
    for step in ("graphs", "units", "same-weights-cpu-vs-gpu", "pipeline-cuda", "bench-batch-64", "bench-batch-8192",
                 "profile-cuda", "dropout-probe"):
        assert f"| {step} | skipped (needs a GPU) |" in summary
    assert "| seed-run | skipped (no uci-har recordings under $TINYSML_DATA) |" in summary
    assert "met: dry run: bench/vs_torch.py ran on the CPU and its table parsed" in summary
    assert (tmp_path / "out" / "results-cpu.json").exists()


SEED_RUN_LINES = """teacher                                      57.8 s   test accuracy 0.9636
student alone                                 7.4 s   test accuracy 0.9433
KD (Hinton)                                   8.8 s   test accuracy 0.9449
SMLDist                                      11.6 s   test accuracy 0.9666
SMLDist, direct logits loss [ours]           11.1 s   test accuracy 0.9589
one seed, all runs                           96.8 s
"""


def test_seed_0_of_the_five_seed_grid_is_checked_against_the_runs_made_one_at_a_time():
    grid = {"teacher": 0.96357, "student alone": 0.94333, "KD (Hinton)": 0.9449, "SMLDist": 0.9666,
            "SMLDist, direct logits loss [ours]": 0.9589}
    check = gpu_check.Check("out", "work", 10, {})
    gpu_check._same_as_one_at_a_time(check, grid, SEED_RUN_LINES)
    assert not check.failed and len(check.notes) == 5
    assert check.notes[0] == ("- met: seed 0, teacher: the grid as one at a time: test accuracy 0.9636 in the grid, "
                              "0.9636 alone")
    check = gpu_check.Check("out", "work", 10, {})
    gpu_check._same_as_one_at_a_time(check, {**grid, "SMLDist": 0.9630}, SEED_RUN_LINES.replace("KD (Hinton)", "KD"))
    assert check.failed
    assert [n.split(":")[0] for n in check.notes] == ["- met", "- met", "- MISSED", "- MISSED", "- met"]
    assert check.notes[2].endswith("missing from the one-at-a-time output")
    assert check.notes[3].endswith("test accuracy 0.9630 in the grid, 0.9666 alone")


@needs_no_gpu
def test_the_five_seed_mode_without_a_gpu_or_recordings_says_what_it_skipped(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_check.py"), "--dry-run", "--five-seeds",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TINYSML_DATA=str(tmp_path / "data")))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert proc.returncode == 1
    assert "| five-seeds | skipped (no uci-har recordings under $TINYSML_DATA) |" in summary
    assert "| tests |" not in summary and "| import | passed |" in summary


@pytest.mark.parametrize("script,args,expect", [
    ("gpu_units.py", ["--presets", "har-student", "--replays", "10"],
     ["stem", "block 3", "head conv + pool", "classifier + loss", "AdamW, all parameters", "units summed",
      "whole step replayed"]),
    ("gpu_dropout_probe.py", ["--steps", "3"], ["eager again: masks drawn 3 (eager 3), all equal: True",
                                                "first step that differs: none (bitwise equal)"]),
])
def test_the_prepared_gpu_scripts_run_their_plumbing_on_the_cpu(script, args, expect):
    """What bench/gpu_check.py runs on a GPU, run here with --device cpu (eager, host timers), so that
    a slot is never lost to a script that cannot start."""
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in expect:
        assert line in proc.stdout, proc.stdout


def test_a_step_keeps_its_output_as_evidence_only_when_it_passed(tmp_path):
    check = gpu_check.Check(str(tmp_path), str(tmp_path), 60, dict(os.environ))
    text = check.run("ok", [sys.executable, "-c", "print('figures')"], 30, keep="ok.txt")
    assert text == "figures\n" and (tmp_path / "ok.txt").read_text() == text
    assert check.run("bad", [sys.executable, "-c", "print('half'); raise SystemExit(2)"], 30, keep="bad.txt") is None
    assert not (tmp_path / "bad.txt").exists() and check.failed
