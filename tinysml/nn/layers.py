"""Layers: convolutions, normalisation, linear maps, activations, dropout, squeeze-excite.

Weights follow PyTorch's layouts (Conv1d (O, C/G, K), Linear (out, in)) so that state dicts map
one to one and the tests can copy weights into a PyTorch twin.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functions as F
from ..functions import conv as fconv, linalg as flinalg, norm as fnorm
from ..functions.activation import Activation as FActivation
from ..random import get_rng
from .module import Module, Parameter


def kaiming_normal_fan_out(shape, rng) -> np.ndarray:
    """N(0, 2 / fan_out) with fan_out = O * K (He init for ReLU-like nets, PyTorch's mode='fan_out')."""
    fan_out = shape[0] * int(np.prod(shape[2:]))
    return rng.normal(0.0, math.sqrt(2.0 / fan_out), size=shape).astype(np.float32)


class Conv1d(Module):
    """1-D convolution over time: (B, C, L) -> (B, O, Lout).

    Dispatches to the depthwise kernel when groups == C == O and to the pointwise (matmul) kernel
    for an unstrided, unpadded 1x1 convolution; the dense/grouped kernel otherwise.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None):
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels} -> {out_channels} not divisible by groups={groups}")
        rng = rng or get_rng()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = Parameter(kaiming_normal_fan_out((out_channels, in_channels // groups, kernel_size), rng))
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None

    @property
    def kind(self) -> str:
        if self.groups == self.in_channels == self.out_channels and self.groups > 1:
            return "depthwise"
        if self.kernel_size == 1 and self.groups == 1 and self.stride == 1 and self.padding == 0:
            return "pointwise"
        return "dense" if self.groups == 1 else "grouped"

    def forward(self, x):
        kind = self.kind
        if kind == "depthwise":                       # weight (C, 1, K), viewed as (C, K) inside
            return F.dw_conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if kind == "pointwise":                       # weight (O, C, 1), viewed as (O, C) inside
            return F.pw_conv1d(x, self.weight, self.bias)
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def infer(self, x):
        arrays = (x, self.weight.data) if self.bias is None else (x, self.weight.data, self.bias.data)
        kind = self.kind
        if kind == "depthwise":
            return fconv.DepthwiseConv1d.run(*arrays, stride=self.stride, padding=self.padding, dilation=self.dilation)
        if kind == "pointwise":
            return fconv.PointwiseConv1d.run(*arrays)
        return fconv.Conv1d.run(*arrays, stride=self.stride, padding=self.padding, dilation=self.dilation,
                            groups=self.groups)

    def output_length(self, L: int) -> int:
        return (L + 2 * self.padding - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    def macs(self, L_out: int) -> int:
        """Multiply-adds per sample: O * (C/G) * K * Lout."""
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size * L_out

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"p={self.padding}, d={self.dilation}, g={self.groups}, bias={self.bias is not None}")


class BatchNorm1d(Module):
    """Batch norm over (B, L) per channel with running statistics (momentum 0.1, PyTorch's convention)."""

    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)

    def forward(self, x):
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def infer(self, x):
        if self.training:                             # batch statistics and their update: the full path
            return super().infer(x)
        return fnorm.BatchNormEval.run(x, self.weight.data, self.bias.data, running_mean=self.running_mean,
                                   running_var=self.running_var, eps=self.eps)

    def extra_repr(self):
        return str(self.num_features)


class Linear(Module):
    """y = x W^T + b, W (out, in) initialised N(0, 0.01^2) as in the released code, b = 0."""

    def __init__(self, in_features, out_features, bias=True, rng=None, std=0.01):
        rng = rng or get_rng()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(rng.normal(0.0, std, size=(out_features, in_features)).astype(np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def infer(self, x):
        w = self.weight.data
        return flinalg.Linear.run(x, w) if self.bias is None else flinalg.Linear.run(x, w, self.bias.data)

    def macs(self) -> int:
        return self.in_features * self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class LayerNorm(Module):
    def __init__(self, num_features, eps=1e-5):
        self.eps = eps
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def infer(self, x):
        return super().infer(x) if self.training else x

    def extra_repr(self):
        return f"p={self.p}"


class Activation(Module):
    """An elementwise activation by name: relu, relu6, hardswish, hardsigmoid, selu, sigmoid, identity."""

    def __init__(self, name: str):
        from ..kernels.reference import ACTIVATIONS
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
        self.name = name

    def forward(self, x):
        return x if self.name == "identity" else F.activation(x, self.name)

    def infer(self, x):
        return x if self.name == "identity" else FActivation.run(x, name=self.name)

    def extra_repr(self):
        return self.name


class Sequential(Module):
    """Modules applied in order; indexable, iterable, and named '0', '1', ... in the state dict."""

    def __init__(self, *modules):
        for i, m in enumerate(modules):
            setattr(self, str(i), m)
        self._length = len(modules)

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*[self[j] for j in range(self._length)[i]])
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(i)
        return getattr(self, str(i))

    def __iter__(self):
        modules = vars(self)
        return (modules[str(i)] for i in range(self._length))

    def forward(self, x):
        modules = vars(self)
        for i in range(self._length):
            x = modules[str(i)](x)
        return x

    def infer(self, x):
        modules = vars(self)
        for i in range(self._length):
            x = modules[str(i)].infer(x)
        return x


class ConvBNAct(Sequential):
    """Conv1d -> BatchNorm1d -> Activation with the last two fused (``F.batch_norm_act``: one kernel
    per direction, no stored pre-activation) for the activations where that measured faster. The children are named '0', '1', '2' exactly as in a
    Sequential, so state dicts, checkpoints and the PyTorch twin see the same parameters."""

    def __init__(self, conv: "Conv1d", bn: BatchNorm1d, act: Activation):
        super().__init__(conv, bn, act)

    # activations whose fused kernels measure slower (bench/fusions.py); none since SELU's fused
    # rows got the vectorised exp (BN + SELU fused 0.94-0.98x the separate kernels)
    unfused = ()

    def forward(self, x):
        conv, bn, act = self.__dict__["0"], self.__dict__["1"], self.__dict__["2"]
        if act.name in self.unfused:
            return act(bn(conv(x)))
        return F.batch_norm_act(conv(x), bn.weight, bn.bias, bn.running_mean, bn.running_var, training=bn.training,
                                momentum=bn.momentum, eps=bn.eps, act=act.name)

    def infer(self, x):
        conv, bn, act = self.__dict__["0"], self.__dict__["1"], self.__dict__["2"]
        if bn.training:                               # batch statistics and their update: the full path
            return Module.infer(self, x)
        if act.name in self.unfused:
            return act.infer(bn.infer(conv.infer(x)))
        return fnorm.BatchNormActEval.run(conv.infer(x), bn.weight.data, bn.bias.data, running_mean=bn.running_mean,
                                      running_var=bn.running_var, eps=bn.eps, act=act.name)


class SqueezeExcite(Module):
    """Squeeze-and-excitation over time:
    s = hardsigmoid(W2 relu(W1 mean_l x)),  y = x * s[:, :, None];  W1 (C/4, C), W2 (C, C/4), no biases."""

    def __init__(self, channels, reduction=4, rng=None):
        self.fc1 = Linear(channels, channels // reduction, bias=False, rng=rng)
        self.fc2 = Linear(channels // reduction, channels, bias=False, rng=rng)

    def forward(self, x, act: str = "identity"):              # x (B, C, L)
        """The re-weighted x; ``act`` applies an activation to it in the same fused kernel."""
        s = F.global_avg_pool(x)                              # (B, C)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))      # (B, C)
        return F.channel_scale(x, s) if act == "identity" else F.channel_scale_act(x, s, act)

    def infer(self, x, act: str = "identity"):
        s = fconv.GlobalAvgPool.run(x)
        s = FActivation.run(self.fc2.infer(FActivation.run(self.fc1.infer(s), name="relu")), name="hardsigmoid")
        return fconv.ChannelScale.run(x, s) if act == "identity" else fconv.ChannelScaleAct.run(x, s, act=act)
