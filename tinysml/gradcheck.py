"""Gradient checks by central finite differences, in float64.

``gradcheck`` compares every element of the analytic gradient of ``sum(f(inputs) * r)`` (r a fixed
random projection, so that every output element matters) with (f(x + h) - f(x - h)) / 2h.
``directional_check`` is the cheap version for big blocks (Chainer's approach): for random
directions v it compares <grad, v> with (f(x + h v) - f(x - h v)) / 2h, all inputs at once.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


def _projected_loss(fn, tensors, r):
    out = fn(*tensors)
    out = out if isinstance(out, Tensor) else Tensor(out)
    if r is None:
        r = np.random.default_rng(1234).standard_normal(out.shape)
    return out, r


def _analytic(fn, arrays, r):
    tensors = [Tensor(a.copy(), requires_grad=True, dtype=np.float64) for a in arrays]
    out, r = _projected_loss(fn, tensors, r)
    (out * Tensor(r)).sum().backward()
    return [t.grad if t.grad is not None else np.zeros_like(t.data) for t in tensors], r


def _value(fn, arrays, r) -> float:
    out = fn(*[Tensor(a, dtype=np.float64) for a in arrays])
    return float((out.data * r).sum())


def gradcheck(fn, *arrays, eps=1e-6, atol=1e-6, rtol=1e-5, wrt=None) -> bool:
    """Check d sum(fn(*inputs) * r) / d input element by element. Raises AssertionError with the
    worst element on failure. ``wrt`` restricts the check to some input indices."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    grads, r = _analytic(fn, arrays, None)
    for i in (range(len(arrays)) if wrt is None else wrt):
        a = arrays[i]
        numeric = np.zeros_like(a)
        flat = a.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = _value(fn, arrays, r)
            flat[j] = old - eps
            minus = _value(fn, arrays, r)
            flat[j] = old
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        if not np.allclose(grads[i], numeric, atol=atol, rtol=rtol):
            err = np.abs(grads[i] - numeric)
            k = np.unravel_index(np.argmax(err), a.shape)
            raise AssertionError(f"gradient of input {i} (shape {a.shape}) differs at {k}: "
                                 f"analytic {grads[i][k]:.8g} vs numeric {numeric[k]:.8g} (max abs err {err.max():.3g})")
    return True


def directional_check(loss_fn, params, n_directions=3, eps=1e-5, rtol=1e-4, seed=0) -> bool:
    """For a scalar ``loss_fn()`` of float64 Parameters ``params``: compare the analytic directional
    derivative <grad, v> with the central difference along random unit directions v."""
    for p in params:
        p.grad = None
    loss_fn().backward()
    grads = [p.grad.copy() if p.grad is not None else np.zeros_like(p.data) for p in params]
    rng = np.random.default_rng(seed)
    for d in range(n_directions):
        vs = [rng.standard_normal(p.shape) for p in params]
        norm = np.sqrt(sum((v * v).sum() for v in vs))
        vs = [v / norm for v in vs]
        analytic = sum((g * v).sum() for g, v in zip(grads, vs))
        originals = [p.data.copy() for p in params]
        for p, v, o in zip(params, vs, originals):
            p.data = o + eps * v
        plus = loss_fn().item()
        for p, v, o in zip(params, vs, originals):
            p.data = o - eps * v
        minus = loss_fn().item()
        for p, o in zip(params, originals):
            p.data = o
        numeric = (plus - minus) / (2 * eps)
        if not np.isclose(analytic, numeric, rtol=rtol, atol=1e-8):
            raise AssertionError(f"direction {d}: analytic {analytic:.10g} vs numeric {numeric:.10g}")
    return True
