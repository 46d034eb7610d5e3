"""Stage distillation (docs/algorithm.md, section 3): the student's feature maps after each stage anchor are
pulled towards the teacher's, progressively, anchor by anchor.

Loss at one anchor, with F_S, F_T (B, C, L) and |X|_f = |rFFT_L F|_f over the length axis:

    L_stage = MSE(F_S, F_T) + gamma * sum_f a_f * mean_{b,c} (|X_S|_f - |X_T|_f)^2
    a = softmax_f( mean_{b,c} log(1 + |X_T|_f) / tau )        the teacher's frequency attention

gamma = 0 is the released code's plain MSE; ``uniform=True`` replaces a by 1/F (plain frequency loss).
When the anchor shapes differ, a 1x1 convolution adapts the student's channels and linear
interpolation its length.
"""
from __future__ import annotations

import numpy as np

from .. import functions as F
from ..nn import Conv1d, Module
from ..tensor import Tensor


def frequency_attention(F_T, tau: float = 1.0, uniform: bool = False):
    """a (F,) over the rFFT bins of teacher features F_T (B, C, L); sums to 1. An array, no graph."""
    data = F_T.data if isinstance(F_T, Tensor) else F_T
    xp = Tensor(data).xp
    mag = F.rfft_magnitude(Tensor(data)).data                        # (B, C, F)
    if uniform:
        return xp.full(mag.shape[-1], 1.0 / mag.shape[-1], dtype=data.dtype)
    score = xp.log1p(mag).mean(axis=(0, 1)) / tau                     # (F,)
    e = xp.exp(score - score.max())
    return (e / e.sum()).astype(data.dtype)


def stage_loss(F_S: Tensor, F_T, gamma: float = 1.0, tau: float = 1.0, uniform: bool = False) -> Tensor:
    """Time-domain MSE plus the teacher-attention-weighted spectral MSE (teacher is a constant)."""
    target = F_T.data if isinstance(F_T, Tensor) else F_T
    if tuple(F_S.shape) != tuple(target.shape):
        raise ValueError(f"stage features differ: student {tuple(F_S.shape)} vs teacher {tuple(target.shape)}; use an adapter")
    loss = F.mse_loss(F_S, Tensor(target))
    if gamma:
        a = frequency_attention(target, tau, uniform)                  # (F,)
        mag_T = F.rfft_magnitude(Tensor(target)).data                  # (B, C, F)
        diff = F.rfft_magnitude(F_S) - Tensor(mag_T)
        per_bin = (diff * diff).mean(axis=(0, 1))                      # (F,)
        loss = loss + gamma * (per_bin * Tensor(a)).sum()
    return loss


class StageAdapter(Module):
    """Maps a student stage feature (B, C_S, L_S) to the teacher's shape (B, C_T, L_T): 1x1 conv
    when the channels differ, linear interpolation when the lengths differ; identity otherwise."""

    def __init__(self, student_shape, teacher_shape, rng=None):
        (cs, _), (ct, lt) = student_shape, teacher_shape
        self.conv = Conv1d(cs, ct, 1, bias=False, rng=rng or np.random.default_rng(0)) if cs != ct else None
        self.length = lt

    def forward(self, f):
        if self.conv is not None:
            f = self.conv(f)
        return F.interpolate_linear(f, self.length)


class StudentStages(Module):
    """The student with one adapter per anchor: what stage distillation optimises."""

    def __init__(self, student, teacher, seed: int = 0):
        self.student = student
        rng = np.random.default_rng(seed)
        s_shapes, t_shapes = student.stage_shapes(), teacher.stage_shapes()
        if len(s_shapes) != len(t_shapes):
            raise ValueError(f"the student has {len(s_shapes)} stage anchors and the teacher {len(t_shapes)}")
        self.adapters = [StageAdapter(s, t, rng) for s, t in zip(s_shapes, t_shapes)]
        for i, a in enumerate(self.adapters):
            setattr(self, f"adapter{i}", a)

    def stage_parameters(self, s: int) -> list:
        """Parameters that influence stage feature s: stem, bottlenecks up to anchor s, adapter s."""
        last = self.student.anchors[s]
        params = self.student.stem.parameters()
        for i in range(last + 1):
            params += self.student.blocks[i].parameters()
        return params + self.adapters[s].parameters()

    def forward(self, x):
        return self.student(x)

    def stage_feature(self, x, s: int):
        stages, _ = self.student.forward_stages(x, upto=s)
        return self.adapters[s](stages[s])
