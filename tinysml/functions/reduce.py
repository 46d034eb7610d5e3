"""Reductions over axes: sum, mean, max (and var, built from them)."""
from __future__ import annotations

from ..backend import get_array_module
from ..tensor import Function


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _expand(g, axes, keepdims):
    """Re-insert the reduced axes of ``g`` (when they were dropped) so it broadcasts against the input."""
    if not keepdims:
        for a in sorted(axes):
            g = get_array_module(g).expand_dims(g, a)
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.axes = _normalize_axes(axis, x.ndim)
        ctx.keepdims, ctx.shape = keepdims, x.shape
        return x.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand(g, ctx.axes, ctx.keepdims)
        return get_array_module(g).broadcast_to(g, ctx.shape).copy()


class Mean(Function):
    """y = sum(x over axes) / n, n the number of reduced elements; dx = g / n broadcast back.
    One node (a Sum and a scaling were two; the losses and ``var`` use it)."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.axes = _normalize_axes(axis, x.ndim)
        ctx.keepdims, ctx.shape = keepdims, x.shape
        count = 1
        for a in ctx.axes:
            count *= x.shape[a]
        ctx.inv_count = x.dtype.type(1.0 / count)    # a sum times 1/n (cheaper than NumPy's mean on small arrays)
        return x.sum(axis=ctx.axes, keepdims=keepdims) * ctx.inv_count

    @staticmethod
    def backward(ctx, g):
        g = _expand(g, ctx.axes, ctx.keepdims) * ctx.inv_count
        return get_array_module(g).broadcast_to(g, ctx.shape).copy()


class Max(Function):
    """Maximum over axes; the gradient is shared equally between tied maxima."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.axes = _normalize_axes(axis, x.ndim)
        ctx.keepdims = keepdims
        y = x.max(axis=ctx.axes, keepdims=True)
        ctx.save(x, y)
        return y if keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in ctx.axes])

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved
        g = _expand(g, ctx.axes, ctx.keepdims)
        hit = (x == y).astype(x.dtype)
        return hit * (g / hit.sum(axis=ctx.axes, keepdims=True))


def sum(x, axis=None, keepdims=False):  # noqa: A001 - mirrors numpy
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 - mirrors numpy
    return Max.apply(x, axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    """Biased variance: mean((x - mean x)^2)."""
    centred = x - mean(x, axis, keepdims=True)
    return mean(centred * centred, axis, keepdims)
