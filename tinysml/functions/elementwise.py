"""Elementwise arithmetic with NumPy broadcasting, and elementwise math."""
from __future__ import annotations

from ..backend import get_array_module
from ..cuda_graph import device_constant
from ..tensor import Function, Tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: undo the broadcasting that produced it."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def lift(a, like):
    """Make ``a`` a Tensor with the dtype and array module of ``like`` (for Python numbers)."""
    if isinstance(a, Tensor):
        return a
    data = like.data if isinstance(like, Tensor) else like
    return Tensor(device_constant(a, data))


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, lift(b, a)
    return lift(a, b), b


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g * b, a.shape) if ctx.needs_grad[0] else None
        gb = unbroadcast(g * a, b.shape) if ctx.needs_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g / b, a.shape) if ctx.needs_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if ctx.needs_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** p for a constant exponent p."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save(a)
        ctx.exponent = exponent
        return a ** exponent

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        p = ctx.exponent
        return g * (p * a ** (p - 1))


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = get_array_module(a).exp(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = get_array_module(a).sqrt(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g / (2 * ctx.saved[0])


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return get_array_module(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        return g * get_array_module(g).sign(ctx.saved[0])


class Maximum(Function):
    """Elementwise maximum; at ties the gradient goes to the first argument."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return get_array_module(a).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        first = a >= b
        return unbroadcast(g * first, a.shape), unbroadcast(g * ~first, b.shape)


class Clip(Function):
    @staticmethod
    def forward(ctx, a, low, high):
        ctx.save(a)
        ctx.bounds = low, high
        return get_array_module(a).clip(a, low, high)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        low, high = ctx.bounds
        inside = (a >= (low if low is not None else -float("inf"))) & (a <= (high if high is not None else float("inf")))
        return g * inside


class Where(Function):
    """where(cond, a, b) with a constant boolean mask ``cond``."""

    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.cond = cond
        ctx.shapes = a.shape, b.shape
        return get_array_module(a).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g * ctx.cond, sa), unbroadcast(g * ~ctx.cond, sb)


def add(a, b): return Add.apply(*_pair(a, b))
def sub(a, b): return Sub.apply(*_pair(a, b))
def mul(a, b): return Mul.apply(*_pair(a, b))
def div(a, b): return Div.apply(*_pair(a, b))
def neg(a): return Neg.apply(a)
def pow(a, exponent: float): return Pow.apply(a, exponent=exponent)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def sqrt(a): return Sqrt.apply(a)
def abs(a): return Abs.apply(a)
def maximum(a, b): return Maximum.apply(*_pair(a, b))
def clip(a, low=None, high=None): return Clip.apply(a, low=low, high=high)


def where(cond, a, b):
    """Elementwise choice between two tensors; ``cond`` is a boolean array (not differentiated)."""
    a, b = _pair(a, b)
    cond = cond.data if isinstance(cond, Tensor) else cond
    return Where.apply(a, b, cond=cond)
