"""Magnitude of the real DFT over the length axis, differentiable (for the frequency-aware
stage loss). At HAR lengths (L <= a few hundred) a DFT as two matrix products is fast and works
the same on NumPy and CuPy.

    Re[f] =  sum_t x[t] cos(2 pi f t / L),   Im[f] = -sum_t x[t] sin(2 pi f t / L),   f = 0 .. L//2
    |X|[f] = sqrt(Re^2 + Im^2)
    d|X|/dx = (Re cos + Im (-sin)) / |X|     (taken as 0 where |X| = 0)
"""
from __future__ import annotations

import functools

import numpy as np

from ..backend import constant_on, get_array_module
from ..tensor import Function
from .linalg import mm


@functools.lru_cache(maxsize=32)
def dft_matrices(L: int, dtype: str):
    """cos and -sin matrices (L, L//2 + 1) so that Re = x @ C and Im = x @ S (numpy.fft.rfft's sign)."""
    t = np.arange(L)[:, None]
    f = np.arange(L // 2 + 1)[None, :]
    angle = 2 * np.pi * ((t * f) % L) / L
    return np.cos(angle).astype(dtype), (-np.sin(angle)).astype(dtype)


class RFFTMagnitude(Function):
    @staticmethod
    def forward(ctx, x):
        xp = get_array_module(x)
        key = (x.shape[-1], x.dtype.str)
        C, S = (constant_on(xp, ("dft", i) + key, lambda i=i: dft_matrices(*key)[i]) for i in (0, 1))
        re, im = mm(x, C), mm(x, S)                                 # (..., F)
        mag = xp.sqrt(re * re + im * im)
        ctx.save(re, im, mag, C, S)
        return mag

    @staticmethod
    def backward(ctx, g):
        re, im, mag, C, S = ctx.saved
        xp = get_array_module(g)
        safe = xp.where(mag > 0, mag, 1)
        scale = xp.where(mag > 0, g / safe, 0)
        return mm(scale * re, C.T) + mm(scale * im, S.T)


def rfft_magnitude(x):
    """|rFFT(x)| over the last axis: (..., L) -> (..., L//2 + 1)."""
    return RFFTMagnitude.apply(x)
