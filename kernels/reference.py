"""Reference kernels: the definition every other backend is tested against.

Plain array code that works unchanged on NumPy and CuPy arrays (``xp`` follows the data). Every
other backend (``cpu.py`` with Numba, ``cuda.py`` with CuPy) exposes these exact names and
signatures; ``tests/test_backends.py`` asserts it.

Conventions
-----------
Shapes: x (B, C, L) batch, channels, time; w (O, C/G, K) for convolutions; gy is the gradient of
the loss with respect to a kernel's output y, and gx, gw, gb those with respect to x, w, b.
Output length of a convolution: Lout = (L + 2P - D(K-1) - 1) // S + 1.
Backward kernels return every gradient (gb even when the layer has no bias); callers drop what
they do not need.
"""
from __future__ import annotations

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "selu", "sigmoid", "identity")


def _xp(a):
    if isinstance(a, np.ndarray):
        return np
    import cupy
    return cupy.get_array_module(a)


def conv_out_len(L: int, K: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Lout = (L + 2P - D(K-1) - 1) // S + 1."""
    return (L + 2 * padding - dilation * (K - 1) - 1) // stride + 1


def _pad(x, padding):
    if padding == 0:
        return x
    xp = _xp(x)
    return xp.pad(x, ((0, 0), (0, 0), (padding, padding)))


def _tap(k, dilation, stride, Lout):
    """The input positions read by tap k for all outputs: slice(kD, kD + S(Lout-1) + 1, S)."""
    start = k * dilation
    return slice(start, start + stride * (Lout - 1) + 1, stride)


# --------------------------------------------------------------------------- matrix product
def matmul(a, b):
    """a @ b with NumPy's broadcasting (the array module's own product). Every product of the
    Functions goes through a backend's ``matmul``: the CUDA backend has a GEMM kernel of its own."""
    return a @ b


# --------------------------------------------------------------------------- general conv1d
def conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Grouped 1-D convolution (cross-correlation, as in every DL framework).

    y[b, o, l] = bias[o] + sum_{c in group(o)} sum_k w[o, c, k] * xpad[b, g*C/G + c, l*S + k*D]

    x (B, C, L), w (O, C/G, K), b (O,) or None -> y (B, O, Lout). Computed tap by tap: for each k a
    batched matmul (G, O/G, C/G) @ (B, G, C/G, Lout).
    """
    xp = _xp(x)
    B, C, L = x.shape
    O, Cg, K = w.shape
    G = groups
    Lout = conv_out_len(L, K, stride, padding, dilation)
    xg = _pad(x, padding).reshape(B, G, Cg, -1)                      # (B, G, C/G, Lp)
    wg = w.reshape(G, O // G, Cg, K)                                  # (G, O/G, C/G, K)
    y = xp.zeros((B, G, O // G, Lout), dtype=x.dtype)
    for k in range(K):
        y += wg[..., k] @ xg[..., _tap(k, dilation, stride, Lout)]   # (B, G, O/G, Lout)
    y = y.reshape(B, O, Lout)
    if b is not None:
        y += b[None, :, None]
    return y


def conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1, groups=1, input_grad=True):
    """Gradients of ``conv1d_fwd``: gx (B, C, L), gw (O, C/G, K), gb (O,); gx is None when
    ``input_grad`` is False (the stem, whose input is data).

    gxpad[b, c, l*S + k*D] += sum_o w[o, c, k] gy[b, o, l];   gw[o, c, k] = sum_{b,l} gy[b,o,l] xpad[b,c,lS+kD]
    """
    xp = _xp(x)
    B, C, L = x.shape
    O, Cg, K = w.shape
    G = groups
    Lout = gy.shape[-1]
    xg = _pad(x, padding).reshape(B, G, Cg, -1)
    wg = w.reshape(G, O // G, Cg, K)
    gyg = gy.reshape(B, G, O // G, Lout)
    gxg = xp.zeros_like(xg)
    gw = xp.empty((G, O // G, Cg, K), dtype=x.dtype)
    wgT = wg.transpose(0, 2, 1, 3)                                    # (G, C/G, O/G, K)
    for k in range(K):
        tap = _tap(k, dilation, stride, Lout)
        if input_grad:
            gxg[..., tap] += wgT[..., k] @ gyg                        # (B, G, C/G, Lout)
        gw[..., k] = (gyg @ xg[..., tap].transpose(0, 1, 3, 2)).sum(0)  # (G, O/G, C/G)
    gx = xp.ascontiguousarray(gxg.reshape(B, C, -1)[:, :, padding:padding + L]) if input_grad else None
    return gx, gw.reshape(O, Cg, K), gy.sum(axis=(0, 2))


# --------------------------------------------------------------------------- depthwise conv1d
def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """Depthwise 1-D convolution (groups = C, one filter per channel).

    y[b, c, l] = bias[c] + sum_k w[c, k] * xpad[b, c, l*S + k*D]

    x (B, C, L), w (C, K), b (C,) or None -> y (B, C, Lout).
    """
    xp = _xp(x)
    B, C, L = x.shape
    K = w.shape[1]
    Lout = conv_out_len(L, K, stride, padding, dilation)
    xpad = _pad(x, padding)
    y = xp.zeros((B, C, Lout), dtype=x.dtype)
    for k in range(K):
        y += w[None, :, k, None] * xpad[:, :, _tap(k, dilation, stride, Lout)]
    if b is not None:
        y += b[None, :, None]
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """Gradients of ``dw_conv1d_fwd``: gx (B, C, L), gw (C, K), gb (C,).

    gxpad[b, c, lS + kD] += w[c, k] gy[b, c, l];   gw[c, k] = sum_{b,l} gy[b, c, l] xpad[b, c, lS + kD]
    """
    xp = _xp(x)
    B, C, L = x.shape
    K = w.shape[1]
    Lout = gy.shape[-1]
    xpad = _pad(x, padding)
    gxpad = xp.zeros_like(xpad)
    gw = xp.empty_like(w)
    for k in range(K):
        tap = _tap(k, dilation, stride, Lout)
        gxpad[:, :, tap] += w[None, :, k, None] * gy
        gw[:, k] = (gy * xpad[:, :, tap]).sum(axis=(0, 2))
    gx = xp.ascontiguousarray(gxpad[:, :, padding:padding + L])
    return gx, gw, gy.sum(axis=(0, 2))


# --------------------------------------------------------------------------- pointwise conv1d
def pw_conv1d_fwd(x, w, b, batch_invariant=False):
    """Pointwise (1x1) convolution: y[b, o, l] = bias[o] + sum_c w[o, c] x[b, c, l].

    x (B, C, L), w (O, C), b (O,) or None -> y (B, O, L). One matmul per batch element, each of the
    same shape whatever B is: batch-invariant already (the flag is accepted for the common signature).
    """
    y = w @ x                                                         # (O, C) @ (B, C, L) -> (B, O, L)
    if b is not None:
        y += b[None, :, None]
    return y


def pw_conv1d_bwd(gy, x, w, bias_grad=True):
    """Gradients of ``pw_conv1d_fwd``: gx = w^T gy (B, C, L), gw = sum_b gy x^T (O, C), gb (O,), or
    None for gb when ``bias_grad`` is False (a layer without a bias: a pass over gy saved)."""
    xp = _xp(x)
    gx = w.T @ gy                                                     # (B, C, L)
    gw = xp.tensordot(gy, x, axes=([0, 2], [0, 2]))                   # (O, C)
    return gx, gw.astype(x.dtype, copy=False), gy.sum(axis=(0, 2)) if bias_grad else None


# --------------------------------------------------------------------------- batch norm
def bn_train_fwd(x, gamma, beta, eps):
    """Batch normalisation with batch statistics over (B, L).

    mean_c = mean_{b,l} x;  var_c = mean_{b,l} (x - mean_c)^2 (biased);  invstd_c = 1 / sqrt(var_c + eps)
    y = gamma_c (x - mean_c) invstd_c + beta_c.     x (B, C, L) -> y (B, C, L), mean (C,), var (C,), invstd (C,)
    """
    xp = _xp(x)
    mean = x.mean(axis=(0, 2))
    xc = x - mean[None, :, None]
    var = (xc * xc).mean(axis=(0, 2))
    invstd = 1.0 / xp.sqrt(var + eps)
    y = xc * (gamma * invstd)[None, :, None] + beta[None, :, None]
    return y, mean, var, invstd.astype(x.dtype, copy=False)


def bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps):
    """Batch normalisation with stored statistics: y = gamma (x - mu) / sqrt(var + eps) + beta."""
    xp = _xp(x)
    scale = gamma / xp.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    return x * scale[None, :, None] + shift[None, :, None]


def bn_bwd(gy, x, gamma, mean, invstd):
    """Gradients of ``bn_train_fwd`` with N = B L and xhat = (x - mean) invstd:

    gbeta = sum gy;  ggamma = sum gy xhat;  gx = gamma invstd / N (N gy - gbeta - xhat ggamma)
    """
    N = x.shape[0] * x.shape[2]
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    gbeta = gy.sum(axis=(0, 2))
    ggamma = (gy * xhat).sum(axis=(0, 2))
    gx = (gamma * invstd / N)[None, :, None] * (N * gy - gbeta[None, :, None] - xhat * ggamma[None, :, None])
    return gx, ggamma, gbeta


# --------------------------------------------------------------------------- activations
def bn_act_train_fwd(x, gamma, beta, eps, act):
    """act(batch norm with batch statistics): y = act(gamma (x - mean) invstd + beta).
    Returns y, mean, var, invstd as ``bn_train_fwd``; the pre-activation is not kept (the
    backward recomputes it from x and the statistics)."""
    y, mean, var, invstd = bn_train_fwd(x, gamma, beta, eps)
    return act_fwd(act, y), mean, var, invstd


def bn_act_bwd(gy, x, gamma, beta, mean, invstd, act):
    """Gradients of ``bn_act_train_fwd``: recompute pre = gamma xhat + beta, take
    g = act'(pre) gy, then the batch-norm gradients of g. Returns gx, ggamma, gbeta."""
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    pre = xhat * gamma[None, :, None] + beta[None, :, None]
    return bn_bwd(act_bwd(act, pre, gy), x, gamma, mean, invstd)


def bn_update_running(running_mean, running_var, mean, var, momentum, n):
    """Batch norm's running statistics, in place, as PyTorch updates them (C,):

        r_mean = (1 - m) r_mean + m mean;   r_var = (1 - m) r_var + m var N / (N - 1)

    with the batch's mean and biased variance over N = n values per channel (the running variance
    is the unbiased one). momentum m: a number, or a float64 array of one element on the
    statistics' device (precise BN replayed as a CUDA graph: its value is read when the update
    runs). Either way 1 - m and m are rounded once to the statistics' dtype, so both give the same
    numbers."""
    keep, m = 1 - momentum, momentum
    if not isinstance(momentum, (int, float)):
        keep, m = keep.astype(running_mean.dtype), m.astype(running_mean.dtype)
    running_mean *= keep
    running_mean += m * mean
    running_var *= keep
    running_var += m * var * (n / (n - 1))


def bn_act_eval(x, gamma, beta, running_mean, running_var, eps, act):
    """act(eval-mode batch norm): y = act(x scale + shift), scale = gamma / sqrt(var + eps),
    shift = beta - mean scale (the stored statistics)."""
    return act_fwd(act, bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps))


