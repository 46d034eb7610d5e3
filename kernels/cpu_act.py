"""Numba CPU backend: activations and squeeze-excite's channel scaling, plain and fused with an
activation (see ``cpu.py``, which re-exports every kernel). The per-row activation helpers here
are shared with the fused batch-norm kernels of ``cpu_norm.py``."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_exp import _exp_nonpositive
from .cpu_runtime import _FAST, _alloc, _launch, _per_channel, _spread, serial_twin
from .reference import ACTIVATIONS, SELU_ALPHA, SELU_SCALE


# =========================================================================== per-row helpers
# Activation codes of the fused kernels; each helper branches once per row, outside the element
# loop, so every loop stays vectorised.
_ACT_CODE = {"identity": 0, "relu": 1, "relu6": 2, "hardswish": 3, "hardsigmoid": 4, "selu": 5, "sigmoid": 6}
_SELU_F32 = 7          # SELU on float32 rows: the vectorised exp (cpu_exp.py) instead of libm's scalar expm1


_0, _1, _3, _6, _HALF = np.float32(0), np.float32(1), np.float32(3), np.float32(6), np.float32(0.5)   # exact in
# float32, so float32 rows stay float32 (a float64 literal would halve the vector width) and
# float64 rows lose nothing


def _act_helpers(scale_at, shift_at):
    """The two per-row helpers of the fused kernels, for one way of reading the coefficients:
    ``scale_at(scale, i)`` is scale itself (one number for the row: ``_same``) or scale[i] (one
    per element: ``_each``, for the spans of the training kernels, which run over many channels
    at once); shift likewise. Written once for every combination in use."""

    @njit(fastmath=_FAST, inline="always")
    def affine_act(r, scale, shift, o, act):
        """o = act(r scale + shift) over one row."""
        n = r.shape[0]
        if act == 0:
            for i in range(n):
                o[i] = r[i] * scale_at(scale, i) + shift_at(shift, i)
        elif act == 1:
            for i in range(n):
                o[i] = max(r[i] * scale_at(scale, i) + shift_at(shift, i), _0)
        elif act == 2:
            for i in range(n):
                o[i] = min(max(r[i] * scale_at(scale, i) + shift_at(shift, i), _0), _6)
        elif act == 3:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = v * min(max(v + _3, _0), _6) / _6
        elif act == 4:
            for i in range(n):
                o[i] = min(max(r[i] * scale_at(scale, i) + shift_at(shift, i) + _3, _0), _6) / _6
        elif act == 5:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = SELU_SCALE * v if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.expm1(v)
        elif act == _SELU_F32:
            lam, lam_alpha = np.float32(SELU_SCALE), np.float32(SELU_SCALE * SELU_ALPHA)
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                e = _exp_nonpositive(min(v, _0))
                o[i] = lam * v if v > _0 else lam_alpha * (e - _1)
        else:
            for i in range(n):
                o[i] = _1 / (_1 + np.exp(-(r[i] * scale_at(scale, i) + shift_at(shift, i))))

    @njit(fastmath=_FAST, inline="always")
    def act_grad(r, scale, shift, g, o, act):
        """o = act'(r scale + shift) g over one row (derivatives at the kinks as reference.act_bwd)."""
        n = r.shape[0]
        if act == 0:
            for i in range(n):
                o[i] = g[i]
        elif act == 1:
            for i in range(n):
                o[i] = g[i] if r[i] * scale_at(scale, i) + shift_at(shift, i) > _0 else _0
        elif act == 2:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = g[i] if (v > _0) and (v < _6) else _0
        elif act == 3:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = g[i] * (_0 if v < -_3 else (v / _3 + _HALF if v <= _3 else _1))
        elif act == 4:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = g[i] / _6 if (v > -_3) and (v < _3) else _0
        elif act == 5:
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                o[i] = g[i] * (SELU_SCALE if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.exp(v))
        elif act == _SELU_F32:
            lam, lam_alpha = np.float32(SELU_SCALE), np.float32(SELU_SCALE * SELU_ALPHA)
            for i in range(n):
                v = r[i] * scale_at(scale, i) + shift_at(shift, i)
                e = _exp_nonpositive(min(v, _0))
                o[i] = g[i] * (lam if v > _0 else lam_alpha * e)
        else:
            for i in range(n):
                sg = _1 / (_1 + np.exp(-(r[i] * scale_at(scale, i) + shift_at(shift, i))))
                o[i] = g[i] * sg * (_1 - sg)

    return affine_act, act_grad


@njit(inline="always")
def _same(s, i):
    return s


