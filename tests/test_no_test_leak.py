"""The honesty of every table rests on this: training and model selection never read the test
split. Each method runs twice from scratch, once on the real test windows and once with them
replaced by noise and their labels shifted; every phase's weights, the selected epochs and the
validation scores must be bit-identical, and only the reported test scores may differ. Any read of
test windows or labels during training, stage distillation, the head search or selection (the
teacher's included) would break the equality."""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest

import tinysml
from tinysml import io
from tinysml.data import HARDataset, WindowSet, load
from tinysml.distill import pipeline
from tinysml.distill.pipeline import SMLDistConfig, run

TINY = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=2, student_epochs=2,
                     stage_epochs=1, search_epochs=2, search_budget=2)


def poisoned(name, path=None):
    """The dataset with its test split replaced: noise windows and labels shifted by one class."""
    d = load(name, path=path)
    rng = np.random.default_rng(123)
    noise = rng.standard_normal(d.test.X.shape).astype(np.float32) * 5
    test = WindowSet(noise, (d.test.y + 1) % d.num_classes, d.test.subjects)
    return HARDataset(d.name, d.train, test, d.class_names, d.channel_names, d.rate_hz, d.description, d.extra)


def arrays_of(run_dir):
    """Every array of every checkpoint a run wrote, by file and entry."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "*.npz"))):
        with np.load(path, allow_pickle=False) as z:
            out.update({f"{os.path.basename(path)}/{k}": z[k] for k in z.files if k != "__tinysml__"})
    return out


def selection(results):
    """What a run selected and why: everything in results.json except the test scores."""
    return {"teacher_val": results["teacher"]["val"], "student_val": results["student"]["val"],
            "best_epoch": results["student"]["best_epoch"], "head": results["student"]["head"],
            "search": results["search"], "history": results["history"]}


@pytest.mark.parametrize("method,extra", [("smldist", {"search": True}), ("kd", {}), ("fitnet", {}), ("at", {}),
                                          ("none", {})], ids=["smldist+search", "kd", "fitnet", "at", "none"])
def test_no_phase_reads_the_test_split(tmp_path, monkeypatch, method, extra):
    from concurrent.futures import ThreadPoolExecutor
    cfg = dataclasses.replace(TINY, method=method, **extra)
    with ThreadPoolExecutor(1) as executor:                   # the search in-process: same arithmetic, cheaper
        tinysml.manual_seed(0)
        clean = run(cfg, str(tmp_path / "clean"), quiet=True, executor=executor)
        monkeypatch.setattr(pipeline, "load", poisoned)
        tinysml.manual_seed(0)
        dirty = run(cfg, str(tmp_path / "dirty"), quiet=True, executor=executor)
    a, b = arrays_of(tmp_path / "clean"), arrays_of(tmp_path / "dirty")
    assert sorted(a) == sorted(b) and any(k.startswith("teacher.npz/") for k in a)
    assert any(k.startswith("student.npz/") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert json.dumps(selection(clean), sort_keys=True) == json.dumps(selection(dirty), sort_keys=True)
    # the poisoning did reach evaluation: the reported test scores moved
    assert clean["student"]["test"] != dirty["student"]["test"]
    assert dirty["teacher"]["test"]["accuracy"] < clean["teacher"]["test"]["accuracy"]
    io.load_model(tmp_path / "dirty" / "student.npz")         # and what was written is a valid model
