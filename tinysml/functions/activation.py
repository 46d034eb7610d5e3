"""Activations (through the backend's ``act_fwd``/``act_bwd`` kernels), softmax and dropout."""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, kernels_for
from ..cuda_graph import dropout_mask
from ..tensor import Function


class Activation(Function):
    """y = act(x) elementwise; ``name`` is one of kernels.reference.ACTIVATIONS."""

    @staticmethod
    def forward(ctx, x, name):
        ctx.save(x)
        ctx.name = name
        return kernels_for(x).act_fwd(name, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return kernels_for(x).act_bwd(ctx.name, x, g)


def activation(x, name: str):
    return Activation.apply(x, name=name)


def relu(x): return Activation.apply(x, name="relu")
def relu6(x): return Activation.apply(x, name="relu6")
def hardswish(x): return Activation.apply(x, name="hardswish")
def hardsigmoid(x): return Activation.apply(x, name="hardsigmoid")
def sigmoid(x): return Activation.apply(x, name="sigmoid")
def selu(x): return Activation.apply(x, name="selu")


class Softmax(Function):
    """y = exp(x - max) / sum exp(x - max) along ``axis``;  gx = y (g - sum(g y))."""

    @staticmethod
    def forward(ctx, x, axis):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - max - log sum exp(x - max);  gx = g - softmax(x) sum(g)."""

    @staticmethod
    def forward(ctx, x, axis):
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        xp = get_array_module(y)
        return g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(x, axis: int = -1): return Softmax.apply(x, axis=axis)
def log_softmax(x, axis: int = -1): return LogSoftmax.apply(x, axis=axis)


class Dropout(Function):
    """y = x m / (1 - p) with m ~ Bernoulli(1 - p), drawn from ``rng`` (a numpy Generator; None: the
    global one)."""

    @staticmethod
    def forward(ctx, x, p, rng):
        mask = dropout_mask(rng, x.shape, p, get_array_module(x), x.dtype)   # drawn on the host (cuda_graph.py)
        ctx.save(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


def dropout(x, p: float, training: bool = True, rng: np.random.Generator | None = None):
    """Inverted dropout: identity when not training or p == 0."""
    if not training or p == 0:
        return x
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return Dropout.apply(x, p=p, rng=rng)          # None: the global generator, at draw time
