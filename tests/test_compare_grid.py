"""`tinysml compare`: the grid's runs on any Executor give the same results as on the local process
pool, a failed run does not lose the others, and a grid killed midway resumes to the same results."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinysml import compare

TINY = ["--dataset", "basicmotions", "--seeds", "0", "1", "--teacher-epochs", "1", "--student-epochs", "1",
        "--stage-epochs", "1", "--batch-size", "16", "--variants", "SMLDist"]


def grid(tmp_path, name, executor=None, extra=()):
    args = compare.build_parser().parse_args([*TINY, "--out", str(tmp_path / name), "--doc",
                                              str(tmp_path / name / "results.md"), *extra])
    return compare.run_all(args, executor)


def scores(results):
    """What a grid decides: every run's validation and test scores and its selected epoch."""
    return {name: [(r["student"]["val"], r["student"]["test"], r["student"]["best_epoch"], r["teacher"]["test"])
                   for r in rs] for name, rs in results.items()}


def test_a_dask_cluster_gives_the_local_pool_results(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = grid(tmp_path, "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = grid(tmp_path, "dask", client.get_executor())
    assert scores(remote) == scores(local)
    assert set(local) == {"teacher", "student alone", "SMLDist"} and all(len(rs) == 2 for rs in local.values())


def test_a_failed_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    real = compare.run_job

    def flaky(config, run_dir, teacher_checkpoint, quiet, threads):
        if config["seed"] == 1 and config["method"] == "smldist":
            raise MemoryError("pretend the machine ran out")
        return real(config, run_dir, teacher_checkpoint, quiet, threads)
    monkeypatch.setattr(compare, "run_job", flaky)
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match=r"(?s)1 run\(s\) of the grid failed.*seed 1 "
                                                                          r"SMLDist: MemoryError: pretend"):
        grid(tmp_path, "g", pool)
    finished = sorted(os.path.relpath(root, tmp_path / "g") for root, _, files in os.walk(tmp_path / "g")
                      if "results.json" in files)
    assert finished == ["seed0/smldist", "seed0/student-alone", "seed0/teacher", "seed1/student-alone",
                        "seed1/teacher"]


def test_a_grid_killed_midway_resumes_to_the_same_results(tmp_path):
    cmd = [sys.executable, "-m", "tinysml.cli", "compare", *TINY, "--workers", "2"]
    straight = subprocess.run(cmd + ["--out", str(tmp_path / "a"), "--doc", str(tmp_path / "a.md")],
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    b = [*cmd, "--out", str(tmp_path / "b"), "--doc", str(tmp_path / "b.md")]
    proc = subprocess.Popen(b, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not os.path.exists(tmp_path / "b" / "seed0" / "teacher" / "results.json") and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                           # the grid and its workers, mid-run
    proc.wait()
    assert not os.path.exists(tmp_path / "b" / "summary.json")
    again = subprocess.run(b, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.load(open(tmp_path / "a" / "summary.json")) == json.load(open(tmp_path / "b" / "summary.json"))


def test_the_released_recipe_is_the_authors_budget_and_options_override_it(tmp_path):
    from tinysml.distill.pipeline import RELEASED_RECIPE
    project = compare.budget(compare.build_parser().parse_args([]))
    assert project == {**compare.PROJECT_BUDGET, "min_steps_per_epoch": 0}
    released = compare.budget(compare.build_parser().parse_args(["--recipe", "released", "--student-epochs", "3"]))
    assert released == {**RELEASED_RECIPE, "student_epochs": 3}
    assert (released["optimizer"], released["schedule"], released["batch_size"], released["stage_lr"],
            released["stage_scope"], released["teacher_epochs"]) == ("ranger", "plateau", 256, 1e-4, "all", 200)
    args = compare.build_parser().parse_args(["--dataset", "basicmotions", "--seeds", "0", "--recipe", "released",
                                              "--teacher-epochs", "1", "--student-epochs", "1", "--stage-epochs", "1",
                                              "--variants", "SMLDist", "--workers", "1", "--out", str(tmp_path)])
    compare.run_all(args)
    config = json.load(open(tmp_path / "seed0" / "smldist" / "config.json"))
    assert (config["optimizer"], config["schedule"], config["stage_scope"], config["stage_optimizer"],
            config["batch_size"], config["teacher_epochs"]) == ("ranger", "plateau", "all", "adamw", 256, 1)


def test_the_recipe_fields_of_a_config_are_checked():
    from tinysml.distill.pipeline import SMLDistConfig
    with pytest.raises(ValueError, match="stage_scope"):
        SMLDistConfig(stage_scope="some")
    with pytest.raises(ValueError, match="optimizer"):
        SMLDistConfig(stage_optimizer="lion")
    with pytest.raises(ValueError, match="schedule"):
        SMLDistConfig(schedule="step")
