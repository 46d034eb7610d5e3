"""Differentiable operations, grouped by kind. Each is a ``Function`` (forward/backward on raw
arrays) plus a small wrapper that takes and returns Tensors; this package re-exports the wrappers,
so ``tinysml.functions`` (conventionally ``F``) is the one place to find them all."""
from .elementwise import add, sub, mul, div, neg, pow, exp, log, sqrt, abs, maximum, clip, where
from .activation import relu, relu6, hardswish, hardsigmoid, sigmoid, selu, activation, softmax, log_softmax, dropout
from .reduce import sum, mean, max, var
from .shape import reshape, transpose, getitem, concat, stack, pad, interpolate_linear, flatten
from .linalg import matmul, linear
from .conv import conv1d, dw_conv1d, pw_conv1d, global_avg_pool, channel_scale, channel_scale_act
from .norm import batch_norm, batch_norm_act, layer_norm
from .spectral import rfft_magnitude
from .loss import cross_entropy, mse_loss, kl_div, nll_loss

__all__ = [name for name in dir() if not name.startswith("_")]
