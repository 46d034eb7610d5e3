"""Run records committed to the repository (tinysml/records.py): a grid writes one per finished run,
a grid given the records runs nothing that has one, and the report and the power helper read them
alone, without the runs' folders."""
import concurrent.futures as cf
import json
import os

import pytest
import tqdm

from tinysml import compare, evidence_plan, evidence_report, io, power, records

TINY = ["--dataset", "basicmotions", "--seeds", "0", "1", "--teacher-epochs", "1", "--student-epochs", "1",
        "--batch-size", "16", "--variants", "KD (Hinton)"]


class Counting(cf.ThreadPoolExecutor):
    """A thread pool that counts the jobs it was given."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.jobs = 0

    def submit(self, *args, **kwargs):
        self.jobs += 1
        return super().submit(*args, **kwargs)


def _args(tmp_path, out, extra=()):
    return compare.build_parser().parse_args([*TINY, "--out", str(tmp_path / out), "--records",
                                              str(tmp_path / "records"), *extra])


def test_a_grid_records_its_runs_and_a_later_grid_runs_none_of_them(tmp_path):
    pool = Counting()
    first = compare.run_all(_args(tmp_path, "a"), pool)
    assert pool.jobs == 6                                         # 2 seeds x (teacher, alone, KD)
    names = sorted(os.listdir(tmp_path / "records" / "seed0"))
    assert names == ["kd--hinton.json", "student-alone.json", "teacher.json"]
    rec = json.load(open(tmp_path / "records" / "seed1" / "kd--hinton.json"))
    assert rec["name"] == "KD (Hinton)" and rec["seed"] == 1 and "run_dir" not in rec
    assert rec["teacher_identity"]["sha256"] and rec["history"] and "student" in rec
    assert not any(f.endswith(".npz") for _, _, fs in os.walk(tmp_path / "records") for f in fs)   # no weights

    again = Counting()
    second = compare.run_all(_args(tmp_path, "b-new-machine"), again)
    assert again.jobs == 0 and not (tmp_path / "b-new-machine").exists()
    for name in first:
        assert [r["student"]["test"] for r in first[name]] == [r["student"]["test"] for r in second[name]]


def test_only_the_missing_runs_of_a_seed_run_again(tmp_path, monkeypatch):
    compare.run_all(_args(tmp_path, "a"), Counting())
    os.remove(tmp_path / "records" / "seed1" / "kd--hinton.json")
    pool, totals = Counting(), []
    real = tqdm.tqdm
    monkeypatch.setattr(tqdm, "tqdm", lambda *a, **k: totals.append(k["total"]) or real(*a, **k))
    compare.run_all(_args(tmp_path, "b"), pool)
    assert pool.jobs == 2                                         # seed 1's teacher, then its KD student
    assert totals == [2]                                          # the progress bar counts those two
    assert (tmp_path / "records" / "seed1" / "kd--hinton.json").exists()


class Ordered(cf.ThreadPoolExecutor):
    """A one-thread pool that notes the run folder of every job in the order it was handed over,
    and how many jobs were waiting in it at the most."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.order, self.waiting, self.most = [], 0, 0

    def submit(self, fn, config, run_dir, *args, **kwargs):
        self.order.append(os.path.relpath(run_dir, os.path.dirname(os.path.dirname(run_dir))))
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        future = super().submit(fn, config, run_dir, *args, **kwargs)
        future.add_done_callback(lambda _: setattr(self, "waiting", self.waiting - 1))
        return future


def test_seeds_finish_in_order_so_a_stopped_grid_leaves_whole_seeds(tmp_path):
    pool = Ordered()
    compare.run_all(_args(tmp_path, "a", ["--workers", "1"]), pool)
    assert pool.order == ["seed0/teacher", "seed0/student-alone", "seed0/kd--hinton",
                          "seed1/teacher", "seed1/student-alone", "seed1/kd--hinton"]
    assert pool.most == 1                                         # never more jobs handed over than workers


def test_collect_and_power_read_records_alone(tmp_path):
    compare.run_all(_args(tmp_path, "a"), Counting())
    found = compare.collect(str(tmp_path / "nowhere"), [0, 1], ["student alone", "KD (Hinton)"],
                            records_dir=str(tmp_path / "records"))
    assert set(found) == {"teacher", "student alone", "KD (Hinton)"} and set(found["KD (Hinton)"]) == {0, 1}
    rows = power.plan_rows(found, 0.01, comparisons={"kd": ("KD (Hinton)", "student alone")})
    assert rows[0]["seeds"] == 2
    assert power.plan(str(tmp_path / "records"), 0.01, comparisons={"kd": ("KD (Hinton)", "student alone")})[0][
        "seeds"] == 2


