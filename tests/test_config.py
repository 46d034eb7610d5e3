"""SMLDistConfig refuses every bad hyper-parameter when it is built, naming the field, what it
must be and the value; every boundary value is accepted. (The command line reaches the same checks:
tests/test_bad_input.py.)"""
import pytest

from tinysml.distill.pipeline import METHODS, OPTIMIZERS, RELEASED_RECIPE, SMLDistConfig

# field: (the boundary value, accepted; a value just past it, refused; the message's rule)
NUMBERS = {
    "seed": (0, -1, "an integer >= 0"),
    "batch_size": (1, 0, "an integer >= 1"),
    "min_steps_per_epoch": (0, -1, "an integer >= 0"),
    "teacher_epochs": (0, -1, "an integer >= 0"),
    "student_epochs": (0, -1, "an integer >= 0"),
    "stage_epochs": (0, -1, "an integer >= 0"),
    "search_epochs": (1, 0, "an integer >= 1"),
    "val_fraction": (0.95, 0.96, "a finite number > 0 and <= 0.95"),
    "teacher_lr": (1e-12, 0.0, "a finite number > 0"),
    "student_lr": (1e-12, 0.0, "a finite number > 0"),
    "stage_lr": (1e-12, 0.0, "a finite number > 0"),
    "weight_decay": (0.0, -1e-9, "a finite number >= 0"),
    "teacher_label_smoothing": (0.99, 0.991, "a finite number >= 0 and <= 0.99"),
    "teacher_jitter": (0.0, -1e-9, "a finite number >= 0"),
    "teacher_scale": (0.0, -1e-9, "a finite number >= 0"),
    "gamma": (0.0, -1e-9, "a finite number >= 0"),
    "tau": (1e-12, 0.0, "a finite number > 0"),
    "mu": (0.0, -1e-9, "a finite number >= 0"),
    "lam": (0.0, -1e-9, "a finite number >= 0"),
    "T": (1e-12, 0.0, "a finite number > 0"),
    "eta": (0.0, -1e-9, "a finite number >= 0"),
    "kd_T": (1e-12, 0.0, "a finite number > 0"),
    "kd_alpha": (1.0, 1.01, "a finite number >= 0 and <= 1"),
    "hint_beta": (0.0, -1e-9, "a finite number >= 0"),
    "at_beta": (0.0, -1e-9, "a finite number >= 0"),
    "search_budget": (1, 0, "an integer >= 1"),
}


@pytest.mark.parametrize("name", list(NUMBERS))
def test_every_number_is_checked_at_its_boundary(name):
    ok, bad, rule = NUMBERS[name]
    assert getattr(SMLDistConfig(**{name: ok}), name) == ok
    with pytest.raises(ValueError) as err:
        SMLDistConfig(**{name: bad})
    assert str(err.value) == f"{name} must be {rule}, got {bad!r}"


def test_the_other_side_of_the_two_sided_ranges():
    for name, low in (("val_fraction", 0.0), ("teacher_label_smoothing", -0.01), ("kd_alpha", -0.01)):
        with pytest.raises(ValueError, match=f"^{name} must be "):
            SMLDistConfig(**{name: low})
    assert SMLDistConfig(teacher_label_smoothing=0.0, kd_alpha=0.0).kd_alpha == 0.0


@pytest.mark.parametrize("value", [2.5, "3", True, float("nan")])
def test_an_integer_field_takes_integers_only(value):
    with pytest.raises(ValueError, match=r"^student_epochs must be an integer >= 0, got "):
        SMLDistConfig(student_epochs=value)


@pytest.mark.parametrize("name, bad, message", [
    ("logits_form", "soft", "logits_form must be 'released' or 'direct', got 'soft'"),
    ("method", "dkd", f"unknown method 'dkd'; expected one of {METHODS}"),
    ("schedule", "step", "schedule must be 'cosine' or 'plateau', got 'step'"),
    ("stage_scope", "head", "stage_scope must be 'anchor' or 'all', got 'head'"),
    ("optimizer", "adam", f"optimizer must be one of {OPTIMIZERS}, got 'adam'"),
    ("optimizer", None, f"optimizer must be one of {OPTIMIZERS}, got None"),
    ("stage_optimizer", "lion", f"stage_optimizer must be one of {OPTIMIZERS}, got 'lion'"),
    ("device", "tpu", "device must be 'cpu' or 'cuda', got 'tpu'")])
