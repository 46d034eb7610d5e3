"""tinysml evidence's plan and commands: the choice of our variant, the step floor, the split sizes
a section states, the parser, what each command hands to the grid runner and the report, our
variant fixed before a later dataset, and the archive a grid carries. (The document's sections:
tests/test_evidence_report.py; a tiny plan end to end: tests/test_evidence.py.)"""
import json
import os

import pytest

from tinysml import evidence, evidence_plan, evidence_report, io


def test_our_variant_is_the_best_mean_over_the_common_seeds():
    def run(val):
        return {"student": {"val": {"macro_f1": val}}}
    found = {"SMLDist, direct logits loss [ours]": {0: run(0.95), 1: run(0.93)},
             "SMLDist, no stage phase": {0: run(0.90), 1: run(0.95), 2: run(0.99)}}     # seed 2 is not common
    ours, means = evidence_plan.choose_ours(found)
    assert ours == "SMLDist, direct logits loss [ours]"              # 0.94 against 0.925 (0.9467 with seed 2)
    assert means == pytest.approx({"SMLDist, direct logits loss [ours]": 0.94, "SMLDist, no stage phase": 0.925})
    assert evidence_plan.choose_ours({"SMLDist": {0: run(0.99)}}) == (None, {})     # no candidate ran


@pytest.mark.parametrize("n_train, expected", [(1, 64), (64 * 63, 64), (64 * 63 + 1, 0), (10000, 0)])
def test_small_datasets_get_the_minimum_number_of_steps(n_train, expected):
    assert evidence_plan.min_steps(n_train) == expected            # fewer than 64 batches of 64 (the last may be partial): 64 steps


def test_the_parser_defaults_and_the_exclusive_studies():
    args = evidence.build_parser().parse_args([])
    assert (args.datasets, args.powered, args.released, args.out, args.doc, args.report_only, args.workers,
            args.device, args.archive, args.resume_from, args.records) == \
        (None, False, False, None, "docs/results.md", False, None, "cpu", None, None, None)
    assert evidence.build_parser().prog == "tinysml evidence"
    assert evidence.build_parser().description == ("The evidence: SMLDist against the baselines on four real datasets, "
                                                   "and a cross-dataset verdict.")
    with pytest.raises(SystemExit):
        evidence.build_parser().parse_args(["--powered", "--released"])
    with pytest.raises(SystemExit):
        evidence.build_parser().parse_args(["--datasets", "wisdm"])
    args = evidence.build_parser().parse_args(["--datasets", "hapt", "watch", "--workers", "3", "--device", "cuda"])
    assert args.datasets == ["hapt", "watch"] and args.workers == 3 and args.device == "cuda"


def test_the_grid_arguments_of_a_dataset(monkeypatch):
    monkeypatch.setattr(evidence_plan, "split_sizes", lambda dataset: {"train": 2000})     # 32 batches: MIN_STEPS
    d = evidence.grid_args("hapt", [0], [], "o")
    assert (d.workers, d.threads, d.device, d.records) == (None, 1, "cpu", None)
    a = evidence.grid_args("hapt", range(2), ("KD (Hinton)",), "runs/x/hapt", workers=2, device="cuda", records="ev/hapt")
    assert (a.dataset, a.seeds, a.variants, a.out, a.workers, a.threads, a.device, a.records, a.verbose) == \
        ("hapt", [0, 1], ["KD (Hinton)"], "runs/x/hapt", 2, 1, "cuda", "ev/hapt", False)
    assert a.min_steps_per_epoch == 64 and {k: getattr(a, k) for k in evidence_plan.BASE} == evidence_plan.BASE


