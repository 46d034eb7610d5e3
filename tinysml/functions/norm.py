"""Normalisation: batch norm over (B, L) per channel, layer norm over the last axis."""
from __future__ import annotations

from ..backend import get_array_module, kernels_for
from ..tensor import Function, Tensor


class BatchNorm(Function):
    """Training-mode batch norm (batch statistics). The batch mean and biased variance are written
    into the caller's ``stats`` dict for the running-average update (with or without a graph)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, stats):
        y, mean, var, invstd = kernels_for(x).bn_train_fwd(x, gamma, beta, eps)
        ctx.save(x, gamma, mean, invstd)
        stats["mean"], stats["var"] = mean, var
        return y

    @staticmethod
    def backward(ctx, g):
        x, gamma, mean, invstd = ctx.saved
        return kernels_for(x).bn_bwd(g, x, gamma, mean, invstd)


class BatchNormEval(Function):
    """Eval-mode batch norm: an affine map per channel with the stored statistics."""

    @staticmethod
    def forward(ctx, x, gamma, beta, *, running_mean, running_var, eps):
        ctx.save(x, gamma, running_mean, running_var)      # the statistics are constants, not inputs
        ctx.eps = eps
        return kernels_for(x).bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps)

    @staticmethod
    def backward(ctx, g):
        x, gamma, mean, var = ctx.saved
        invstd = 1 / get_array_module(x).sqrt(var + ctx.eps)   # here, not in the forward: inference never needs it
        gx = g * (gamma * invstd)[None, :, None]
        ggamma = (g * (x - mean[None, :, None]) * invstd[None, :, None]).sum(axis=(0, 2))
        return gx, ggamma, g.sum(axis=(0, 2))


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Batch norm over (B, L). In training mode the running statistics (arrays) are updated in
    place as PyTorch does: r = (1 - momentum) r + momentum s, with the unbiased variance."""
    n = _values_per_channel("batch_norm", x, gamma, training)
    if not training:
        return BatchNormEval.apply(x, gamma, beta, running_mean=_array(running_mean), running_var=_array(running_var),
                                   eps=eps)
    stats = {}
    out = BatchNorm.apply(x, gamma, beta, eps=eps, stats=stats)
    if running_mean is not None:
        _update_running(running_mean, running_var, stats, momentum, n)
    return out


def _array(stat):
    """A running statistic as an array (callers may hand over a Tensor)."""
    if stat is None:
        raise ValueError("batch_norm needs both running_mean and running_var (the stored statistics) in eval "
                         "mode, and both or neither in training mode")
    return stat.data if isinstance(stat, Tensor) else stat


def _values_per_channel(name, x, gamma, training) -> int:
    """N = B L after checking that x is (B, C, L) with gamma's C, and (training) that N > 1."""
    C = gamma.shape[0]
    if x.ndim != 3 or x.shape[1] != C:
        raise ValueError(f"{name} expected input of shape (B, {C}, L), got {tuple(x.shape)}")
    n = x.shape[0] * x.shape[2]
    if training and n < 2:
        raise ValueError(f"{name} in training mode needs more than one value per channel, got input {tuple(x.shape)}")
    return n


def _update_running(running_mean, running_var, stats, momentum, n):
    """The running statistics' update in place (kernels.reference.bn_update_running: PyTorch's, with
    the unbiased variance). momentum: a number, or a float64 array of one element on the device
    (precise BN replayed as a CUDA graph, train.recalibrate_batchnorm: a number would be frozen
    into the graph, an array is read when the kernels run); both give the same numbers."""
    running_mean, running_var = _array(running_mean), _array(running_var)    # a Tensor's own array, in place
    kernels_for(running_mean).bn_update_running(running_mean, running_var, stats["mean"], stats["var"], momentum, n)


class BatchNormAct(Function):
    """act(training-mode batch norm) as one kernel pair: the pre-activation is never stored (the
    backward recomputes it from x and the batch statistics), which saves a pass and a buffer."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, act, stats):
        y, mean, var, invstd = kernels_for(x).bn_act_train_fwd(x, gamma, beta, eps, act)
        ctx.save(x, gamma, beta, mean, invstd)
        ctx.act = act
        stats["mean"], stats["var"] = mean, var
        return y

    @staticmethod
    def backward(ctx, g):
        x, gamma, beta, mean, invstd = ctx.saved
        return kernels_for(x).bn_act_bwd(g, x, gamma, beta, mean, invstd, ctx.act)


class BatchNormActEval(Function):
    """act(eval-mode batch norm) in one pass: y = act(x scale + shift) with the stored statistics."""

    @staticmethod
    def forward(ctx, x, gamma, beta, *, running_mean, running_var, eps, act):
        ctx.save(x, gamma, beta, running_mean, running_var)      # the statistics are constants, not inputs
        ctx.eps, ctx.act = eps, act
        return kernels_for(x).bn_act_eval(x, gamma, beta, running_mean, running_var, eps, act)

    @staticmethod
    def backward(ctx, g):
        x, gamma, beta, mean, var = ctx.saved
        K = kernels_for(x)
        invstd = 1 / get_array_module(x).sqrt(var + ctx.eps)    # here, not in the forward: inference never needs it
        xhat = (x - mean[None, :, None]) * invstd[None, :, None]
        g = K.act_bwd(ctx.act, xhat * gamma[None, :, None] + beta[None, :, None], g)        # through act
        return g * (gamma * invstd)[None, :, None], (g * xhat).sum(axis=(0, 2)), g.sum(axis=(0, 2))


def batch_norm_act(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5,
                   act="identity"):
    """act(batch_norm(x, ...)) with one fused kernel per direction; same arguments, same running-
    statistics update as ``batch_norm``."""
    n = _values_per_channel("batch_norm_act", x, gamma, training)
    if not training:
        return BatchNormActEval.apply(x, gamma, beta, running_mean=_array(running_mean),
                                      running_var=_array(running_var), eps=eps, act=act)
    stats = {}
    out = BatchNormAct.apply(x, gamma, beta, eps=eps, act=act, stats=stats)
    if running_mean is not None:
        _update_running(running_mean, running_var, stats, momentum, n)
    return out


class LayerNorm(Function):
    """y = gamma (x - mean) / sqrt(var + eps) + beta over the last axis."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        xp = get_array_module(x)
        mean = x.mean(axis=-1, keepdims=True)
        xc = x - mean
        invstd = 1 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        xhat = xc * invstd
        ctx.save(xhat, invstd, gamma)
        return xhat * gamma + beta

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, gamma = ctx.saved
        D = xhat.shape[-1]
        batch_axes = tuple(range(xhat.ndim - 1))
        gxhat = g * gamma
        gx = invstd / D * (D * gxhat - gxhat.sum(-1, keepdims=True) - xhat * (gxhat * xhat).sum(-1, keepdims=True))
        return gx, (g * xhat).sum(axis=batch_axes), g.sum(axis=batch_axes)


def layer_norm(x, gamma, beta, eps=1e-5):
    if x.shape[-1] != gamma.shape[0]:
        raise ValueError(f"layer_norm expected a last axis of {gamma.shape[0]}, got shape {tuple(x.shape)}")
    return LayerNorm.apply(x, gamma, beta, eps=eps)