def act_fwd(name, x):
    """y = act(x), elementwise, for act in ACTIVATIONS:

    relu max(0, x); relu6 min(max(0, x), 6); hardsigmoid relu6(x + 3) / 6; hardswish x hardsigmoid(x);
    selu scale (x if x > 0 else alpha (e^x - 1)); sigmoid 1 / (1 + e^-x); identity x.
    """
    xp = _xp(x)
    if name == "relu":
        return xp.maximum(x, 0)
    if name == "relu6":
        return xp.clip(x, 0, 6)
    if name == "hardsigmoid":
        return xp.clip(x + 3, 0, 6) / 6
    if name == "hardswish":
        return x * (xp.clip(x + 3, 0, 6) / 6)
    if name == "selu":
        return SELU_SCALE * xp.where(x > 0, x, SELU_ALPHA * xp.expm1(xp.minimum(x, 0)))
    if name == "sigmoid":
        return 0.5 * (xp.tanh(0.5 * x) + 1)
    if name == "identity":
        return x.copy()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def act_bwd(name, x, gy):
    """gx = act'(x) gy (the derivative at the kinks follows PyTorch: relu'(0) = 0, hardswish'(3) = 1.5)."""
    xp = _xp(x)
    one = x.dtype.type(1)
    if name == "relu":
        return gy * (x > 0)
    if name == "relu6":
        return gy * ((x > 0) & (x < 6))
    if name == "hardsigmoid":
        return gy * (((x > -3) & (x < 3)) / x.dtype.type(6))
    if name == "hardswish":
        return gy * xp.where(x < -3, 0, xp.where(x <= 3, x / 3 + one / 2, one))
    if name == "selu":
        return gy * (SELU_SCALE * xp.where(x > 0, one, SELU_ALPHA * xp.exp(xp.minimum(x, 0))))
    if name == "sigmoid":
        s = 0.5 * (xp.tanh(0.5 * x) + 1)
        return gy * s * (1 - s)
    if name == "identity":
        return gy.copy()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


