"""Classifier heads on the pooled feature h (B, d) -> logits (B, num_classes).

Every head is a Module with the same call signature, built from a small spec dict
(``{"kind": "linear", "dropout": 0.1}``) so that the spec can be saved in a checkpoint and searched
over (SPEC.md section 5).
"""
from __future__ import annotations

from .. import functions as F
from ..nn import Dropout, Linear, Module


class LinearHead(Module):
    """dropout -> Linear(d -> K)."""

    def __init__(self, in_features, num_classes, rng, dropout=0.0):
        self.dropout = Dropout(dropout)
        self.fc = Linear(in_features, num_classes, rng=rng)

    def forward(self, h):
        return self.fc(self.dropout(h))


class MLPHead(Module):
    """Linear(d -> hidden) -> hardswish -> dropout -> Linear(hidden -> K)."""

    def __init__(self, in_features, num_classes, rng, hidden=128, dropout=0.0):
        self.fc1 = Linear(in_features, hidden, rng=rng)
        self.dropout = Dropout(dropout)
        self.fc2 = Linear(hidden, num_classes, rng=rng)

    def forward(self, h):
        return self.fc2(self.dropout(F.hardswish(self.fc1(h))))


HEADS = {"linear": LinearHead, "mlp": MLPHead}


def build_head(spec: dict, in_features: int, num_classes: int, rng) -> Module:
    """A head from its spec: ``kind`` names the class, the other keys are its hyper-parameters."""
    spec = dict(spec)
    kind = spec.pop("kind", "linear")
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; expected one of {sorted(HEADS)}")
    try:
        return HEADS[kind](in_features, num_classes, rng, **spec)
    except TypeError as err:
        raise ValueError(f"bad hyper-parameters for head {kind!r}: {err}") from err
