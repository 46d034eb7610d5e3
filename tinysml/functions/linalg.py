"""Matrix products.

Inside ``with batch_invariant():`` (tinysml.tensor) the forward products run one row of the left
operand at a time (a stack of (1, k) @ (k, n) products, one BLAS call for the stack): each row's
sums then run in the same order however many rows the batch has (a BLAS matrix product picks its
blocking by the matrix size, which moves the last bits). About 3x slower for these small products.
"""
from __future__ import annotations

from ..backend import kernels_for
from ..tensor import Function, is_batch_invariant
from .elementwise import unbroadcast


def mm(a, b):
    """a @ b on arrays, by the backend's ``matmul`` (NumPy's on the CPU, the GEMM kernel on a GPU)."""
    return kernels_for(a).matmul(a, b)


def _product(a, b):
    """a @ b; row by row inside ``batch_invariant``: a (..., n, k) -> (..., n, 1, k) against
    b (..., 1, k, m), so b's batch dimensions stay aligned with a's."""
    return mm(a[..., None, :], b[..., None, :, :])[..., 0, :] if is_batch_invariant() else mm(a, b)


class MatMul(Function):
    """y = a @ b for arrays of ndim >= 2 with batch broadcasting;  ga = g b^T,  gb = a^T g."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs arrays of at least 2 dimensions, got shapes {a.shape} and {b.shape}")
        ctx.save(a, b)
        return _product(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(mm(g, b.swapaxes(-1, -2)), a.shape) if ctx.needs_grad[0] else None
        gb = unbroadcast(mm(a.swapaxes(-1, -2), g), b.shape) if ctx.needs_grad[1] else None
        return ga, gb


class Linear(Function):
    """y = x W^T + b: x (N, in), W (out, in), b (out,) -> y (N, out). One fused op for the hot path."""

    @staticmethod
    def forward(ctx, x, w, b=None):
        if x.ndim != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(f"linear expected input of shape (N, {w.shape[1]}), got {x.shape}")
        ctx.save(x, w)
        y = _product(x, w.T)
        return y if b is None else y + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        gx = mm(g, w) if ctx.needs_grad[0] else None
        gw = mm(g.T, x) if ctx.needs_grad[1] else None
        return (gx, gw) if len(ctx.parents) == 2 else (gx, gw, g.sum(axis=0))


def matmul(a, b): return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)
