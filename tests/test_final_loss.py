"""The end-to-end phase's loss of every method (tinysml/distill/final_loss.py), composed by hand from
the losses it should add up, with every weight and temperature set away from its default so that a
weight read from the wrong field, dropped or changed shows; and the teacher's outputs read from its
cache give the loss a teacher forward gives."""
import dataclasses

import numpy as np
import pytest

from tinysml import Tensor
from tinysml import functions as F
from tinysml.distill import (attention_transfer_loss, direct_conditional_loss, fitnet_hint_loss, hinton_kd_loss,
                             memory_loss, smoothed_conditional_loss)
from tinysml.distill.final_loss import WithAdapter, final_loss
from tinysml.distill.pipeline import SMLDistConfig, _models_for
from tinysml.distill.stage import StageAdapter
from tinysml.distill.teacher_cache import TeacherOutputs, teacher_forward
from tinysml.models.heads import memory_unit

SHAPE, K, N = (3, 64), 4, 10
CFG = SMLDistConfig(dataset="basicmotions", lam=0.7, T=2.5, eta=0.8, mu=0.3, kd_T=3.0, kd_alpha=0.6, hint_beta=0.4,
                    at_beta=50.0)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    teacher, student = _models_for(CFG, SHAPE, K)
    teacher.eval()
    X = rng.standard_normal((N, *SHAPE)).astype(np.float32)
    y = np.arange(N) % K
    outputs = TeacherOutputs(teacher_forward(teacher, Tensor(X)))
    return teacher, student, X, y, outputs


def _loss(config, teacher, student, X, y, outputs=None, extra=None, model=None):
    idx = np.arange(len(y))
    fn = final_loss(config, teacher, student, extra or {}, outputs)
    return fn(model or student, Tensor(X), y, idx).item()


def test_no_distillation_is_the_cross_entropy(setup):
    teacher, student, X, y, _ = setup
    expected = F.cross_entropy(student(Tensor(X)), y).item()
    assert _loss(dataclasses.replace(CFG, method="none"), teacher, student, X, y) == pytest.approx(expected, rel=1e-6)


def test_kd_reads_its_own_temperature_and_weight(setup):
    teacher, student, X, y, outputs = setup
    t = teacher_forward(teacher, Tensor(X))["logits"]
    expected = hinton_kd_loss(student(Tensor(X)), t, y, 3.0, 0.6).item()
    assert expected != pytest.approx(hinton_kd_loss(student(Tensor(X)), t, y, 4.0, 0.9).item(), rel=1e-3)
    cfg = dataclasses.replace(CFG, method="kd")
    assert _loss(cfg, teacher, student, X, y) == pytest.approx(expected, rel=1e-6)
    assert _loss(cfg, teacher, student, X, y, outputs) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("form", ["released", "direct"])
def test_smldist_is_the_logits_loss_plus_mu_times_the_memory_loss(setup, form):
    teacher, student, X, y, outputs = setup
    t = teacher_forward(teacher, Tensor(X))
    h = student.features(Tensor(X))
    z_s = student.classifier(h)
    if form == "direct":
        logits = direct_conditional_loss(z_s, t["logits"], y, 0.7, 0.8).item()
    else:
        logits = smoothed_conditional_loss(z_s, t["logits"], y, 0.7, 2.5, 0.8).item()
    unit, t_unit = memory_unit(student.classifier), memory_unit(teacher.classifier)
    memory = memory_loss(unit, h, t["association"], t_unit.patterns.data).item()
    assert memory > 1e-4                                     # the memory term is there to be seen
    cfg = dataclasses.replace(CFG, logits_form=form)
    for cache in (None, outputs):
        assert _loss(cfg, teacher, student, X, y, cache) == pytest.approx(logits + 0.3 * memory, rel=1e-5)
    assert _loss(dataclasses.replace(cfg, mu=0.0), teacher, student, X, y) == pytest.approx(logits, rel=1e-5)


def test_no_memory_term_without_two_memories_of_one_width(setup):
    teacher, _, X, y, _ = setup
    t = teacher_forward(teacher, Tensor(X))["logits"]
    for head in ({"kind": "linear"}, {"kind": "hopfield", "patterns": 8, "dim": 16}):   # none; another width
        other = dataclasses.replace(CFG, head=head)
        _, student = _models_for(other, SHAPE, K)
        z_s = student.classifier(student.features(Tensor(X)))
        expected = smoothed_conditional_loss(z_s, t, y, 0.7, 2.5, 0.8).item()
        assert _loss(CFG, teacher, student, X, y) == pytest.approx(expected, rel=1e-5)
    _, student = _models_for(CFG, SHAPE, K)
    linear_teacher, _ = _models_for(dataclasses.replace(CFG, head={"kind": "linear"}), SHAPE, K)
    linear_teacher.eval()
    z_s = student.classifier(student.features(Tensor(X)))
    expected = smoothed_conditional_loss(z_s, teacher_forward(linear_teacher, Tensor(X))["logits"], y, 0.7, 2.5,
                                         0.8).item()
    assert _loss(CFG, linear_teacher, student, X, y) == pytest.approx(expected, rel=1e-5)