@njit(inline="always")
def _each(s, i):
    return s[i]


_affine_act_row, _act_grad_row = _act_helpers(_same, _same)          # scale, shift: one number per row
_affine_act_span, _act_grad_span = _act_helpers(_each, _each)         # both: arrays as long as the row
_scale_act_span, _scale_act_grad_span = _act_helpers(_each, _same)    # scale an array, shift a number


def _act_code(act: str, dtype) -> int:
    """The fused kernels' code for activation ``act`` on arrays of ``dtype`` (SELU on float32 gets
    the vectorised exp; float64 keeps libm, exact); a clear error for an unknown name."""
    if act not in _ACT_CODE:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
    return _SELU_F32 if act == "selu" and dtype == np.float32 else _ACT_CODE[act]


# =========================================================================== activations
# One branch-free kernel per activation (a dispatch inside the element loop stops vectorisation).
@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = max(x[i], 0.0)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] if x[i] > 0 else 0.0


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu6_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = min(max(x[i], 0.0), 6.0)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu6_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] if 0 < x[i] < 6 else 0.0


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardswish_fwd(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = v * (min(max(v + 3.0, 0.0), 6.0) * (1.0 / 6.0))


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardswish_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        v = x[i]
        d = 0.0 if v < -3 else (v * (1.0 / 3.0) + 0.5 if v <= 3 else 1.0)
        gx[i] = g[i] * d


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardsigmoid_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = min(max(x[i] + 3.0, 0.0), 6.0) * (1.0 / 6.0)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _hardsigmoid_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        gx[i] = g[i] * (1.0 / 6.0) if -3 < x[i] < 3 else 0.0


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_fwd(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = SELU_SCALE * v if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.expm1(v)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        v = x[i]
        gx[i] = g[i] * (SELU_SCALE if v > 0 else (SELU_SCALE * SELU_ALPHA) * np.exp(v))


@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_fwd_f32(x, y):
    """SELU on float32 with the vectorised exp (cpu_exp.py; absolute error < 1e-6 against float64):
    one branch-free loop instead of a scalar expm1 per negative element; 2.9 ms -> 0.13 ms on the
    teacher's (64, 144, 64) activation. float64 arrays keep the exact libm kernels (gradchecks)."""
    scale, alpha, zero, one = np.float32(SELU_SCALE), np.float32(SELU_ALPHA), np.float32(0), np.float32(1)
    for i in prange(x.shape[0]):
        v = x[i]
        e = _exp_nonpositive(min(v, zero))
        y[i] = scale * (v if v > zero else alpha * (e - one))


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _selu_bwd_f32(x, g, gx):
    scale, alpha, zero = np.float32(SELU_SCALE), np.float32(SELU_ALPHA), np.float32(0)
    for i in prange(x.shape[0]):
        v = x[i]
        e = _exp_nonpositive(min(v, zero))
        gx[i] = g[i] * (scale if v > zero else scale * alpha * e)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _sigmoid_fwd(x, y):
    for i in prange(x.shape[0]):
        y[i] = 0.5 * (np.tanh(0.5 * x[i]) + 1.0)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _sigmoid_bwd(x, g, gx):
    for i in prange(x.shape[0]):
        s = 0.5 * (np.tanh(0.5 * x[i]) + 1.0)
        gx[i] = g[i] * s * (1.0 - s)


_ACT = {"relu": (_relu_fwd, _relu_bwd), "relu6": (_relu6_fwd, _relu6_bwd),
        "hardswish": (_hardswish_fwd, _hardswish_bwd), "hardsigmoid": (_hardsigmoid_fwd, _hardsigmoid_bwd),
        "selu": (_selu_fwd, _selu_bwd), "sigmoid": (_sigmoid_fwd, _sigmoid_bwd)}
_ACT_F32 = {**_ACT, "selu": (_selu_fwd_f32, _selu_bwd_f32)}     # float32 arrays: the vectorised exp


def _kernels(name, dtype):
    return (_ACT_F32 if dtype == np.float32 else _ACT)[name]


def act_fwd(name, x):
    """y = act(x) elementwise over the flattened array, in parallel (see reference.act_fwd)."""
    if name == "identity":
        return x.copy()
    if name not in _ACT:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    x = np.ascontiguousarray(x)
    y = _alloc(x.shape, x.dtype)
    _launch(_kernels(name, x.dtype)[0], x.size, x.reshape(-1), y.reshape(-1))
    return y


def act_bwd(name, x, gy):
    """gx = act'(x) gy elementwise (see reference.act_bwd for the derivatives at the kinks)."""
    if name == "identity":
        return gy.copy()
    if name not in _ACT:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    gx = _alloc(x.shape, x.dtype)
    _launch(_kernels(name, x.dtype)[1], x.size, x.reshape(-1), gy.reshape(-1), gx.reshape(-1))
    return gx


# =========================================================================== squeeze-excite: the pooling
@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _time_mean_fwd(x, inv, m):
    B, C, L = x.shape
    X = x.reshape(B, C * L)
    for b in prange(B):                               # x[b] is one span of C rows
        _per_channel(X[b], L, m[b])
        for c in range(C):
            m[b, c] *= inv


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _time_mean_bwd(g, inv, gx):
    B, C, L = gx.shape
    GX = gx.reshape(B, C * L)
    for b in prange(B):
        v = np.empty(C, g.dtype)
        for c in range(C):
            v[c] = g[b, c] * inv
        _spread(v, L, GX[b])


def time_mean_fwd(x):
    """m[b, c] = (1/L) sum_l x[b, c, l] (the sum in float64), one batch element per task: its C
    rows are summed one after another in one loop nest, with no per-row set-up (NumPy's sum runs
    the rows of 8-64 values one by one on one core: 0.17 ms per squeeze-excite pool of the
    student at batch 64)."""
    x = np.ascontiguousarray(x)
    m = _alloc(x.shape[:2], x.dtype)
    _launch(_time_mean_fwd, x.size, x, x.dtype.type(1.0 / x.shape[2]), m)
    return m


def time_mean_bwd(g, L):
    """gx[b, c, l] = g[b, c] / L."""
    g = np.ascontiguousarray(g)
    gx = _alloc(g.shape + (L,), g.dtype)
    _launch(_time_mean_bwd, gx.size, g, g.dtype.type(1.0 / L), gx)
    return gx


# =========================================================================== squeeze-excite: the scaling
@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _scale_act_fwd(x, s, act, y):
    B, C, L = x.shape
    X, Y = x.reshape(B, C * L), y.reshape(B, C * L)
    for b in prange(B):                               # the whole of x[b] is one span
        f = np.empty(C * L, x.dtype)
        _spread(s[b], L, f)                           # f[c L + l] = s[b, c]
        _scale_act_span(X[b], f, x.dtype.type(0), Y[b], act)


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _scale_act_bwd(gy, x, s, act, gx, gs):
    B, C, L = x.shape
    X, G, GX = x.reshape(B, C * L), gy.reshape(B, C * L), gx.reshape(B, C * L)
    for b in prange(B):
        r, o = X[b], GX[b]
        f, p = np.empty(C * L, x.dtype), np.empty(C * L, x.dtype)
        _spread(s[b], L, f)
        _scale_act_grad_span(r, f, x.dtype.type(0), G[b], o, act)     # o = act'(x s) gy
        for i in range(C * L):
            p[i] = o[i] * r[i]
            o[i] *= f[i]
        _per_channel(p, L, gs[b])                     # gs[b, c] = sum_l act'(x s) gy x


def channel_scale_act_fwd(x, s, act):
    """y = act(x s[:, :, None]) in one pass (squeeze-excite's scaling fused with the activation),
    one batch element per task, its C L values one span with s[b] spread along it."""
    x = np.ascontiguousarray(x)
    code = _act_code(act, x.dtype)
    y = _alloc(x.shape, x.dtype)
    _launch(_scale_act_fwd, x.size, x, np.ascontiguousarray(s, dtype=x.dtype), code, y)
    return y


def channel_scale_act_bwd(gy, x, s, act):
    """gx = act'(x s) gy s and gs = sum_l act'(x s) gy x (float64 sums) in one pass per batch
    element (x s recomputed)."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    code = _act_code(act, x.dtype)
    gx = _alloc(x.shape, x.dtype)
    gs = _alloc(x.shape[:2], x.dtype)
    _launch(_scale_act_bwd, x.size, gy, x, np.ascontiguousarray(s, dtype=x.dtype), code, gx, gs)
    return gx, gs


def channel_scale_fwd(x, s):
    """y[b, c, l] = x[b, c, l] s[b, c] (``channel_scale_act_fwd`` with the identity)."""
    return channel_scale_act_fwd(x, s, "identity")


def channel_scale_bwd(gy, x, s):
    """gx = gy s;  gs[b, c] = sum_l gy[b, c, l] x[b, c, l] (``channel_scale_act_bwd`` with the identity)."""
    return channel_scale_act_bwd(gy, x, s, "identity")
