"""Numba CPU backend: batch norm with batch statistics and with stored ones, plain and fused with
the activation after it (see ``cpu.py``, which re-exports every kernel).

Training mode has two forms, picked by the row length L (``ROWS_FROM``):

* long rows: one channel per task, walking its B rows x[b, c] with the sums in registers (row
  sums in the array's dtype, vectorised, added into float64);
* short rows (L = 8-16 in the teacher's late blocks, where a row loop is mostly set-up): *spans*.
  For a group of channels [c0, c1), the values x[b, c0:c1, :] of one batch element are one
  contiguous run of (c1 - c0) L numbers. A task owns a group of channels and walks its B spans;
  every loop runs over a whole span, with the per-channel numbers (mean, scale, ...) spread along
  it first, so every loop is long and vectorised whatever L is. Sums are per element over the
  batch in float64, then over each channel's L positions; a task's B spans stay in L2 between
  its passes.

A channel lies in one task in both forms, so no result depends on the grouping or the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_act import _act_code, _act_grad_row, _act_grad_span, _affine_act_row, _affine_act_span
from .cpu_runtime import _FAST, _alloc, _launch, _per_channel, _spread, max_threads, serial_twin

SPAN = 512        # values per span a task aims for: its B spans of x, y (or gy, gx) fit in L2
ROWS_FROM = 32    # rows of this many values or more: one channel per task, row by row (see below)


def _channels_per_task(C: int, L: int) -> int:
    """Channels of one task: spans of about SPAN values, in a number of tasks that is a multiple
    of the thread count (prange hands each thread an equal run of tasks, so 5 tasks on 2 threads
    would leave one thread 3 to do while the other does 2)."""
    T = max_threads()
    tasks = min(C, T * max(1, -(-C * L // (SPAN * T))))
    return -(-C // tasks)


# =========================================================================== long rows: one channel per task
# Where rows are long enough to vectorise on their own (L >= ROWS_FROM), walking a channel's B rows
# with the sums in registers beats the spans, whose per-element float64 accumulators cost loads
# and stores (measured on the presets' layers: plain batch norm's backward on (64, 72, 32) 0.03 ms
# by rows against 0.04 by spans, (64, 96, 64) 0.07 against 0.09; on rows of 8-16 the spans win 2x).
@njit(inline="always", fastmath=_FAST)
def _channel_stats(x, c, eps):
    """mean, biased variance and 1 / sqrt(var + eps) of channel c over (B, L), in float64."""
    B, _, L = x.shape
    s = 0.0
    for bi in range(B):
        r = x[bi, c]
        row = r[0] * 0
        for i in range(L):
            row += r[i]
        s += row
    mu = s / (B * L)
    ss = 0.0
    for bi in range(B):
        r = x[bi, c]
        row = 0.0
        for i in range(L):
            d = r[i] - mu
            row += d * d
        ss += row
    var = ss / (B * L)
    return mu, var, 1.0 / np.sqrt(var + eps)


@njit(inline="always", fastmath=_FAST)
def _gradient_sums(g, x, c, mu):
    """sum g and sum g (x - mean) over channel c: what gbeta and ggamma are made of."""
    B, _, L = x.shape
    sg, sgx = 0.0, 0.0
    for bi in range(B):
        gr, r = g[bi, c], x[bi, c]
        row_g = gr[0] * 0
        row_gx = gr[0] * 0
        for i in range(L):
            row_g += gr[i]
            row_gx += gr[i] * (r[i] - mu)
        sg += row_g
        sgx += row_gx
    return sg, sgx


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_act_train_fwd_rows(x, gamma, beta, eps, act, per, y, mean, var, invstd):
    """As ``_bn_act_train_fwd_spans``, one channel per task (``per`` unused: the same signature)."""
    B = x.shape[0]
    for c in prange(x.shape[1]):
        mu, v, inv = _channel_stats(x, c, eps)
        mean[c], var[c], invstd[c] = mu, v, inv
        scale = x.dtype.type(gamma[c] * inv)
        shift = x.dtype.type(beta[c] - mu * gamma[c] * inv)
        for bi in range(B):
            _affine_act_row(x[bi, c], scale, shift, y[bi, c], act)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_act_bwd_rows(gy, x, gamma, beta, mean, invstd, act, per, gx, ggamma, gbeta):
    """As ``_bn_act_bwd_spans``, one channel per task (``per`` unused: the same signature)."""
    B, _, L = x.shape
    GP = gy if act == 0 else gx                       # where g' is read from: gy itself for the identity
    for c in prange(x.shape[1]):
        mu, inv = mean[c], invstd[c]
        if act != 0:
            scale = x.dtype.type(gamma[c] * inv)
            shift = x.dtype.type(beta[c] - mu * gamma[c] * inv)
            for bi in range(B):                       # g' = act'(pre) gy, held in gx for now
                _act_grad_row(x[bi, c], scale, shift, gy[bi, c], gx[bi, c], act)
        sg, sgx = _gradient_sums(GP, x, c, mu)
        gg = sgx * inv                                # sum g' xhat
        gbeta[c], ggamma[c] = sg, gg
        k = gamma[c] * inv / (B * L)
        a, bcoef, ccoef = k * B * L, k * gg * inv, k * sg
        for bi in range(B):
            r, o = x[bi, c], gx[bi, c]
            if act == 0:
                p = gy[bi, c]
                for i in range(L):
                    o[i] = a * p[i] - bcoef * (r[i] - mu) - ccoef
            else:                                     # in place (see the spans' kernel)
                for i in range(L):
                    o[i] = a * o[i] - bcoef * (r[i] - mu) - ccoef


# =========================================================================== short rows: spans
@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_act_train_fwd_spans(x, gamma, beta, eps, act, per, y, mean, var, invstd):
    """x, y (B, C, L); gamma, beta, mean, var, invstd (C,); task t owns channels [t per, (t+1) per)."""
    B, C, L = x.shape
    X, Y = x.reshape(B, C * L), y.reshape(B, C * L)
    N = B * L
    for t in prange((C + per - 1) // per):
        c0 = t * per
        c1 = min(C, c0 + per)
        j0, n, k = c0 * L, (c1 - c0) * L, c1 - c0
        acc = np.zeros(n, np.float64)                 # per element: sum over the batch
        for b in range(B):
            r = X[b, j0:j0 + n]
            for i in range(n):
                acc[i] += r[i]
        mu_c = np.empty(k, np.float64)
        _per_channel(acc, L, mu_c)
        mu_c /= N
        mu = np.empty(n, np.float64)
        _spread(mu_c, L, mu)
        acc[:] = 0.0                                  # per element: sum of squared deviations
        for b in range(B):
            r = X[b, j0:j0 + n]
            for i in range(n):
                d = r[i] - mu[i]
                acc[i] += d * d
        var_c = np.empty(k, np.float64)
        _per_channel(acc, L, var_c)
        scale_c, shift_c = np.empty(k, x.dtype), np.empty(k, x.dtype)
        for q in range(k):
            c = c0 + q
            v = var_c[q] / N
            inv = 1.0 / np.sqrt(v + eps)
            mean[c], var[c], invstd[c] = mu_c[q], v, inv
            sc = gamma[c] * inv
            scale_c[q], shift_c[q] = sc, beta[c] - mu_c[q] * sc
        scale, shift = np.empty(n, x.dtype), np.empty(n, x.dtype)
        _spread(scale_c, L, scale)
        _spread(shift_c, L, shift)
        for b in range(B):                            # y = act(x scale + shift)
            _affine_act_span(X[b, j0:j0 + n], scale, shift, Y[b, j0:j0 + n], act)


def bn_act_train_fwd(x, gamma, beta, eps, act):
    """act(batch norm) with batch statistics in one kernel: the statistics (float64, two passes:
    mean, then squared deviations), then y = act(x scale + shift) written once, with
    scale = gamma invstd and shift = beta - mean scale. Returns y, mean, var (biased), invstd
    (see reference.bn_act_train_fwd)."""
    x = np.ascontiguousarray(x)
    code = _act_code(act, x.dtype)
    B, C, L = x.shape
    y = _alloc(x.shape, x.dtype)
    mean, var, invstd = (_alloc(C, x.dtype) for _ in range(3))
    kernel = _bn_act_train_fwd_rows if L >= ROWS_FROM else _bn_act_train_fwd_spans
    _launch(kernel, x.size, x, gamma.astype(x.dtype, copy=False), beta.astype(x.dtype, copy=False), eps,
            code, _channels_per_task(C, L), y, mean, var, invstd)
    return y, mean, var, invstd


def bn_train_fwd(x, gamma, beta, eps):
    """Batch norm with batch statistics: y = gamma (x - mean) invstd + beta (``bn_act_train_fwd``
    with the identity). Returns y, mean, var (biased), invstd."""
    return bn_act_train_fwd(x, gamma, beta, eps, "identity")


@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_act_bwd_spans(gy, x, gamma, beta, mean, invstd, act, per, gx, ggamma, gbeta):
    """gy, x, gx (B, C, L); the rest (C,); task t owns channels [t per, (t+1) per)."""
    B, C, L = x.shape
    X, G, GX = x.reshape(B, C * L), gy.reshape(B, C * L), gx.reshape(B, C * L)
    GP = G if act == 0 else GX                        # where g' is read from: gy itself for the identity
    N = B * L
    for t in prange((C + per - 1) // per):
        c0 = t * per
        c1 = min(C, c0 + per)
        j0, n, k = c0 * L, (c1 - c0) * L, c1 - c0
        mu_c, scale_c, shift_c = np.empty(k, np.float64), np.empty(k, x.dtype), np.empty(k, x.dtype)
        for q in range(k):
            c = c0 + q
            mu_c[q] = mean[c]
            scale_c[q] = gamma[c] * invstd[c]
            shift_c[q] = beta[c] - mean[c] * gamma[c] * invstd[c]
        mu, scale, shift = np.empty(n, np.float64), np.empty(n, x.dtype), np.empty(n, x.dtype)
        _spread(mu_c, L, mu)
        _spread(scale_c, L, scale)
        _spread(shift_c, L, shift)
        sg, sgx = np.zeros(n, np.float64), np.zeros(n, np.float64)
        for b in range(B):                            # g' = act'(pre) gy, held in gx for now
            r, o = X[b, j0:j0 + n], GP[b, j0:j0 + n]
            if act != 0:
                _act_grad_span(r, scale, shift, G[b, j0:j0 + n], o, act)
            for i in range(n):
                sg[i] += o[i]
                sgx[i] += o[i] * (r[i] - mu[i])
        sg_c, sgx_c = np.empty(k, np.float64), np.empty(k, np.float64)
        _per_channel(sg, L, sg_c)
        _per_channel(sgx, L, sgx_c)
        a_c, b_c, d_c = np.empty(k, np.float64), np.empty(k, np.float64), np.empty(k, np.float64)
        for q in range(k):                            # gx = gamma invstd / N (N g' - gbeta - xhat ggamma)
            c = c0 + q
            inv = invstd[c]
            gg = sgx_c[q] * inv                       # sum g' xhat
            gbeta[c], ggamma[c] = sg_c[q], gg
            kc = gamma[c] * inv / N
            a_c[q], b_c[q], d_c[q] = kc * N, kc * gg * inv, kc * sg_c[q]
        a, bx, d = sg, sgx, np.empty(n, np.float64)   # the accumulators are spent: reuse them
        _spread(a_c, L, a)
        _spread(b_c, L, bx)
        _spread(d_c, L, d)
        for b in range(B):
            r, o = X[b, j0:j0 + n], GX[b, j0:j0 + n]
            if act == 0:
                p = G[b, j0:j0 + n]
                for i in range(n):
                    o[i] = a[i] * p[i] - bx[i] * (r[i] - mu[i]) - d[i]
            else:                                     # in place, spelled as such: a loop reading one
                for i in range(n):                    # array and writing another that is the same
                    o[i] = a[i] * o[i] - bx[i] * (r[i] - mu[i]) - d[i]   # fails LLVM's overlap check


def bn_act_bwd(gy, x, gamma, beta, mean, invstd, act):
    """Gradients of ``bn_act_train_fwd``, one group of channels per task: the activation's
    derivative first (pre = x scale + shift recomputed, never stored), written into gx (the
    identity reads gy itself), with the sums gbeta = sum g' and ggamma = sum g' xhat taken on the
    way; then
    gx = gamma invstd / N (N g' - gbeta - xhat ggamma). Returns gx, ggamma, gbeta."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    code = _act_code(act, x.dtype)
    B, C, L = x.shape
    gx = _alloc(x.shape, x.dtype)
    ggamma, gbeta = _alloc(C, x.dtype), _alloc(C, x.dtype)
    kernel = _bn_act_bwd_rows if L >= ROWS_FROM else _bn_act_bwd_spans
    _launch(kernel, x.size, gy, x, gamma.astype(x.dtype, copy=False), beta.astype(x.dtype, copy=False), mean,
            invstd, code, _channels_per_task(C, L), gx, ggamma, gbeta)
    return gx, ggamma, gbeta


def bn_bwd(gy, x, gamma, mean, invstd):
    """Batch norm gradients: gbeta = sum gy, ggamma = sum gy xhat,
    gx = gamma invstd / N (N gy - gbeta - xhat ggamma) (``bn_act_bwd`` with the identity)."""
    return bn_act_bwd(gy, x, gamma, np.zeros_like(gamma), mean, invstd, "identity")


# =========================================================================== eval mode
@njit(cache=True)
def _fold(gamma, beta, mean, var, eps, scale, shift):
    """Eval-mode batch norm as y = x scale + shift: scale = gamma / sqrt(var + eps), shift =
    beta - mean scale, in the statistics' dtype, then stored in x's (scale's) dtype: exactly the
    NumPy reference's arithmetic. One compiled call instead of seven NumPy calls on C-vectors
    (most of a batch-1 call's time). No fastmath here: a fused multiply-add changes the last bit
    (the same fold inside the fastmath ``_affine`` was measured to differ in 190 of 400 cases)."""
    for c in range(gamma.shape[0]):
        s = scale.dtype.type(gamma[c] / np.sqrt(var[c] + eps))
        scale[c] = s
        shift[c] = beta[c] - mean[c] * s


def _folded(x, gamma, beta, running_mean, running_var, eps):
    scale, shift = np.empty(gamma.shape[0], x.dtype), np.empty(gamma.shape[0], x.dtype)
    _fold(gamma, beta, running_mean, running_var, running_var.dtype.type(eps), scale, shift)
    return scale, shift


@serial_twin
@njit(parallel=True, cache=True, fastmath=_FAST)
def _affine(x, scale, shift, y):
    B, C, L = x.shape
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        r, o = x[bi, c], y[bi, c]
        s, t = scale[c], shift[c]
        for i in range(L):
            o[i] = r[i] * s + t


def bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode batch norm as a per-channel affine map y = x scale + shift. (Its own kernel:
    ``bn_act_eval`` with the identity measured 25% slower, 0.051 vs 0.040 ms on (64, 144, 32).)"""
    scale, shift = _folded(x, gamma, beta, running_mean, running_var, eps)
    y = _alloc(x.shape, x.dtype)
    _launch(_affine, x.size, np.ascontiguousarray(x), scale, shift, y)
    return y


@njit(parallel=True, cache=True, fastmath=_FAST)
def _affine_act(x, scale, shift, act, y):
    B, C, L = x.shape
    for bc in prange(B * C):
        bi, c = bc // C, bc % C
        _affine_act_row(x[bi, c], scale[c], shift[c], y[bi, c], act)


def bn_act_eval(x, gamma, beta, running_mean, running_var, eps, act):
    """act(eval-mode batch norm) in one pass: y = act(x scale + shift)."""
    code = _act_code(act, x.dtype)
    scale, shift = _folded(x, gamma, beta, running_mean, running_var, eps)
    y = _alloc(x.shape, x.dtype)
    _launch(_affine_act, x.size, np.ascontiguousarray(x), scale, shift, code, y)
    return y
