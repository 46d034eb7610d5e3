"""The whole folded MobileNetV3 trunk in one compiled call: the deployment kernel (Numba).

``tinysml.deploy`` folds every batch norm into the convolution before it, then describes the
network as two arrays, in the spirit of llm.c: ``params``, every weight in one flat float32
buffer, and ``plan``, one int64 row per layer with its shapes and the offsets of its weights in
``params``. ``network_forward`` walks the plan for each window, reading and writing only buffers
planned once (``work``), so a prediction allocates nothing and crosses from Python into compiled
code once, whatever the depth of the network. (Per-layer calls cost 3-10 us of dispatch each, more
than a layer's arithmetic at batch 1.)

Per window x (C, L), with act the block's activation and * a 1-D convolution:

    stem:   a = hardswish(W_s * clip((x - shift) / scale, low, high) + b_s)     (C0, L/2)
    block:  e = act(W_e a + b_e)                    expand, 1x1            (E, L)
            d = w_d * e + b_d                       depthwise, K taps, S   (E, L')
            d = d * hardsigmoid(W_2 relu(W_1 mean_t d))   squeeze-excite, when present
            a = W_p act(d) + b_p  (+ a when S = 1 and shapes agree)   project (O, L')
    head:   h = hardswish(mean_t hardswish(W_h a + b_h))                       (H,)

The classifier head (linear, MLP, Hopfield, mixture) runs after it in NumPy, on (B, H).

Activations are channels-last, (time, channels), so the innermost loop of every step runs over
the channels of one time step, contiguous, which LLVM vectorises: a 1x1 convolution is
``for t: for c: y[t, :] += x[t, c] WT[c, :]``, blocked over four time steps and four channels
(each weight loaded serves four outputs); the stem reads its (L', K C) im2col matrix as a strided
view of its padded input (no copy); the depthwise convolution reads a zero-padded copy of its
input that the expand step writes directly, so no tap needs a bounds check. Windows are
independent: ``network_forward_parallel`` runs them on all threads (prange over the batch, each with
its own work slot); at batch 1 the serial entry is used.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from numpy.lib.stride_tricks import as_strided

from . import cpu_process  # noqa: F401  (cache folder: set before Numba compiles)
from .cpu_exp import _exp_nonpositive  # noqa: E402

# plan row layout: one row per layer
OP, C_IN, C_MID, C_OUT, L_IN, L_OUT, K, STRIDE, PAD, ACT, SE_HIDDEN, RESIDUAL = range(12)
W1, B1, W2, B2, W3, B3, SE1, SE2 = range(12, 20)
PLAN_WIDTH = 20
OP_STEM, OP_BLOCK, OP_HEAD = 0, 1, 2
ACT_CODES = {"identity": 0, "relu": 1, "hardswish": 2, "hardsigmoid": 3, "selu": 4}
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_FAST = {"reassoc", "contract"}


@njit(fastmath=_FAST, cache=True, inline="always")
def _act_inplace(v, act):
    """Apply activation ``act`` (an ACT_CODES value) to the 1-D row v in place; the branch is
    outside the element loop so each loop vectorises."""
    n = v.shape[0]
    zero, three, six, sixth = np.float32(0), np.float32(3), np.float32(6), np.float32(1 / 6)
    if act == 1:
        for i in range(n):
            v[i] = max(v[i], zero)
    elif act == 2:
        for i in range(n):
            v[i] = v[i] * min(max(v[i] + three, zero), six) * sixth
    elif act == 3:
        for i in range(n):
            v[i] = min(max(v[i] + three, zero), six) * sixth
    elif act == 4:
        alpha, scale = np.float32(_SELU_ALPHA), np.float32(_SELU_SCALE)
        for i in range(n):
            e = _exp_nonpositive(min(v[i], zero))
            v[i] = scale * (v[i] if v[i] > zero else alpha * (e - np.float32(1)))


@njit(fastmath=_FAST, cache=True, inline="always")
def _pointwise(x, WT, b, y, act):
    """y[t, :] = act(b + sum_c x[t, c] WT[c, :]).   x (T, C), WT (C, O), b (O,), y (T, O).
    Register blocking: four time steps and four input channels per pass over the output rows, so
    each weight loaded serves four outputs and each output row is loaded and stored C/4 times.
    The rows are indexed as y[t + i, o] and WT[c + j, o], not as separate row views: LLVM then sees
    two arrays, not eight, and its per-pass overlap checks stay cheap (1.5-2x on layers of 16-48
    outputs, where those checks cost more than the arithmetic)."""
    T, C, O = x.shape[0], WT.shape[0], WT.shape[1]
    C4 = C - C % 4
    for t0 in range(0, T, 4):
        nt = min(4, T - t0)
        for i in range(nt):
            y[t0 + i, :] = b
        if nt == 4:
            for c in range(0, C4, 4):
                a0, a1, a2, a3 = x[t0, c], x[t0, c + 1], x[t0, c + 2], x[t0, c + 3]
                b0, b1, b2, b3 = x[t0 + 1, c], x[t0 + 1, c + 1], x[t0 + 1, c + 2], x[t0 + 1, c + 3]
                d0, d1, d2, d3 = x[t0 + 2, c], x[t0 + 2, c + 1], x[t0 + 2, c + 2], x[t0 + 2, c + 3]
                e0, e1, e2, e3 = x[t0 + 3, c], x[t0 + 3, c + 1], x[t0 + 3, c + 2], x[t0 + 3, c + 3]
                for o in range(O):
                    v0, v1, v2, v3 = WT[c, o], WT[c + 1, o], WT[c + 2, o], WT[c + 3, o]
                    y[t0, o] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                    y[t0 + 1, o] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
                    y[t0 + 2, o] += d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
                    y[t0 + 3, o] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3
            c_rest = C4
        else:                                                  # the last T % 4 time steps
            c_rest = 0
        for i in range(nt):                                    # channels not in a block of four
            for c in range(c_rest, C):
                a = x[t0 + i, c]
                for o in range(O):
                    y[t0 + i, o] += a * WT[c, o]
        for i in range(nt):
            _act_inplace(y[t0 + i], act)


@njit(fastmath=_FAST, cache=True)
def _window_forward(x, params, plan, scaling, work, vec, out):
    """One window x (C, L) through the plan; writes the pooled features out (H,).
    Activations are channels-last, (time, channels), so every inner loop runs over channels.
    work (4, N): slots 0 and 1 hold the activations (ping-pong), 2 the zero-padded input of a
    convolution, 3 the depthwise output; vec: the squeeze-excite vectors."""
    a_slot = 0
    C = x.shape[0]
    low, high = scaling[2 * C], scaling[2 * C + 1]
    for i in range(plan.shape[0]):
        p = plan[i]
        cin, cmid, cout, lin, lout = p[C_IN], p[C_MID], p[C_OUT], p[L_IN], p[L_OUT]
        k, s, pad, act = p[K], p[STRIDE], p[PAD], p[ACT]
        if p[OP] == OP_STEM:
            xp = work[2, :(lin + 2 * pad) * cin].reshape(lin + 2 * pad, cin)      # (L + 2P, C), scaled
            xp[:pad] = 0.0
            xp[pad + lin:] = 0.0
            for c in range(cin):
                for t in range(lin):
                    xp[pad + t, c] = min(max((x[c, t] - scaling[c]) / scaling[C + c], low), high)
            # im2col without a copy: taps j = 0..K-1 of output t are the K C contiguous values
            # from row t S of xp, so the (L', K C) matrix is a strided view of xp
            flat = work[2, :(lin + 2 * pad) * cin]
            cols = as_strided(flat, shape=(lout, k * cin), strides=(s * cin * flat.itemsize, flat.itemsize))
            W = params[p[W1]:p[W1] + k * cin * cout].reshape(k * cin, cout)       # (K C, O)
            y = work[0, :lout * cout].reshape(lout, cout)                         # (L', C0)
            _pointwise(cols, W, params[p[B1]:p[B1] + cout], y, act)
            a_slot = 0
        elif p[OP] == OP_BLOCK:
            a = work[a_slot, :lin * cin].reshape(lin, cin)                        # (L, C)
            ep = work[2, :(lin + 2 * pad) * cmid].reshape(lin + 2 * pad, cmid)    # (L + 2P, E)
            ep[:pad] = 0.0
            ep[pad + lin:] = 0.0
            WeT = params[p[W1]:p[W1] + cin * cmid].reshape(cin, cmid)
            _pointwise(a, WeT, params[p[B1]:p[B1] + cmid], ep[pad:pad + lin], act)   # expand
            WdT = params[p[W2]:p[W2] + k * cmid].reshape(k, cmid)                 # (K, E)
            bd = params[p[B2]:p[B2] + cmid]
            d = work[3, :lout * cmid].reshape(lout, cmid)                         # (L', E)
            for t in range(lout):
                row = d[t]
                row[:] = bd
                for j in range(k):
                    src, w = ep[t * s + j], WdT[j]
                    for e in range(cmid):
                        row[e] += w[e] * src[e]
            hid = p[SE_HIDDEN]
            if hid > 0:                                                           # squeeze-excite
                pooled, z = vec[:cmid], vec[cmid:cmid + hid]
                pooled[:] = 0.0
                for t in range(lout):
                    pooled += d[t]
                pooled /= lout
                S1 = params[p[SE1]:p[SE1] + hid * cmid].reshape(hid, cmid)        # (hid, E)
                S2T = params[p[SE2]:p[SE2] + hid * cmid].reshape(hid, cmid)       # (hid, E)
                for j in range(hid):                                              # z = relu(S1 pooled)
                    row, acc = S1[j], np.float32(0)
                    for e in range(cmid):
                        acc += row[e] * pooled[e]
                    z[j] = max(acc, np.float32(0))
                pooled[:] = 0.0                                                   # now the gate: S2 z
                for j in range(hid):                                              # (loops, not array
                    row, zj = S2T[j], z[j]                                        # expressions: each of
                    for e in range(cmid):                                         # those allocated)
                        pooled[e] += zj * row[e]
                _act_inplace(pooled, 3)                                           # hardsigmoid
                for t in range(lout):
                    d[t] *= pooled
            for t in range(lout):
                _act_inplace(d[t], act)
            y = work[1 - a_slot, :lout * cout].reshape(lout, cout)                # (L', O)
            WpT = params[p[W3]:p[W3] + cmid * cout].reshape(cmid, cout)
            _pointwise(d, WpT, params[p[B3]:p[B3] + cout], y, 0)                  # project
            if p[RESIDUAL] == 1:
                y += a
            a_slot = 1 - a_slot
        else:                                                                     # OP_HEAD
            a = work[a_slot, :lin * cin].reshape(lin, cin)
            y = work[2, :lin * cout].reshape(lin, cout)
            WhT = params[p[W1]:p[W1] + cin * cout].reshape(cin, cout)
            _pointwise(a, WhT, params[p[B1]:p[B1] + cout], y, act)
            out[:] = 0.0
            for t in range(lin):
                out += y[t]
            out /= lin
            _act_inplace(out, act)


@njit(fastmath=_FAST, cache=True)
def network_forward(x, params, plan, scaling, work, vec, out):
    """x (B, C, L) float32 -> out (B, H) pooled features, one window after another (one thread).
    work (B, 4, N) and vec (B, V) come from the caller (planned once per batch size)."""
    for b in range(x.shape[0]):
        _window_forward(x[b], params, plan, scaling, work[b], vec[b], out[b])


@njit(fastmath=_FAST, cache=True, parallel=True)
def network_forward_parallel(x, params, plan, scaling, work, vec, out):
    """As ``network_forward``, windows spread over Numba's threads (each writes its own slot)."""
    for b in prange(x.shape[0]):
        _window_forward(x[b], params, plan, scaling, work[b], vec[b], out[b])


@njit(fastmath=_FAST, cache=True)
def linear_softmax(h, W, b, z, p):
    """The linear classifier head and the softmax in one call: z = h W^T + b and p = softmax(z)
    per row.   h (B, H), W (K, H), b (K,), z and p (B, K). Returns how many scores are not finite
    (the caller refuses those, as for any head). (In NumPy: five calls and ~5 us at batch 1, a tenth
    of the whole prediction.)"""
    bad = 0
    for i in range(h.shape[0]):
        hi, zi, pi = h[i], z[i], p[i]
        m = -np.inf
        for k in range(W.shape[0]):
            wk, acc = W[k], b[k]
            for j in range(hi.shape[0]):
                acc += hi[j] * wk[j]
            zi[k] = acc
            if not np.isfinite(acc):
                bad += 1
            m = max(m, acc)
        total = 0.0
        for k in range(zi.shape[0]):
            e = np.exp(zi[k] - m)
            pi[k] = e
            total += e
        for k in range(zi.shape[0]):
            pi[k] /= total
    return bad
