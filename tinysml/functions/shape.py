"""Movement operations: reshape, transpose, indexing, concatenation, padding, and linear
interpolation over the length axis (used to align feature maps of different lengths)."""
from __future__ import annotations

import functools

import numpy as np

from ..backend import constant_on, get_array_module
from ..tensor import Function, Tensor
from .linalg import mm


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
        return x.transpose(ctx.axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes))


class GetItem(Function):
    """x[index] for basic and integer-array indexing; repeated indices accumulate."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.index, ctx.shape = index, x.shape
        return x[index]

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        gx = xp.zeros(ctx.shape, dtype=g.dtype)
        xp.add.at(gx, ctx.index, g)                  # unbuffered: a repeated index adds each time
        return gx


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        bounds = np.cumsum(ctx.sizes)[:-1]
        return tuple(get_array_module(g).split(g, bounds, axis=ctx.axis))


class Pad(Function):
    """Constant (zero by default) padding: ``widths`` as for numpy.pad, one (before, after) per axis."""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.crop = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        return get_array_module(x).pad(x, widths, constant_values=value)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.crop]


@functools.lru_cache(maxsize=64)
def _interp_matrix(L_in: int, L_out: int, dtype: str) -> np.ndarray:
    """M (L_in, L_out) with y = x @ M the linear interpolation of PyTorch's
    ``interpolate(mode='linear', align_corners=False)``: source position (i + 0.5) L_in / L_out - 0.5,
    clamped at 0, blended between its two neighbours."""
    src = np.maximum((np.arange(L_out) + 0.5) * (L_in / L_out) - 0.5, 0.0)
    left = np.minimum(np.floor(src).astype(np.int64), L_in - 1)
    right = np.minimum(left + 1, L_in - 1)
    frac = src - left
    M = np.zeros((L_in, L_out), dtype=np.float64)
    np.add.at(M, (left, np.arange(L_out)), 1 - frac)
    np.add.at(M, (right, np.arange(L_out)), frac)
    return M.astype(dtype)


class InterpolateLinear(Function):
    @staticmethod
    def forward(ctx, x, length):
        xp = get_array_module(x)
        key = (x.shape[-1], length, x.dtype.str)
        M = constant_on(xp, ("interpolate",) + key, lambda: _interp_matrix(*key))
        ctx.save(M)
        return mm(x, M)

    @staticmethod
    def backward(ctx, g):
        return mm(g, ctx.saved[0].T)


def reshape(x, shape): return Reshape.apply(x, shape=tuple(shape))
def transpose(x, axes=None): return Transpose.apply(x, axes=axes)
def flatten(x, start_axis: int = 1): return Reshape.apply(x, shape=x.shape[:start_axis] + (-1,))


def getitem(x, index):
    if isinstance(index, Tensor):          # a Tensor holds floats: as an index, its whole numbers
        whole = index.data.astype(np.int64)
        if not bool((whole == index.data).all()):
            raise IndexError(f"a Tensor used as an index must hold whole numbers; got {index}")
        index = whole
    return GetItem.apply(x, index=index)


def concat(tensors, axis: int = 0):
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0):
    expanded = [reshape(t, t.shape[:axis % (t.ndim + 1)] + (1,) + t.shape[axis % (t.ndim + 1):]) for t in tensors]
    return concat(expanded, axis=axis)


def pad(x, widths, value: float = 0.0):
    return Pad.apply(x, widths=tuple(tuple(w) for w in widths), value=value)


def interpolate_linear(x, length: int):
    """Resample (..., L) to (..., length) linearly (align_corners=False); identity when equal."""
    if x.shape[-1] == length:
        return x
    return InterpolateLinear.apply(x, length=int(length))
