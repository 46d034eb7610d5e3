"""Memory distillation (SPEC.md section 4): the student learns to retrieve the teacher's memories
the way the teacher does.

1. Transplant: the teacher's stored patterns X_T and output map W_o are copied into the student's
   Hopfield head (the student keeps its own query map, which sees its own features).
2. Loss: KL(p_T || p_S), where p_T = softmax(beta_T xi_T X_T^T) is the teacher's association and
   p_S = softmax(beta_S xi_S X_T^T) the association of the *student's* query with the *teacher's*
   memory (a constant). It is 0 exactly when both queries retrieve the same mixture of memories.
"""
from __future__ import annotations

from .. import functions as F
from ..models.heads import HopfieldHead
from ..tensor import Tensor, no_grad


def transplant(teacher_head: HopfieldHead, student_head: HopfieldHead) -> None:
    """Copy the teacher's memory (patterns, beta) and output map into the student's head."""
    for head in (teacher_head, student_head):
        if not isinstance(head, HopfieldHead):
            raise TypeError(f"memory distillation needs Hopfield heads, got {type(head).__name__}")
    if teacher_head.patterns.shape != student_head.patterns.shape or \
            teacher_head.out.weight.shape != student_head.out.weight.shape:
        raise ValueError(f"memories differ: teacher {teacher_head.patterns.shape} / {teacher_head.out.weight.shape}, "
                         f"student {student_head.patterns.shape} / {student_head.out.weight.shape}")
    student_head.patterns.data[...] = teacher_head.patterns.data
    student_head.log_beta.data[...] = teacher_head.log_beta.data
    student_head.out.weight.data[...] = teacher_head.out.weight.data
    student_head.out.bias.data[...] = teacher_head.out.bias.data


def teacher_association(teacher, x):
    """p_T (B, N) and the teacher's memory X_T (N, d), without a graph."""
    with no_grad():
        h = teacher.features(x)
        head = teacher.classifier
        p = head.associate(head.query_of(h))
    return p.data, head.patterns.data


def memory_loss(student_head: HopfieldHead, h_student, p_teacher, teacher_patterns) -> Tensor:
    """KL(p_T || p_S) with p_S the student's query associated with the teacher's patterns."""
    xi = student_head.query_of(h_student)
    logits = (xi @ Tensor(teacher_patterns).T) * F.exp(student_head.log_beta)
    return F.kl_div(p_teacher, F.log_softmax(logits, axis=1))
