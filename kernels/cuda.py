"""CUDA kernels through CuPy: the same names and signatures as ``reference.py``.

The depthwise convolution (forward, gathered input gradient, per-channel weight gradient without
atomics), eval-mode batch norm fused with its activation, and squeeze-excite's channel scaling are
hand-written CUDA C in ``cuda/*.cu``, compiled by ``cupy.RawModule`` on first use (once per device;
CuPy caches the binaries). Everything else is the reference array code running on CuPy arrays:
pointwise convolutions are ``cupy.matmul`` (cuBLAS), reductions are CuPy's.

Requires CuPy (``pip install 'tinysml[cuda12]'`` or ``'tinysml[cuda13]'``; on a Jetson, the CuPy
build matching JetPack's CUDA) and a CUDA device.
"""
from __future__ import annotations

import os

try:
    import cupy as cp
except ImportError as err:  # pragma: no cover - depends on the machine
    raise ImportError("the CUDA backend needs CuPy: pip install 'tinysml[cuda12]' or 'tinysml[cuda13]'") from err

from . import reference
from .reference import ACTIVATIONS, conv_out_len  # noqa: F401

SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")
THREADS = 256
_modules: dict = {}
_ACT_CODE = {"identity": 0, "relu": 1, "relu6": 2, "hardswish": 3, "hardsigmoid": 4, "selu": 5, "sigmoid": 6}


def _kernel(source: str, name: str, dtype):
    """The compiled kernel ``name``_f32/_f64 from ``cuda/<source>.cu`` for the current device."""
    key = (source, cp.cuda.runtime.getDevice())
    if key not in _modules:
        with open(os.path.join(SOURCES, f"{source}.cu")) as f:
            _modules[key] = cp.RawModule(code=f.read(), options=("-std=c++14",))
    suffix = {cp.dtype(cp.float32): "f32", cp.dtype(cp.float64): "f64"}.get(cp.dtype(dtype))
    if suffix is None:
        raise TypeError(f"CUDA kernels take float32 or float64 arrays, got {dtype}")
    return _modules[key].get_function(f"{name}_{suffix}")


def _blocks(n):
    return ((int(n) + THREADS - 1) // THREADS,)


# --------------------------------------------------------------------------- depthwise conv1d
def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """y[b, c, l] = bias[c] + sum_k w[c, k] x[b, c, l*S + k*D - P]; one thread per output element."""
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    Lout = conv_out_len(L, K, stride, padding, dilation)
    y = cp.empty((B, C, Lout), dtype=x.dtype)
    bias = cp.ascontiguousarray(b, dtype=x.dtype) if b is not None else cp.zeros(1, x.dtype)
    _kernel("depthwise", "dw_conv1d_fwd", x.dtype)(
        _blocks(y.size), (THREADS,), (x, w, bias, y, cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K),
                                      cp.int32(Lout), cp.int32(stride), cp.int32(padding), cp.int32(dilation),
                                      cp.int32(b is not None)))
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """gx gathered (one thread per input element, no atomics); gw and gb by one block per channel."""
    gy, x, w = cp.ascontiguousarray(gy), cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    if K > 16:
        return reference.dw_conv1d_bwd(gy, x, w, stride, padding, dilation)
    Lout = gy.shape[2]
    args = (cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K), cp.int32(Lout), cp.int32(stride), cp.int32(padding),
            cp.int32(dilation))
    gx = cp.empty_like(x)
    _kernel("depthwise", "dw_conv1d_bwd_input", x.dtype)(_blocks(gx.size), (THREADS,), (gy, w, gx, *args))
    gw = cp.empty((C, K), dtype=x.dtype)
    gb = cp.empty(C, dtype=x.dtype)
    _kernel("depthwise", "dw_conv1d_bwd_weight", x.dtype)((C,), (THREADS,), (gy, x, gw, gb, *args),
                                                          shared_mem=THREADS * x.dtype.itemsize)
    return gx, gw, gb


# --------------------------------------------------------------------------- batch norm, SE
def bn_eval_fwd(x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode batch norm as one fused elementwise kernel (see bn_act.cu)."""
    return bn_act_eval(x, gamma, beta, running_mean, running_var, eps, "identity")


def bn_act_eval(x, gamma, beta, running_mean, running_var, eps, act):
    """act(batch_norm_eval(x)) in one pass: the fused inference kernel."""
    x = cp.ascontiguousarray(x)
    scale = (gamma / cp.sqrt(running_var + eps)).astype(x.dtype)
    shift = (beta - running_mean * scale).astype(x.dtype)
    y = cp.empty_like(x)
    _kernel("bn_act", "bn_act", x.dtype)(_blocks(x.size), (THREADS,),
                                         (x, scale, shift, y, cp.int64(x.size), cp.int32(x.shape[1]),
                                          cp.int32(x.shape[2]), cp.int32(_ACT_CODE[act])))
    return y


def channel_scale_fwd(x, s):
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    _kernel("bn_act", "channel_scale", x.dtype)(_blocks(x.size), (THREADS,),
                                                (x, cp.ascontiguousarray(s, dtype=x.dtype), y, cp.int64(x.size),
                                                 cp.int32(x.shape[2])))
    return y


# --------------------------------------------------------------------------- the rest: reference on CuPy
conv1d_fwd = reference.conv1d_fwd            # stem: tap-by-tap batched matmuls (cuBLAS)
conv1d_bwd = reference.conv1d_bwd
pw_conv1d_fwd = reference.pw_conv1d_fwd      # cupy.matmul -> cuBLAS
pw_conv1d_bwd = reference.pw_conv1d_bwd
bn_train_fwd = reference.bn_train_fwd
bn_bwd = reference.bn_bwd
bn_act_train_fwd = reference.bn_act_train_fwd   # not fused on the GPU yet: composed from the kernels above
bn_act_bwd = reference.bn_act_bwd
act_fwd = reference.act_fwd
act_bwd = reference.act_bwd
channel_scale_bwd = reference.channel_scale_bwd
channel_scale_act_fwd = reference.channel_scale_act_fwd     # composed from the kernels above
channel_scale_act_bwd = reference.channel_scale_act_bwd
adamw_step = reference.adamw_step                          # CuPy's elementwise array code
