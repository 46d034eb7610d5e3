"""Feature-distillation baselines on the same student and budget: FitNets and attention transfer.

FitNets (Romero et al. 2015): a hint loss MSE(adapter(F_S), F_T) at the middle stage anchor,
through a 1x1 convolution adapter, added to the cross-entropy.
Attention transfer (Zagoruyko & Komodakis 2017): at every anchor, the spatial (here: temporal)
attention map a(F) = mean_c F^2, L2-normalised per sample; loss = beta/2 sum_anchors
mean_b || a_S - a_T ||^2, added to the cross-entropy.
"""
from __future__ import annotations

from .. import functions as F
from ..tensor import Tensor


def attention_map(f):
    """(B, C, L) -> (B, L): mean over channels of f^2, divided by its L2 norm over L."""
    a = (f * f).mean(axis=1)
    return a / F.sqrt((a * a).sum(axis=1, keepdims=True) + 1e-12)


def attention_transfer_loss(student_stages, teacher_stages, beta: float = 1000.0) -> Tensor:
    total = None
    for fs, ft in zip(student_stages, teacher_stages):
        a_s = attention_map(fs)
        if a_s.shape[1] != ft.shape[2]:
            a_s = F.interpolate_linear(a_s.reshape(a_s.shape[0], 1, a_s.shape[1]), ft.shape[2]).reshape(a_s.shape[0], ft.shape[2])
        a_t = attention_map(Tensor(ft.data if isinstance(ft, Tensor) else ft)).data
        d = a_s - Tensor(a_t)
        term = (d * d).sum(axis=1).mean()
        total = term if total is None else total + term
    return total * (beta / 2)


def fitnet_hint_loss(adapted_student_feature, teacher_feature) -> Tensor:
    return F.mse_loss(adapted_student_feature, Tensor(teacher_feature.data if isinstance(teacher_feature, Tensor) else teacher_feature))