# --------------------------------------------------------------------------- loss
def cross_entropy_fwd(z, q):
    """Softmax cross-entropy of logits z (B, K) against target distributions q (B, K) (one-hot,
    label-smoothed or soft):

        logp = z - max_k z - log sum_k exp(z - max_k z);   L = -(1/B) sum_b sum_k q logp

    Returns (L, logp): the backward needs logp."""
    xp = _xp(z)
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    return -(q * logp).sum() / z.shape[0], logp


def cross_entropy_bwd(logp, q, g):
    """Its gradient for the upstream gradient g of L: gz = g (softmax(z) - q) / B, softmax(z) = exp(logp)."""
    xp = _xp(logp)
    return g * (xp.exp(logp) - q) / logp.shape[0]


# --------------------------------------------------------------------------- squeeze-excite pieces
def time_mean_fwd(x):
    """Global average pooling over time: m[b, c] = (1/L) sum_l x[b, c, l].  x (B, C, L) -> (B, C)."""
    return x.sum(axis=2) * x.dtype.type(1.0 / x.shape[2])


def time_mean_bwd(g, L):
    """Its gradient: gx[b, c, l] = g[b, c] / L.  g (B, C) -> (B, C, L)."""
    g = g * g.dtype.type(1.0 / L)
    return _xp(g).broadcast_to(g[:, :, None], g.shape + (L,)).copy()


