"""Memory distillation (docs/algorithm.md, section 4): the student learns to retrieve the teacher's memories
the way the teacher does.

1. Transplant: the teacher's stored patterns X_T and output map W_o are copied into the student's
   Hopfield head (the student keeps its own query map, which sees its own features).
2. Loss: KL(p_T || p_S), where p_T = softmax(beta_T xi_T X_T^T) is the teacher's association and
   p_S = softmax(beta_S xi_S X_T^T) the association of the *student's* query with the *teacher's*
   memory (a constant). It is 0 exactly when both queries retrieve the same mixture of memories.
"""
from __future__ import annotations

from .. import functions as F
from ..models.heads import HopfieldHead, memory_unit
from ..tensor import Tensor, no_grad


def transplant(teacher_head, student_head) -> str:
    """Copy the teacher's head into the student's. Same architecture (equal feature widths): the
    whole head, as the released code does. Otherwise: the memory (patterns, beta) and output map
    of the Hopfield unit, the student keeping its own query map. Returns which was done."""
    try:
        student_head.load_state_dict({k: v.copy() for k, v in teacher_head.state_dict().items()})
        return "whole head"
    except ValueError:
        pass
    t, s = memory_unit(teacher_head), memory_unit(student_head)
    if t is None or s is None:
        raise TypeError(f"memory distillation needs Hopfield memories, got {type(teacher_head).__name__} "
                        f"and {type(student_head).__name__}")
    if t.patterns.shape != s.patterns.shape or t.out.weight.shape != s.out.weight.shape:
        raise ValueError(f"memories differ: teacher {t.patterns.shape} / {t.out.weight.shape}, "
                         f"student {s.patterns.shape} / {s.out.weight.shape}")
    s.patterns.data[...] = t.patterns.data
    s.log_beta.data[...] = t.log_beta.data
    s.out.weight.data[...] = t.out.weight.data
    s.out.bias.data[...] = t.out.bias.data
    return "memory and output map"


def teacher_association(teacher_head, h_teacher):
    """p_T (B, N) of the teacher's memory unit for its pooled features h_teacher (B, d_h), and the
    patterns X_T (N, d), without a graph. Takes the features, not the windows, so that a training
    step runs the teacher's backbone once for its logits and its memory alike."""
    unit = memory_unit(teacher_head)
    if unit is None:
        raise TypeError(f"the teacher's head ({type(teacher_head).__name__}) holds no Hopfield memory")
    with no_grad():
        p = unit.associate(unit.query_of(h_teacher))
    return p.data, unit.patterns.data


def memory_loss(student_unit: HopfieldHead, h_student, p_teacher, teacher_patterns) -> Tensor:
    """KL(p_T || p_S) with p_S the student's query associated with the teacher's patterns."""
    xi = student_unit.query_of(h_student)
    logits = (xi @ Tensor(teacher_patterns).T) * F.exp(student_unit.log_beta)
    return F.kl_div(p_teacher, F.log_softmax(logits, axis=1))
