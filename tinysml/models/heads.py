"""Classifier heads on the pooled feature h (B, d) -> logits (B, num_classes).

Every head is a Module with the same call signature, built from a small spec dict
(``{"kind": "linear", "dropout": 0.1}``) so that the spec can be saved in a checkpoint and searched
over (docs/algorithm.md, section 5).
"""
from __future__ import annotations

import math

import numpy as np

from .. import functions as F
from ..architecture import LN_EPS
from ..nn import Dropout, LayerNorm, Linear, Module, Parameter


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


class HopfieldHead(Module):
    """A modern-Hopfield memory of N learnable stored patterns X (N, d) (docs/algorithm.md, section 4):

        xi = W_q LN(h)                       query (B, d)
        p  = softmax(beta xi X^T)            association with every stored pattern (B, N)
        xi = p X                             retrieval; repeated ``steps`` times
        y  = W_o xi + b                      logits (B, K)

    beta = 1 / sqrt(d) unless given; ``learn_beta`` makes log(beta) a parameter.
    """

    def __init__(self, in_features, num_classes, rng, patterns=32, dim=64, beta=None, steps=1,
                 learn_beta=False, dropout=0.0, eps=LN_EPS):
        if patterns < num_classes:
            raise ValueError(f"a Hopfield head needs at least as many patterns as classes ({num_classes}), got {patterns}")
        if steps not in (1, 2):
            raise ValueError(f"Hopfield update steps must be 1 or 2, got {steps}")
        self.norm = LayerNorm(in_features, eps)
        self.query = Linear(in_features, dim, bias=False, rng=rng, std=1 / math.sqrt(in_features))
        # queries have ~unit-variance entries (LayerNorm, then W_q with std 1/sqrt(in)); unit-variance
        # patterns make beta <xi, x> ~ N(0, 1) at init, so associations start selective, not uniform
        self.patterns = Parameter(rng.normal(0, 1, (patterns, dim)).astype(np.float32))
        self.log_beta = Parameter(np.array([math.log(beta if beta else 1 / math.sqrt(dim))], np.float32))
        self.log_beta.requires_grad = learn_beta
        self.steps = steps
        self.dropout = Dropout(dropout)
        self.out = Linear(dim, num_classes, rng=rng)

    def associate(self, xi, patterns=None):
        """p = softmax(beta xi X^T): (B, d) queries against (N, d) patterns (this head's by default)."""
        X = self.patterns if patterns is None else patterns
        return F.softmax((xi @ X.T) * F.exp(self.log_beta), axis=1)         # (B, N)

    def query_of(self, h):
        return self.query(self.norm(h))                                     # (B, d)

    def forward(self, h, return_association=False):
        xi = self.query_of(self.dropout(h))
        first = None
        for _ in range(self.steps):
            p = self.associate(xi)
            first = p if first is None else first
            xi = p @ self.patterns                                          # (B, d)
        logits = self.out(xi)
        return (logits, first) if return_association else logits


class MixtureHead(Module):
    """The released code's gated mixture of heads (docs/algorithm.md, section 5):

        y = log sum_i alpha_i softmax(y_i),   alpha = softmax(w), w learnable, starting at 0

    Returned as log-probabilities, which are valid logits (softmax(log p) = p), so every loss
    treats this head like any other. ``heads`` is a list of head specs, e.g. a Hopfield memory
    unit and a linear "intuition" unit.
    """

    def __init__(self, in_features, num_classes, rng, heads=({"kind": "hopfield"}, {"kind": "linear"})):
        if not heads:
            raise ValueError("a mixture head needs at least one head")
        self.members = [build_head(spec, in_features, num_classes, rng) for spec in heads]
        for i, m in enumerate(self.members):
            setattr(self, f"head{i}", m)
        self.gate = Parameter(np.zeros(len(self.members), np.float32))

    def forward(self, h):
        alpha = F.softmax(self.gate, axis=0)                                    # (H,)
        mix = None
        for i, m in enumerate(self.members):
            term = F.softmax(m(h), axis=1) * alpha[i]
            mix = term if mix is None else mix + term
        return F.log(F.clip(mix, 1e-12, None))                                  # (B, K)


def memory_unit(head):
    """The Hopfield memory inside a head (the head itself, or a mixture's member), else None."""
    if isinstance(head, HopfieldHead):
        return head
    if isinstance(head, MixtureHead):
        return next((m for m in head.members if isinstance(m, HopfieldHead)), None)
    return None


HEADS = {"linear": LinearHead, "mlp": MLPHead, "hopfield": HopfieldHead, "mixture": MixtureHead}


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
