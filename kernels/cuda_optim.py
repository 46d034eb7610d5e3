"""CUDA backend: the AdamW step, with host scalars (``adamw_step``), with the learning rate and step
count read on the device so that a CUDA graph of the step stays right (``adamw_step_device``), and
for every parameter in one launch (``adamw_step_multi``, ``cuda/adamw.cu``: the array code takes
nine launches per parameter). See ``cuda.py``, which re-exports every kernel.
"""
from __future__ import annotations

import numpy as np

from . import multi_tensor
from .cuda_runtime import THREADS, _kernel, cp

# --------------------------------------------------------------------------- optimiser
_adamw = None


def adamw_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """One AdamW step in place on w, m, v, one thread per element (the reference's equation):

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w = w (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """
    global _adamw
    if _adamw is None:
        _adamw = cp.ElementwiseKernel(
            "T g, T keep, T b1, T b2, T step, T bc2, T eps", "T w, T m, T v",
            "m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * (g * g); "
            "w = w * keep - step * m / (sqrt(v / bc2) + eps);", "tinysml_adamw")
    T = w.dtype.type
    _adamw(g, T(1 - lr * weight_decay), T(beta1), T(beta2), T(lr / (1 - beta1 ** t)), T(1 - beta2 ** t), T(eps),
           w, m, v)


_adamw_device = None


def adamw_step_device(w, g, m, v, lr, t, beta1, beta2, eps, weight_decay):
    """``adamw_step`` with the learning rate and the step count read from device scalars lr, t
    ((1,) float64 arrays), so that a CUDA graph of the step stays right when replayed (the host
    values would be frozen into it). The same equation; the per-step factors are computed per
    thread in float64 and rounded to the parameters' dtype, as the host computes them for
    ``adamw_step``."""
    global _adamw_device
    if _adamw_device is None:
        _adamw_device = cp.ElementwiseKernel(
            "T g, raw float64 lr, raw float64 t, float64 b1, float64 b2, float64 eps, float64 wd", "T w, T m, T v",
            "const T keep = (T)(1 - lr[0] * wd), step = (T)(lr[0] / (1 - pow(b1, t[0])));"
            "const T bc2 = (T)(1 - pow(b2, t[0])), B1 = (T)b1, B2 = (T)b2;"
            "m = B1 * m + (1 - B1) * g; v = B2 * v + (1 - B2) * (g * g); "
            "w = w * keep - step * m / (sqrt(v / bc2) + (T)eps);", "tinysml_adamw_device")
    _adamw_device(g, lr, t, float(beta1), float(beta2), float(eps), float(weight_decay), w, m, v)


_struct_arguments = [True]      # False once this CuPy has refused a struct argument (then one launch each)


def adamw_step_multi(ws, gs, ms, vs, lr, t, beta1, beta2, eps, weight_decay):
    """``adamw_step_device`` for many parameters of one dtype in one launch per CHUNK of them
    (cuda/adamw.cu; their addresses travel in the launch's arguments, ``multi_tensor.pack``).
    Gradients that are not contiguous are copied first. A parameter or moment that is not
    contiguous, or a CuPy that cannot pass the struct argument (with a warning), gets the same step
    one launch per parameter."""
    alone = [i for i, (w, m, v) in enumerate(zip(ws, ms, vs)) if not all(a.flags.c_contiguous for a in (w, m, v))]
    for i in alone:
        adamw_step_device(ws[i], gs[i], ms[i], vs[i], lr, t, beta1, beta2, eps, weight_decay)
    if alone:
        ws, gs, ms, vs = ([a for i, a in enumerate(arrays) if i not in alone] for arrays in (ws, gs, ms, vs))
    gs = [g if g.flags.c_contiguous and g.dtype == w.dtype else cp.ascontiguousarray(g, dtype=w.dtype)
          for g, w in zip(gs, ws)]
    if not ws:
        return
    if _struct_arguments[0]:
        kernel = _kernel("adamw", "adamw_multi", ws[0].dtype)
        for k, (tensors, count, largest) in enumerate(multi_tensor.pack(ws, gs, ms, vs)):
            blocks = max(1, min(-(-largest // THREADS), 128))        # the x blocks stride over larger ones
            try:
                kernel((blocks, count), (THREADS,), (tensors, lr, t, np.float64(beta1), np.float64(beta2),
                                                     np.float64(eps), np.float64(weight_decay)))
            except TypeError as err:             # refused before anything ran (the first launch)
                if k:
                    raise
                import warnings
                warnings.warn(f"this CuPy ({cp.__version__}) cannot pass the multi-tensor AdamW's struct argument "
                              f"({err}); updating the parameters one launch each", RuntimeWarning, stacklevel=2)
                _struct_arguments[0] = False
                break
        else:
            return
    for w, g, m, v in zip(ws, gs, ms, vs):
        adamw_step_device(w, g, m, v, lr, t, beta1, beta2, eps, weight_decay)
