"""CUDA backend: batch norm with stored and with batch statistics, fused with the activation after
it (``cuda/bn_act.cu``), and the running statistics' update (``cuda/act.cu``); see ``cuda.py``,
which re-exports every kernel.
"""
from __future__ import annotations

from .cuda_runtime import THREADS, _ACT_CODE, _blocks, _kernel, cp

# --------------------------------------------------------------------------- eval mode: cuda/bn_act.cu
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


# --------------------------------------------------------------------------- training-mode batch norm + act
def bn_act_train_fwd(x, gamma, beta, eps, act):
    """y = act(gamma (x - mean) invstd + beta) with batch statistics over (B, L): one block per channel
    for mean, var (biased, two passes), invstd, and the folded scale/shift, then the eval kernel's
    single elementwise pass. Returns y, mean, var, invstd (C,) as the reference."""
    x = cp.ascontiguousarray(x)
    B, C, L = x.shape
    gamma, beta = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (gamma, beta))
    mean, var, invstd, scale, shift = (cp.empty(C, x.dtype) for _ in range(5))
    _kernel("bn_act", "bn_stats", x.dtype)((C,), (THREADS,), (x, gamma, beta, mean, var, invstd, scale, shift,
                                                              cp.int32(B), cp.int32(C), cp.int32(L), float(eps)),
                                           shared_mem=THREADS * x.dtype.itemsize)
    y = cp.empty_like(x)
    _kernel("bn_act", "bn_act", x.dtype)(_blocks(x.size), (THREADS,), (x, scale, shift, y, cp.int64(x.size),
                                                                       cp.int32(C), cp.int32(L), cp.int32(_ACT_CODE[act])))
    return y, mean, var, invstd


def bn_act_bwd(gy, x, gamma, beta, mean, invstd, act):
    """Gradients of ``bn_act_train_fwd``: g = act'(pre) gy (pre recomputed); gbeta = sum g, ggamma =
    sum g xhat (one block per channel); gx = gamma invstd / N (N g - gbeta - xhat ggamma)."""
    gy, x = cp.ascontiguousarray(gy), cp.ascontiguousarray(x)
    B, C, L = x.shape
    gamma, beta, mean, invstd = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (gamma, beta, mean, invstd))
    ggamma, gbeta = cp.empty(C, x.dtype), cp.empty(C, x.dtype)
    code = cp.int32(_ACT_CODE[act])
    _kernel("bn_act", "bn_act_grad_sums", x.dtype)((C,), (THREADS,), (gy, x, gamma, beta, mean, invstd, ggamma, gbeta,
                                                                      cp.int32(B), cp.int32(C), cp.int32(L), code),
                                                   shared_mem=THREADS * x.dtype.itemsize)
    gx = cp.empty_like(x)
    _kernel("bn_act", "bn_act_grad_input", x.dtype)(_blocks(x.size), (THREADS,),
                                                    (gy, x, gamma, beta, mean, invstd, ggamma, gbeta, gx,
                                                     cp.int64(x.size), cp.int32(C), cp.int32(L), code))
    return gx, ggamma, gbeta


def bn_train_fwd(x, gamma, beta, eps):
    """Training-mode batch norm without an activation (the fused kernels with act = identity)."""
    return bn_act_train_fwd(x, gamma, beta, eps, "identity")


def bn_bwd(gy, x, gamma, mean, invstd):
    """Gradients of ``bn_train_fwd``; beta does not enter them (identity activation)."""
    return bn_act_bwd(gy, x, gamma, cp.zeros_like(gamma), mean, invstd, "identity")


def bn_update_running(running_mean, running_var, mean, var, momentum, n):
    """Batch norm's running statistics in place in one launch (the array code takes seven; ten with
    the momentum in a device array). reference.bn_update_running has the equation."""
    C, dtype = running_mean.size, running_mean.dtype
    mean, var = (cp.ascontiguousarray(a, dtype=dtype) for a in (mean, var))
    ratio = dtype.type(n / (n - 1))
    if isinstance(momentum, (int, float)):
        _kernel("act", "bn_running", dtype)(_blocks(C), (THREADS,), (running_mean, running_var, mean, var,
                                                                      dtype.type(1 - momentum), dtype.type(momentum),
                                                                      ratio, cp.int32(C)))
    else:
        momentum = cp.ascontiguousarray(momentum, dtype=cp.float64).reshape(1)
        _kernel("act", "bn_running_device", dtype)(_blocks(C), (THREADS,), (running_mean, running_var, mean, var,
                                                                             momentum, ratio, cp.int32(C)))
