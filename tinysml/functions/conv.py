"""Convolutions over time and the squeeze-excite pieces, all through the backend's kernels.

Shapes: x (B, C, L); dense/grouped weight (O, C/G, K); depthwise weight (C, K); pointwise (O, C).
The depthwise and pointwise Functions also take a layer's own (C, 1, K) and (O, C, 1) parameters:
they view them in their kernel's shape and hand the gradient back in the parameter's, so a layer
costs one graph node, not two (a separate Reshape node per weight was 13 of the student's 67).
"""
from __future__ import annotations

from ..backend import kernels_for
from ..tensor import Function, is_batch_invariant


def _check_input(x, channels, what):
    if x.ndim != 3 or x.shape[1] != channels:
        raise ValueError(f"{what} expected input of shape (B, {channels}, L), got {tuple(x.shape)}")


class Conv1d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, *, stride, padding, dilation, groups):
        ctx.save(x, w)
        ctx.args = stride, padding, dilation, groups
        return kernels_for(x).conv1d_fwd(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        gx, gw, gb = kernels_for(x).conv1d_bwd(g, x, w, *ctx.args, input_grad=ctx.needs_grad[0])
        return (gx, gw) if len(ctx.parents) == 2 else (gx, gw, gb)


class DepthwiseConv1d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, *, stride, padding, dilation):
        ctx.w_shape = w.shape                         # (C, K) or the layer's (C, 1, K)
        w = w.reshape(w.shape[0], w.shape[-1])        # (C, K), a view
        ctx.save(x, w)
        ctx.args = stride, padding, dilation
        return kernels_for(x).dw_conv1d_fwd(x, w, b, stride, padding, dilation)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        gx, gw, gb = kernels_for(x).dw_conv1d_bwd(g, x, w, *ctx.args)
        gw = gw.reshape(ctx.w_shape)
        return (gx, gw) if len(ctx.parents) == 2 else (gx, gw, gb)


class PointwiseConv1d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None):
        ctx.w_shape = w.shape                         # (O, C) or the layer's (O, C, 1)
        w = w.reshape(w.shape[0], w.shape[1])         # (O, C), a view
        ctx.save(x, w)
        return kernels_for(x).pw_conv1d_fwd(x, w, b, batch_invariant=is_batch_invariant())

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        gx, gw, gb = kernels_for(x).pw_conv1d_bwd(g, x, w, bias_grad=len(ctx.parents) == 3)
        gw = gw.reshape(ctx.w_shape)
        return (gx, gw) if len(ctx.parents) == 2 else (gx, gw, gb)


class ChannelScale(Function):
    """y[b, c, l] = x[b, c, l] s[b, c] (squeeze-excite's re-weighting)."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.save(x, s)
        return kernels_for(x).channel_scale_fwd(x, s)

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved
        return kernels_for(x).channel_scale_bwd(g, x, s)


class ChannelScaleAct(Function):
    """y = act(x[b, c, l] s[b, c]): squeeze-excite's re-weighting and the activation after it, one
    kernel per direction (x s is recomputed in the backward, not stored)."""

    @staticmethod
    def forward(ctx, x, s, act):
        ctx.save(x, s)
        ctx.act = act
        return kernels_for(x).channel_scale_act_fwd(x, s, act)

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved
        return kernels_for(x).channel_scale_act_bwd(g, x, s, ctx.act)


class GlobalAvgPool(Function):
    """m[b, c] = (1/L) sum_l x[b, c, l]: squeeze-excite's squeeze and the head's pooling."""

    @staticmethod
    def forward(ctx, x):
        ctx.length = x.shape[2]
        return kernels_for(x).time_mean_fwd(x)

    @staticmethod
    def backward(ctx, g):
        return kernels_for(g).time_mean_bwd(g, ctx.length)


def _args(*tensors):
    return tuple(t for t in tensors if t is not None)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Dense or grouped convolution; weight (O, C/G, K)."""
    O, Cg, K = weight.shape
    _check_input(x, Cg * groups, f"conv1d with weight {tuple(weight.shape)} and groups={groups}")
    if O % groups:
        raise ValueError(f"conv1d: out channels {O} not divisible by groups {groups}")
    return Conv1d.apply(*_args(x, weight, bias), stride=stride, padding=padding, dilation=dilation, groups=groups)


def dw_conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Depthwise convolution; weight (C, K) or (C, 1, K)."""
    if not (weight.ndim == 2 or (weight.ndim == 3 and weight.shape[1] == 1)):
        raise ValueError(f"depthwise conv1d expected a weight of shape (C, K) or (C, 1, K), got {tuple(weight.shape)}")
    _check_input(x, weight.shape[0], f"depthwise conv1d with weight {tuple(weight.shape)}")
    return DepthwiseConv1d.apply(*_args(x, weight, bias), stride=stride, padding=padding, dilation=dilation)


def pw_conv1d(x, weight, bias=None):
    """Pointwise (1x1) convolution; weight (O, C) or (O, C, 1)."""
    if not (weight.ndim == 2 or (weight.ndim == 3 and weight.shape[2] == 1)):
        raise ValueError(f"pointwise conv1d expected a weight of shape (O, C) or (O, C, 1), got {tuple(weight.shape)}")
    _check_input(x, weight.shape[1], f"pointwise conv1d with weight {tuple(weight.shape)}")
    return PointwiseConv1d.apply(*_args(x, weight, bias))


def global_avg_pool(x):
    """(B, C, L) -> (B, C): the mean over time."""
    if x.ndim != 3:
        raise ValueError(f"global_avg_pool expected input of shape (B, C, L), got {tuple(x.shape)}")
    return GlobalAvgPool.apply(x)


def channel_scale(x, s):
    return ChannelScale.apply(x, s)


def channel_scale_act(x, s, act: str):
    """act(channel_scale(x, s)) fused (see ChannelScaleAct)."""
    return ChannelScaleAct.apply(x, s, act=act)
