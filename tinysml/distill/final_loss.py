"""The end-to-end phase's loss of each method (SMLDist, KD, FitNets, AT, none), reading the frozen
teacher's outputs for a batch from its cache or from one teacher forward per step."""
from __future__ import annotations

from .. import functions as F
from ..backend import get_array_module
from ..models.heads import memory_unit
from ..nn import Module
from .baselines import attention_transfer_loss, fitnet_hint_loss
from .logits import direct_conditional_loss, hinton_kd_loss, smoothed_conditional_loss
from .memory import memory_loss
from .teacher_cache import teacher_forward


def final_loss(config, teacher, student, extra: dict, outputs=None):
    """loss_fn(model, x, y, idx) of the method's end-to-end phase. The teacher's outputs for the
    batch come from ``outputs`` (its cache) or from one teacher forward per step."""
    method = config.method
    unit, t_unit = memory_unit(student.classifier), memory_unit(teacher.classifier)
    use_memory = (method == "smldist" and config.mu > 0 and unit is not None and t_unit is not None
                  and unit.patterns.shape[1] == t_unit.patterns.shape[1])

    def loss_fn(model, x, y, idx):
        if method == "none":
            return F.cross_entropy(student(x), y)
        t = outputs.batch(idx, get_array_module(x.data)) if outputs is not None else teacher_forward(teacher, x)
        if method == "smldist":
            h = student.features(x)
            z_s = student.classifier(h)
            if config.logits_form == "direct":
                loss = direct_conditional_loss(z_s, t["logits"], y, config.lam, config.eta)
            else:
                loss = smoothed_conditional_loss(z_s, t["logits"], y, config.lam, config.T, config.eta)
            if use_memory:
                loss = loss + config.mu * memory_loss(unit, h, t["association"], t_unit.patterns.data)
            return loss
        if method == "kd":
            return hinton_kd_loss(student(x), t["logits"], y, config.kd_T, config.kd_alpha)
        logits, s_stages = student(x, return_stages=True)
        ce = F.cross_entropy(logits, y)
        t_stages = [t[f"stage{i}"] for i in range(len(s_stages))]
        if method == "fitnet":
            mid = len(s_stages) // 2
            return ce + config.hint_beta * fitnet_hint_loss(extra["hint_adapter"](s_stages[mid]), t_stages[mid])
        return ce + attention_transfer_loss(s_stages, t_stages, config.at_beta)   # at

    return loss_fn


class WithAdapter(Module):
    """The student plus the FitNets hint adapter (trained together, the adapter then discarded)."""

    def __init__(self, student, adapter):
        self.student, self.hint_adapter = student, adapter

    def __call__(self, *args, **kwargs):
        return self.student(*args, **kwargs)