def channel_scale_fwd(x, s):
    """y[b, c, l] = x[b, c, l] s[b, c]:  x (B, C, L), s (B, C) -> y (B, C, L)."""
    return x * s[:, :, None]


def channel_scale_bwd(gy, x, s):
    """gx = gy s[:, :, None];  gs[b, c] = sum_l gy[b, c, l] x[b, c, l]."""
    return gy * s[:, :, None], (gy * x).sum(axis=2)


def channel_scale_act_fwd(x, s, act):
    """Squeeze-excite's scaling and the activation after it: y = act(x[b, c, l] s[b, c])."""
    return act_fwd(act, channel_scale_fwd(x, s))


def channel_scale_act_bwd(gy, x, s, act):
    """Gradients of ``channel_scale_act_fwd``: g = act'(x s) gy, then gx = g s, gs = sum_l g x."""
    return channel_scale_bwd(act_bwd(act, channel_scale_fwd(x, s), gy), x, s)


# --------------------------------------------------------------------------- optimiser
def adamw_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """One AdamW step (Loshchilov & Hutter), in place on w, m, v; t >= 1 counts the steps:

        w *= 1 - lr wd;   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """
    xp = _xp(w)
    if weight_decay:
        w *= 1 - lr * weight_decay
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    w -= (lr / (1 - beta1 ** t)) * m / (xp.sqrt(v / (1 - beta2 ** t)) + eps)