def test_a_later_dataset_needs_our_variant_chosen_first(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(evidence, "run_all", ran.append)
    with pytest.raises(SystemExit, match="hapt needs the variant of ours, chosen on uci-har's validation split: "
                                         "run --datasets uci-har first"):
        evidence.main(["--datasets", "hapt", "--out", str(tmp_path / "runs"), "--doc", str(tmp_path / "d.md")])
    assert ran == [] and not os.path.exists(tmp_path / "d.md")


def test_our_recorded_choice_is_read_back_from_the_records_folder(tmp_path):
    out, records = str(tmp_path / "runs"), str(tmp_path / "records")
    os.makedirs(records)
    io.write_json(os.path.join(records, "ours.json"), {"variant": "SMLDist, no frequency term",
                                                       "val_macro_f1": {"SMLDist, no frequency term": 0.9}})
    assert evidence_plan.fixed_ours(out, {}, record=False, records=records) == \
        ("SMLDist, no frequency term", {"SMLDist, no frequency term": 0.9}, True)
    assert evidence_plan.fixed_ours(out, {}, record=True) == (None, {}, False)      # nothing finished: nothing recorded
    found = {"SMLDist, no stage phase": {0: {"student": {"val": {"macro_f1": 0.9}}}}}
    assert evidence_plan.fixed_ours(out, found, record=False) == ("SMLDist, no stage phase", {"SMLDist, no stage phase": 0.9},
                                                             False)
    assert not os.path.exists(os.path.join(out, "ours.json"))
    assert evidence_plan.fixed_ours(out, found, record=True)[2] is True
    with open(os.path.join(out, "ours.json")) as f:
        assert json.load(f) == {"variant": "SMLDist, no stage phase", "val_macro_f1": {"SMLDist, no stage phase": 0.9},
                                "selection": "uci-har"}
    assert evidence_plan.records_of(None, "hapt") is None and evidence_plan.records_of("ev", "hapt") == os.path.join("ev", "hapt")


def test_the_protocol_follows_whether_subjects_are_known():
    """basicmotions records no subjects (ids of -1): its validation split is stratified by class,
    and the section must not call it subject-wise. (Found by this file: every dataset was.)"""
    assert evidence_plan.split_sizes("basicmotions") == {"train": 32, "val": 8, "test": 40, "subjects": False, "classes": 4}


def test_each_command_runs_its_planned_grids_then_writes_the_report(tmp_path, monkeypatch):
    """What ``tinysml evidence`` hands to the grid runner and the report, for the released budget,
    the powered study and the earlier evidence (the grids themselves: tests/test_evidence.py)."""
    ran, reported = [], []
    monkeypatch.setattr(evidence, "run_all", ran.append)
    monkeypatch.setattr(evidence_report, "report", lambda out, doc, records=None, **kw: reported.append((out, doc, records, kw)))
    monkeypatch.setattr(evidence_plan, "split_sizes", lambda dataset: {"train": 5000})       # no data loaded
    monkeypatch.chdir(tmp_path)
    from tinysml import powered
    evidence.main(["--released", "--workers", "3", "--device", "cuda", "--doc", "d.md"])
    assert [vars(a) for a in ran] == [{
        "dataset": "uci-har", "seeds": [0, 1, 2, 3, 4], "variants": ["KD (Hinton)", "SMLDist",
                                                                    "SMLDist, direct logits loss [ours]"],
        "out": os.path.join("runs", "released", "uci-har"), "recipe": "released", "workers": 3, "threads": 1,
        "device": "cuda", "records": os.path.join("evidence", "released", "uci-har"), "verbose": False}]
    assert reported == [(os.path.join("runs", "evidence"), "d.md", None, {"released_records": None})]
    for study in ("released", "powered"):                   # from Python: one process per core, on the CPU
        a = evidence.study_args(study, "uci-har", "o")
        assert (a.workers, a.device, a.records) == (None, "cpu", os.path.join("evidence", study, "uci-har"))

    ran.clear(), reported.clear()
    evidence.main(["--powered", "--out", "o", "--records", "r", "--workers", "2", "--device", "cuda", "--doc", "d.md"])
    assert [(a.dataset, a.out, a.records, a.seeds, a.variants, a.workers, a.device) for a in ran] == [
        (d, os.path.join("o", d), os.path.join("r", d), list(range(30)), powered.METHODS[1:], 2, "cuda")
        for d in ("uci-har", "hapt")]
    assert all(a.min_steps_per_epoch == 0 and a.teacher_epochs == 50 for a in ran)     # the project's budget
    assert reported == [(os.path.join("runs", "evidence"), "d.md", None, {"powered_records": "r"})]
    ran.clear(), reported.clear()
    evidence.main(["--powered", "--datasets", "hapt", "--doc", "d.md"])
    assert [(a.dataset, a.out, a.records, a.workers, a.device) for a in ran] == [
        ("hapt", os.path.join("runs", "powered", "hapt"), os.path.join("evidence", "powered", "hapt"), None, "cpu")]
    ran.clear(), reported.clear()
    with pytest.raises(SystemExit) as err:
        evidence.main(["--released", "--datasets", "hapt", "watch", "--doc", "d.md"])
    assert str(err.value) == "tinysml evidence --released: the study's datasets are uci-har; not hapt, watch"
    assert ran == [] and reported == []

    evidence.main(["--datasets", "uci-har", "--records", "r", "--doc", "d.md"])       # the earlier evidence
    (a,) = ran
    assert (a.dataset, a.seeds, a.out, a.records, a.workers, a.device) == \
        ("uci-har", [0, 1, 2, 3, 4], os.path.join("runs", "evidence", "uci-har"), os.path.join("r", "uci-har"), None, "cpu")
    assert a.variants == evidence_plan.CORE + evidence_plan.PLAN["uci-har"]["extra"]
    assert reported == [(os.path.join("runs", "evidence"), "d.md", "r", {})]
    ran.clear(), reported.clear()
    os.makedirs("r")
    io.write_json(os.path.join("r", "ours.json"), {"variant": "SMLDist, no memory loss", "val_macro_f1": {}})
    evidence.main(["--datasets", "watch", "hapt", "--records", "r", "--out", "o", "--device", "cuda", "--doc", "d.md"])
    assert [(a.dataset, a.seeds, a.variants, a.out, a.records, a.device) for a in ran] == [
        (d, [0, 1, 2], evidence_plan.CORE + ["SMLDist, no memory loss"], os.path.join("o", d), os.path.join("r", d), "cuda")
        for d in ("hapt", "watch")]                                              # in the plan's order
    assert reported == [("o", "d.md", "r", {})]


def test_the_command_takes_a_parsed_namespace_and_carries_its_runs_in_an_archive(tmp_path, monkeypatch, capsys):
    """``tinysml evidence`` (cli.py hands main its parsed arguments): --archive packs what the grid
    wrote, --resume-from unpacks it into another OUT first."""
    def run_all(args):
        seen = sorted(os.listdir(args.out)) if os.path.isdir(args.out) else []
        os.makedirs(os.path.join(args.out, "seed0", "kd"), exist_ok=True)
        io.write_json(os.path.join(args.out, "seed0", "kd", "results.json"), {"seen": seen})
    monkeypatch.setattr(evidence, "run_all", run_all)
    monkeypatch.setattr(evidence_report, "report", lambda *a, **kw: None)
    monkeypatch.chdir(tmp_path)
    args = evidence.build_parser().parse_args(["--released", "--out", "a", "--archive", "grid.tar.gz", "--doc", "d.md"])
    evidence.main(args)
    assert os.path.isfile("grid.tar.gz") and capsys.readouterr().out.endswith("\nwrote d.md\n")
    evidence.main(["--released", "--out", "b", "--resume-from", "grid.tar.gz", "--doc", "d.md"])
    with open(os.path.join("b", "uci-har", "seed0", "kd", "results.json")) as f:
        assert json.load(f) == {"seen": ["seed0"]}                          # unpacked before the grid ran


def test_a_later_dataset_fixes_our_variant_from_the_runs_and_the_records(tmp_path, monkeypatch):
    """Before the first other dataset's grid, ours is chosen from uci-har's finished runs (under
    OUT) and its committed records (under RECORDS) together, and the choice is written to both."""
    from tinysml import compare, records
    ran = []
    monkeypatch.setattr(evidence, "run_all", ran.append)
    monkeypatch.setattr(evidence_report, "report", lambda *a, **kw: None)
    monkeypatch.setattr(evidence_plan, "split_sizes", lambda dataset: {"train": 5000})
    monkeypatch.chdir(tmp_path)
    run_dir = compare._run_dir(os.path.join("o", "uci-har"), 0, "SMLDist, no frequency term")
    os.makedirs(run_dir)
    io.write_json(os.path.join(run_dir, "results.json"), {"student": {"val": {"macro_f1": 0.90}}})
    records.save(os.path.join("r", "uci-har"), "SMLDist, no memory loss", 0, {"student": {"val": {"macro_f1": 0.95}}})
    evidence.main(["--datasets", "hapt", "--out", "o", "--records", "r", "--workers", "2", "--doc", "d.md"])
    choice = {"variant": "SMLDist, no memory loss", "selection": "uci-har",
              "val_macro_f1": {"SMLDist, no frequency term": 0.90, "SMLDist, no memory loss": 0.95}}
    for place in ("o", "r"):
        with open(os.path.join(place, "ours.json")) as f:
            assert json.load(f) == choice, place
    (a,) = ran
    assert a.variants == evidence_plan.CORE + ["SMLDist, no memory loss"] and a.workers == 2


def test_the_sizes_are_those_of_seed_0s_split(monkeypatch):
    """With subjects, the validation split's size depends on which subjects the seed draws: the
    report states seed 0's."""
    import numpy as np
    from tinysml import data as data_module
    from tinysml.data.dataset import HARDataset, WindowSet
    from tinysml.data.splits import validation_split
    subjects = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    rng = np.random.default_rng(0)
    train = WindowSet(rng.standard_normal((150, 2, 16)).astype(np.float32), np.arange(150) % 3, subjects)
    test = WindowSet(rng.standard_normal((12, 2, 16)).astype(np.float32), np.arange(12) % 3, np.full(12, 9))
    monkeypatch.setattr(data_module, "load", lambda name: HARDataset("toy", train, test, ["a", "b", "c"], ["x", "y"],
                                                                     50.0, "toy"))
    sizes = {seed: len(validation_split(train, 0.2, seed)[1]) for seed in range(4)}
    assert len(set(sizes.values())) > 1                                     # the seed matters here
    for _ in range(5):                                                      # every time, not by chance
        assert evidence_plan.split_sizes("toy") == {"train": 150 - sizes[0], "val": sizes[0], "test": 12,
                                                "subjects": True, "classes": 3}