def test_fitnets_adds_beta_times_the_hint_at_the_middle_anchor(setup):
    teacher, student, X, y, outputs = setup
    mid = len(student.anchors) // 2
    adapter = StageAdapter(student.stage_shapes()[mid], teacher.stage_shapes()[mid], np.random.default_rng(1))
    logits, stages = student(Tensor(X), return_stages=True)
    t = teacher_forward(teacher, Tensor(X))
    hint = fitnet_hint_loss(adapter(stages[mid]), t[f"stage{mid}"]).item()
    expected = F.cross_entropy(logits, y).item() + 0.4 * hint
    cfg = dataclasses.replace(CFG, method="fitnet")
    model = WithAdapter(student, adapter)
    for cache in (None, outputs):
        assert _loss(cfg, teacher, student, X, y, cache, {"hint_adapter": adapter}, model) == pytest.approx(expected, rel=1e-5)


def test_attention_transfer_adds_its_beta_over_every_anchor(setup):
    teacher, student, X, y, outputs = setup
    logits, stages = student(Tensor(X), return_stages=True)
    t = teacher_forward(teacher, Tensor(X))
    at = attention_transfer_loss(stages, [t[f"stage{i}"] for i in range(len(stages))], 50.0).item()
    first_only = attention_transfer_loss(stages[:1], [t["stage0"]], 50.0).item()
    assert at != pytest.approx(first_only, rel=1e-3)
    expected = F.cross_entropy(logits, y).item() + at
    cfg = dataclasses.replace(CFG, method="at")
    for cache in (None, outputs):
        assert _loss(cfg, teacher, student, X, y, cache) == pytest.approx(expected, rel=1e-5)


def test_with_adapter_is_the_student_and_trains_the_adapter_too(setup):
    _, student, X, _, _ = setup
    adapter = StageAdapter(student.stage_shapes()[1], (8, 4), np.random.default_rng(2))
    model = WithAdapter(student, adapter)
    assert model.student is student and model.hint_adapter is adapter
    np.testing.assert_array_equal(model(Tensor(X)).data, student(Tensor(X)).data)
    logits, stages = model(Tensor(X), return_stages=True)                 # keyword arguments pass through
    assert len(stages) == len(student.anchors)
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in adapter.parameters()} <= ids and {id(p) for p in student.parameters()} <= ids


def test_with_the_cache_the_teacher_is_not_run(setup):
    """The cache's point: a step reads the teacher's outputs for its batch instead of running it."""
    teacher, student, X, y, outputs = setup

    class Unrunnable:
        classifier = teacher.classifier

        def features(self, *args, **kwargs):
            raise AssertionError("the teacher ran although its outputs were cached")
        __call__ = features

    for method in ("smldist", "kd", "at"):
        cfg = dataclasses.replace(CFG, method=method)
        assert _loss(cfg, Unrunnable(), student, X, y, outputs) == pytest.approx(_loss(cfg, teacher, student, X, y), rel=1e-6)


def test_fitnets_hint_sits_at_the_middle_anchor_of_any_depth():
    """With four anchors the middle one is the third (index 2): the hint adapter the pipeline builds
    for it fits there and nowhere else."""
    from tinysml.models import build_model, preset
    from tinysml.models.mobilenet import _rows
    blocks = _rows("""
3   48   16   24  -   SELU 1  A
5   72   24   48  SE  SELU 2  A
5  144   48   96  SE  hsw  2  A
3  240   96  160  SE  hsw  2  A
""")
    student = build_model(preset("har-student", *SHAPE, K, blocks=blocks), seed=0)
    teacher = build_model(preset("har-student", *SHAPE, K, blocks=blocks), seed=1)
    teacher.eval()
    assert len(student.anchors) == 4
    adapter = StageAdapter(student.stage_shapes()[2], teacher.stage_shapes()[2], np.random.default_rng(1))
    X, y = np.random.default_rng(2).standard_normal((4, *SHAPE)).astype(np.float32), np.arange(4) % K
    logits, stages = student(Tensor(X), return_stages=True)
    t = teacher_forward(teacher, Tensor(X))
    expected = F.cross_entropy(logits, y).item() + 0.4 * fitnet_hint_loss(adapter(stages[2]), t["stage2"]).item()
    got = _loss(dataclasses.replace(CFG, method="fitnet"), teacher, student, X, y, None, {"hint_adapter": adapter},
                WithAdapter(student, adapter))
    assert got == pytest.approx(expected, rel=1e-5)