def test_a_record_in_the_wrong_place_is_refused(tmp_path):
    records.save(str(tmp_path), "KD (Hinton)", 0, {"student": {}})
    os.makedirs(tmp_path / "seed1")
    os.replace(tmp_path / "seed0" / "kd--hinton.json", tmp_path / "seed1" / "kd--hinton.json")
    with pytest.raises(ValueError, match=r"seed1/kd--hinton.json holds the record of 'KD \(Hinton\)' seed 0, not of "
                                         r"'KD \(Hinton\)' seed 1: the records folder is inconsistent"):
        records.load(str(tmp_path), [1], ["KD (Hinton)"])
    assert records.save(str(tmp_path), "KD (Hinton)", 0, {"student": {}}) is True
    assert records.save(str(tmp_path), "KD (Hinton)", 0, {"student": {}}) is False   # unchanged: not rewritten


def test_a_record_is_the_results_without_the_machines_run_folder(tmp_path):
    results = {"run_dir": "/home/someone/runs/x/seed3/smldist", "student": {"test": {"accuracy": 0.9}}, "seed": 9}
    records.save(str(tmp_path), "SMLDist", 3, results)
    with open(records.path(str(tmp_path), 3, "SMLDist")) as f:
        assert json.load(f) == {"student": {"test": {"accuracy": 0.9}}, "name": "SMLDist", "seed": 3}
    assert results["run_dir"]                                              # the caller's dict is left as it was


def test_the_evidence_report_can_be_written_from_records(tmp_path):
    """evidence's report reads RECORDS/<dataset>: with an empty runs folder it still finds them."""
    out, recs = tmp_path / "runs", tmp_path / "records"
    found_before = compare.collect(str(out / "uci-har"), [0], ["student alone"], evidence_plan.records_of(str(recs), "uci-har"))
    assert found_before == {}
    records.save(str(recs / "uci-har"), "student alone", 0, {"student": {"test": {"accuracy": 0.9, "macro_f1": 0.9}}})
    found = compare.collect(str(out / "uci-har"), [0], ["student alone"], evidence_plan.records_of(str(recs), "uci-har"))
    assert found["student alone"][0]["student"]["test"]["accuracy"] == 0.9


def test_the_evidence_report_reads_each_datasets_records(tmp_path, monkeypatch):
    from tinysml import powered
    monkeypatch.setattr(evidence_plan, "PLAN", {"uci-har": {"seeds": [0], "extra": ["SMLDist, no stage phase"]},
                                           "hapt": {"seeds": [0], "extra": ["SMLDist, no stage phase"]}})
    monkeypatch.setattr(evidence_plan, "split_sizes", lambda d: {"subjects": True, "classes": 6, "train": 5000, "val": 900,
                                                             "test": 2000})
    monkeypatch.setattr(powered, "RECORDS", str(tmp_path / "powered"))
    monkeypatch.setattr(powered, "RELEASED_RECORDS", str(tmp_path / "released"))
    recs = tmp_path / "records"
    records.save(str(recs / "hapt"), "student alone", 0, {"student": {"test": {"accuracy": 0.8, "macro_f1": 0.7}},
                                                          "history": []})
    text = evidence_report.report(str(tmp_path / "no-runs"), str(tmp_path / "d.md"), records=str(recs))
    assert "## uci-har (INCOMPLETE: 0 of " in text and "| student alone | 1 | 0.8000 | 0.7000 | — |" in text
    assert "## hapt (INCOMPLETE: 1 of " in text and "The variant of ours is not chosen yet" in text
    out, doc = tmp_path / "no-runs", tmp_path / "d.md"
    assert text.startswith(
        "# Results: SMLDist against the baselines\n\n`tinysml evidence --report-only` rewrites this file from the runs "
        "finished so far and the run records committed under `evidence/`. Its first section is the pre-registered "
        "powered study (`docs/preregistration.md`). The sections after it are the earlier evidence at 3-5 seeds, "
        f"produced by `tinysml evidence --out {out} --doc {doc}`. Each dataset is one ``tinysml compare`` grid")
    assert "rules out a difference.\n\n## uci-har (" in text and "0.5 points.\n\n\n## hapt (" in text
    assert ("SMLDist and one SMLDist variant of ours) under ``OUT/<dataset>``; uci-har also runs every ablation and the "
            "head search, with 5 seeds (the others 3). ") in text.split("\n")[2]          # the docstring's lines joined
    assert "to the other three datasets.\n\n## The powered answer (pre-registered)\n" in text
    assert "No run has finished yet.\n\n## Summary across datasets\n" in text           # the study's end, then ours
    uci, hapt = text.split("## Summary across datasets")[1].split("## uci-har (")[1].split("## hapt (")
    assert "| SMLDist, no stage phase | 0 |" in uci and "SMLDist, no stage phase" not in hapt   # extras: uci-har only
    assert f"    tinysml evidence --out {tmp_path / 'no-runs'} --doc {tmp_path / 'd.md'} --datasets hapt\n" in hapt
    io.write_json(str(recs / "ours.json"), {"variant": "SMLDist, no memory loss", "val_macro_f1": {}})
    text = evidence_report.report(str(tmp_path / "no-runs"), str(tmp_path / "d.md"), records=str(recs))
    uci, hapt = text.split("## Summary across datasets")[1].split("## uci-har (")[1].split("## hapt (")
    assert "| SMLDist, no memory loss | 0 |" in hapt and "| SMLDist, no memory loss |" not in uci   # ours, from the records