def test_every_choice_is_checked_by_name(name, bad, message):
    with pytest.raises(ValueError) as err:
        SMLDistConfig(**{name: bad})
    assert str(err.value) == message


def test_every_choice_accepts_its_documented_values():
    for form in ("released", "direct"):
        assert SMLDistConfig(logits_form=form).logits_form == form
    for method in METHODS:
        assert SMLDistConfig(method=method).method == method
    for schedule in ("cosine", "plateau"):
        assert SMLDistConfig(schedule=schedule).schedule == schedule
    for scope in ("anchor", "all"):
        assert SMLDistConfig(stage_scope=scope).stage_scope == scope
    for opt in OPTIMIZERS:
        assert SMLDistConfig(optimizer=opt, stage_optimizer=opt).stage_optimizer == opt
    assert SMLDistConfig(stage_optimizer=None).stage_optimizer is None            # None: the same as optimizer
    assert SMLDistConfig(device="cuda").device == "cuda"                           # checked here; used on a GPU only
    assert SMLDistConfig(search_budget=None).search_budget is None
    assert SMLDistConfig(**RELEASED_RECIPE).stage_epochs == 200                    # the released recipe is valid


def test_a_saved_config_is_read_back_and_unknown_keys_are_named():
    cfg = SMLDistConfig(method="kd", kd_T=2.0, head={"kind": "linear"})
    from dataclasses import asdict
    assert SMLDistConfig.from_dict(asdict(cfg)) == cfg
    with pytest.raises(ValueError) as err:
        SMLDistConfig.from_dict({**asdict(cfg), "beta": 1.0, "alpha": 2})
    assert str(err.value) == "unknown config keys: ['alpha', 'beta']"


def test_each_phase_trains_with_the_configs_values():
    """What the pipeline hands the training loop: the config's batch size, step floor, weight decay,
    optimiser, schedule and seed, the phase's epochs and learning rate, and the phase's overrides."""
    from tinysml.distill.pipeline import _train_config
    from tinysml.train import TrainConfig
    cfg = SMLDistConfig(batch_size=48, min_steps_per_epoch=7, weight_decay=0.03, optimizer="radam", schedule="plateau",
                        seed=5)
    assert _train_config(cfg, 11, 0.004) == TrainConfig(epochs=11, batch_size=48, lr=0.004, min_steps=7,
                                                        weight_decay=0.03, optimizer="radam", schedule="plateau", seed=5)
    stage = _train_config(cfg, 3, 0.001, weight_decay=0.0, schedule="none", select_metric="neg_stage_loss")
    assert (stage.weight_decay, stage.schedule, stage.select_metric, stage.optimizer) == (0.0, "none", "neg_stage_loss",
                                                                                          "radam")


def test_a_checkpoint_records_where_its_data_came_from():
    from tinysml.distill.pipeline import _data_options
    assert _data_options(SMLDistConfig(dataset="uci-har")) == {"dataset": "uci-har"}
    assert _data_options(SMLDistConfig(dataset="wisdm", data_path="/data/wisdm")) == {"dataset": "wisdm",
                                                                                      "data_path": "/data/wisdm"}


def test_teacher_and_student_start_from_their_own_seeds():
    """The teacher is initialised from the run's seed and the student from seed + 1000, so that the
    two never draw from the same stream and a run is reproduced from its config alone."""
    import numpy as np
    from tinysml.distill.pipeline import _models_for
    from tinysml.models import build_model, preset
    cfg = SMLDistConfig(seed=3, head={"kind": "linear"})
    teacher, student = _models_for(cfg, (6, 40), 4)
    for model, name, seed in ((teacher, "har-teacher", 3), (student, "har-student", 1003)):
        expected = build_model(preset(name, 6, 40, 4, head={"kind": "linear"}), seed=seed).state_dict()
        got = model.state_dict()
        assert set(got) == set(expected) and all(np.array_equal(got[k], expected[k]) for k in got), name
    assert cfg.head == {"kind": "linear"}                                   # the config's head is not changed
