"""CUDA kernels through CuPy: the same names and signatures as ``reference.py``.

Hand-written CUDA C in ``cuda/*.cu`` (shared device functions in ``cuda/common.cuh``), compiled by
``cupy.RawModule`` on first use (once per device; CuPy caches the binaries, keyed by the source
text, which is why ``cuda_source.py`` writes the header into each file): the depthwise convolution
(forward, gathered input gradient, weight gradient over batch slices without atomics); every
matrix product, pointwise and dense convolutions included, as one GEMM kernel (CuPy cannot record
cuBLAS in a CUDA graph; layouts in ``gemm_layout.py``); batch norm fused with its activation (eval
mode: one pass; training mode: statistics, then one pass, and two kernels for the backward) and
its running-statistics update; activations on their own, squeeze-excite's scaling with the
activation after it and the mean over time, forward and backward (``cuda/act.cu``); the softmax
cross-entropy (``cuda/loss.cu``); the AdamW step of every parameter in one launch
(``cuda/adamw.cu``; the array code takes nine per parameter). The array code of ``reference.py``
runs on CuPy arrays only where a kernel does not apply (a depthwise gradient past 16 taps, a
grouped convolution that is not depthwise); the autograd's own array code (additions, the
distillation losses, reshapes) runs on CuPy arrays too.

Why fuse on a GPU: a small model's training step is a few hundred kernel launches of microseconds
each, so its time is launch overhead, not arithmetic; every launch saved is time saved.

Requires CuPy (``pip install 'tinysml[cuda12]'`` or ``'tinysml[cuda13]'``; on a Jetson, the CuPy
build matching JetPack's CUDA) and a CUDA device.
"""
from __future__ import annotations

import functools

import numpy as np

try:
    import cupy as cp
except ImportError as err:  # pragma: no cover - depends on the machine
    raise ImportError("the CUDA backend needs CuPy: pip install 'tinysml[cuda12]' or 'tinysml[cuda13]'") from err

from . import cuda_source
from . import gemm_layout as GL
from . import multi_tensor
from . import reference
from .reference import ACTIVATIONS, conv_out_len  # noqa: F401

THREADS = 256
ITEMS = 4             # elements per thread in the depthwise kernels (ITEMS in cuda/depthwise.cu)
_modules: dict = {}
_ACT_CODE = {"identity": 0, "relu": 1, "relu6": 2, "hardswish": 3, "hardsigmoid": 4, "selu": 5, "sigmoid": 6}


def _kernel(source: str, name: str, dtype):
    """The compiled kernel ``name``_f32/_f64 from ``cuda/<source>.cu`` for the current device."""
    key = (source, cp.cuda.runtime.getDevice())
    if key not in _modules:
        _modules[key] = cp.RawModule(code=cuda_source.source(source), options=("-std=c++14",))
    suffix = {cp.dtype(cp.float32): "f32", cp.dtype(cp.float64): "f64"}.get(cp.dtype(dtype))
    if suffix is None:
        raise TypeError(f"CUDA kernels take float32 or float64 arrays, got {dtype}")
    return _modules[key].get_function(f"{name}_{suffix}")


def _blocks(n, items=1):
    """A 1-D grid of THREADS-thread blocks covering n elements, ``items`` per thread."""
    return ((int(n) + THREADS * items - 1) // (THREADS * items),)


# --------------------------------------------------------------------------- depthwise conv1d
def dw_conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1):
    """y[b, c, l] = bias[c] + sum_k w[c, k] x[b, c, l*S + k*D - P]; ITEMS output elements per thread."""
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    Lout = conv_out_len(L, K, stride, padding, dilation)
    y = cp.empty((B, C, Lout), dtype=x.dtype)
    bias = cp.ascontiguousarray(b, dtype=x.dtype) if b is not None else cp.zeros(1, x.dtype)
    _kernel("depthwise", "dw_conv1d_fwd", x.dtype)(
        _blocks(y.size, ITEMS), (THREADS,), (x, w, bias, y, cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K),
                                             cp.int32(Lout), cp.int32(stride), cp.int32(padding), cp.int32(dilation),
                                             cp.int32(b is not None)))
    return y


def dw_conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1):
    """gx gathered (ITEMS input elements per thread, no atomics); gw and gb in two kernels: blocks (c, g)
    each sum one slice of the batch for channel c, then one thread per (c, k) adds the slices in order.
    Splitting the batch keeps the device full when there are few channels (C blocks alone leave most
    of an H100's 132 multiprocessors idle)."""
    gy, x, w = cp.ascontiguousarray(gy), cp.ascontiguousarray(x), cp.ascontiguousarray(w, dtype=x.dtype)
    B, C, L = x.shape
    K = w.shape[1]
    if K > 16:
        return reference.dw_conv1d_bwd(gy, x, w, stride, padding, dilation)
    Lout = gy.shape[2]
    args = (cp.int32(B), cp.int32(C), cp.int32(L), cp.int32(K), cp.int32(Lout), cp.int32(stride), cp.int32(padding),
            cp.int32(dilation))
    gx = cp.empty_like(x)
    _kernel("depthwise", "dw_conv1d_bwd_input", x.dtype)(_blocks(gx.size, ITEMS), (THREADS,), (gy, w, gx, *args))
    G = _batch_slices(B, C, Lout)
    gw, gb = cp.empty((C, K), dtype=x.dtype), cp.empty(C, dtype=x.dtype)
    part = cp.empty((C, G, K + 1), dtype=x.dtype) if G > 1 else gw       # G = 1: the blocks write gw, gb
    _kernel("depthwise", "dw_conv1d_bwd_weight", x.dtype)((C, G), (THREADS,), (gy, x, part, gw, gb, *args),
                                                          shared_mem=THREADS * x.dtype.itemsize)
    if G > 1:
        _kernel("depthwise", "dw_conv1d_bwd_weight_sum", x.dtype)(_blocks(C * (K + 1)), (THREADS,),
                                                                  (part, gw, gb, cp.int32(C), cp.int32(K), cp.int32(G)))
    return gx, gw, gb


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: int) -> int:
    return cp.cuda.runtime.getDeviceProperties(device)["multiProcessorCount"]


def _batch_slices(B: int, C: int, Lout: int) -> int:
    """How many slices of the batch the weight gradient splits into: enough blocks for eight per
    multiprocessor, but at least sixteen (b, l) pairs per thread in each slice. Below that (a batch
    of 64 on HAR windows) the kernel takes microseconds and the second launch would cost more than
    the split saves."""
    want = -(-8 * _multiprocessors(cp.cuda.runtime.getDevice()) // C)
    return max(1, min(want, B * Lout // (16 * THREADS), B))


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


# --------------------------------------------------------------------------- loss: cuda/loss.cu
def cross_entropy_fwd(z, q):
    """Softmax cross-entropy (reference.cross_entropy_fwd) in one launch: one block, each thread a
    row at a time, then a tree sum in a fixed order. Returns (loss as a 0-d array, logp)."""
    z = cp.ascontiguousarray(z)
    q = cp.ascontiguousarray(q, dtype=z.dtype)
    B, K = z.shape
    logp, loss = cp.empty_like(z), cp.empty(1, dtype=z.dtype)
    _kernel("loss", "cross_entropy_fwd", z.dtype)((1,), (THREADS,), (z, q, logp, loss, cp.int32(B), cp.int32(K)),
                                                  shared_mem=THREADS * z.dtype.itemsize)
    return loss.reshape(()), logp


def cross_entropy_bwd(logp, q, g):
    """Its gradient, gz = g (exp(logp) - q) / B, in one launch; g (the upstream gradient) is read on
    the device."""
    logp = cp.ascontiguousarray(logp)
    q = cp.ascontiguousarray(q, dtype=logp.dtype)
    g = cp.ascontiguousarray(g, dtype=logp.dtype).reshape(1)
    gz = cp.empty_like(logp)
    if gz.size:
        _kernel("loss", "cross_entropy_bwd", logp.dtype)(_blocks(gz.size), (THREADS,),
                                                          (logp, q, g, gz, cp.int64(gz.size), cp.int32(logp.shape[0])))
    return gz


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


# --------------------------------------------------------------------------- matrix products: cuda/gemm.cu
# Every product is the one GEMM kernel, laid out by gemm_layout.py (tested against NumPy anywhere):
# CuPy refuses cuBLAS inside a stream capture, and the training step must be recordable as a graph.
WANT_BLOCKS = 2                 # a weight gradient's partial sums: at least this many blocks per multiprocessor


def _gemm(g, a, b, c, bias=None, accumulate=False):
    """Launch cuda/gemm.cu for the layout ``g`` on operands a, b (their views' pointers) into c."""
    if g.M == 0 or g.N == 0 or g.Z1 * g.Z2 == 0:
        return c
    grid = ((g.N + 63) // 64, (g.M + 63) // 64, g.Z1 * g.Z2)
    i32, i64 = cp.int32, cp.int64
    _kernel("gemm", "gemm", c.dtype)(
        grid, (256,), (a, b, c, c if bias is None else bias, i32(g.M), i32(g.N), i32(g.K), i32(g.ks), i32(g.ns),
                       i32(g.Z2), *(i64(s) for s in g.a + g.b + g.c), i32(accumulate), i32(bias is not None)))
    return c


def _chunk(B, M, N):
    """Windows per partial sum of a weight gradient (gemm_layout.batch_chunk) for an M x N result."""
    tiles = -(-M // 64) * -(-N // 64)
    return GL.batch_chunk(B, tiles, WANT_BLOCKS * _multiprocessors(cp.cuda.runtime.getDevice()))


def matmul(a, b):
    """a @ b with NumPy's broadcasting, by cuda/gemm.cu (one launch; batch axes that do not fit its
    two strided levels are made contiguous first)."""
    dtype = cp.result_type(a, b)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    plan = GL.matmul(a.shape, GL.element_strides(a), b.shape, GL.element_strides(b))
    if plan is None:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        a = cp.ascontiguousarray(cp.broadcast_to(a, batch + a.shape[-2:]))
        b = cp.ascontiguousarray(cp.broadcast_to(b, batch + b.shape[-2:]))
        plan = GL.matmul(a.shape, GL.element_strides(a), b.shape, GL.element_strides(b))
    g, shape = plan
    out = cp.empty(shape, dtype=dtype)
    if g.K == 0:
        out.fill(0)
        return out
    return _gemm(g, a, b, out)


def pw_conv1d_fwd(x, w, b, batch_invariant=False):
    """y (B, O, L) = bias + w (O, C) @ x (B, C, L): one GEMM over the columns (b, l), the bias added in
    it. Batch-invariant as it is (each element's sum runs in k order whatever B is)."""
    B, C, L = x.shape
    O = w.shape[0]
    w = w.astype(x.dtype, copy=False)
    y = cp.empty((B, O, L), dtype=x.dtype)
    return _gemm(GL.pointwise(B, C, L, O, GL.element_strides(x), GL.element_strides(w), GL.element_strides(y)),
                 w, x, y, None if b is None else cp.ascontiguousarray(b, dtype=x.dtype))


def pw_conv1d_bwd(gy, x, w, bias_grad=True):
    """gx = w^T gy (one GEMM over (b, l)); gw = sum over (b, l) of gy x^T, as partial sums over chunks of
    the batch (enough blocks to fill the device) added by one reduction; gb = sum gy."""
    B, C, L = x.shape
    O = w.shape[0]
    w = w.astype(x.dtype, copy=False)
    gys, xs = GL.element_strides(gy), GL.element_strides(x)
    gx = cp.empty_like(x)
    _gemm(GL.pointwise_input_grad(B, C, L, O, gys, GL.element_strides(w), GL.element_strides(gx)), w, gy, gx)
    chunk = _chunk(B, O, C)
    parts = cp.empty((B // chunk, O, C), dtype=x.dtype)
    _gemm(GL.pointwise_weight_grad(B, C, L, O, gys, xs, chunk), gy, x, parts)
    gw = parts[0] if len(parts) == 1 else parts.sum(axis=0)
    return gx, gw, gy.sum(axis=(0, 2)) if bias_grad else None


def conv1d_fwd(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Dense convolution (the stem) as one implicit-im2col GEMM on the padded input: k = (c, tap).
    Grouped convolutions other than depthwise take the reference (cuBLAS; not recordable in a graph)."""
    if groups != 1:
        return reference.conv1d_fwd(x, w, b, stride, padding, dilation, groups)
    B, C, L = x.shape
    O, _, Kw = w.shape
    Lout = conv_out_len(L, Kw, stride, padding, dilation)
    xpad = cp.pad(x, ((0, 0), (0, 0), (padding, padding))) if padding else x
    w = w.astype(x.dtype, copy=False)
    y = cp.empty((B, O, Lout), dtype=x.dtype)
    g = GL.dense(B, C, Lout, O, Kw, stride, dilation, GL.element_strides(xpad), GL.element_strides(w),
                 GL.element_strides(y))
    return _gemm(g, w, xpad, y, None if b is None else cp.ascontiguousarray(b, dtype=x.dtype))


def conv1d_bwd(gy, x, w, stride=1, padding=0, dilation=1, groups=1, input_grad=True):
    """Gradients of ``conv1d_fwd``: gw as partial GEMMs over chunks of the batch plus one reduction;
    gx (when asked) one accumulating GEMM per tap into the padded input's strided view."""
    if groups != 1:
        return reference.conv1d_bwd(gy, x, w, stride, padding, dilation, groups, input_grad)
    B, C, L = x.shape
    O, _, Kw = w.shape
    Lout = gy.shape[-1]
    xpad = cp.pad(x, ((0, 0), (0, 0), (padding, padding))) if padding else x
    w = w.astype(x.dtype, copy=False)
    gys = GL.element_strides(gy)
    chunk = _chunk(B, O, C * Kw)
    parts = cp.empty((B // chunk, O, C, Kw), dtype=x.dtype)
    _gemm(GL.dense_weight_grad(B, C, Lout, O, Kw, stride, dilation, gys, GL.element_strides(xpad), chunk),
          gy, xpad, parts)
    gw = parts[0] if len(parts) == 1 else parts.sum(axis=0)
    gx = None
    if input_grad:
        gxpad = cp.zeros(xpad.shape, dtype=x.dtype)
        for t in range(Kw):
            view = gxpad[:, :, t * dilation: t * dilation + stride * (Lout - 1) + 1: stride]
            wt = w[:, :, t]
            _gemm(GL.dense_input_grad_tap(B, C, Lout, O, stride, gys, GL.element_strides(wt), GL.element_strides(view)),
                  wt, gy, view, accumulate=True)
        gx = cp.ascontiguousarray(gxpad[:, :, padding:padding + L])
    return gx, gw, gy.sum(axis=(0, 2))


# --------------------------------------------------------------------------- activations, SE, running stats: cuda/act.cu
def _act_code(name: str) -> int:
    if name not in _ACT_CODE:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return _ACT_CODE[name]


def act_fwd(name, x):
    """y = act(x), elementwise over the flattened array in one launch (the array code takes up to
    four: hardswish is x * (clip(x + 3, 0, 6) / 6)); the equations are reference.act_fwd's."""
    code = _act_code(name)
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    if x.size:
        _kernel("act", "act", x.dtype)(_blocks(x.size), (THREADS,), (x, y, cp.int64(x.size), cp.int32(code)))
    return y


def act_bwd(name, x, gy):
    """gx = act'(x) gy in one launch (reference.act_bwd)."""
    code = _act_code(name)
    x = cp.ascontiguousarray(x)
    gy = cp.ascontiguousarray(gy, dtype=x.dtype)
    gx = cp.empty_like(x)
    if x.size:
        _kernel("act", "act_grad", x.dtype)(_blocks(x.size), (THREADS,), (x, gy, gx, cp.int64(x.size), cp.int32(code)))
    return gx


def channel_scale_act_fwd(x, s, act):
    """Squeeze-excite's scaling and the activation after it, y = act(x[b, c, l] s[b, c]), in one launch."""
    code = _act_code(act)
    x = cp.ascontiguousarray(x)
    y = cp.empty_like(x)
    if x.size:
        _kernel("act", "channel_scale_act", x.dtype)(_blocks(x.size), (THREADS,),
                                                     (x, cp.ascontiguousarray(s, dtype=x.dtype), y, cp.int64(x.size),
                                                      cp.int32(x.shape[2]), cp.int32(code)))
    return y


def channel_scale_act_bwd(gy, x, s, act):
    """Its gradients in one launch, one block per row (b, c): g = act'(x s) gy, gx = g s, and
    gs[b, c] = sum_l g x by a tree sum in a fixed order (no atomics)."""
    code = _act_code(act)
    x = cp.ascontiguousarray(x)
    gy, s = cp.ascontiguousarray(gy, dtype=x.dtype), cp.ascontiguousarray(s, dtype=x.dtype)
    B, C, L = x.shape
    gx, gs = cp.empty_like(x), cp.empty((B, C), dtype=x.dtype)
    if B * C:
        threads = _row_threads(L)
        _kernel("act", "channel_scale_act_grad", x.dtype)((B * C,), (threads,), (gy, x, s, gx, gs, cp.int32(L),
                                                                                 cp.int32(code)),
                                                          shared_mem=threads * x.dtype.itemsize)
    return gx, gs


def channel_scale_bwd(gy, x, s):
    """Squeeze-excite's scaling without an activation: the fused backward with the identity."""
    return channel_scale_act_bwd(gy, x, s, "identity")


def _row_threads(L: int) -> int:
    """Threads of a block that sums one row of L values: a power of two (block_sum), 32 to THREADS."""
    return min(THREADS, max(32, 1 << max(L - 1, 0).bit_length()))


def time_mean_fwd(x):
    """Global average pooling over time, m[b, c] = (1/L) sum_l x[b, c, l], in one launch (one block
    per row, a tree sum in a fixed order); the array code is a reduction and a multiply."""
    x = cp.ascontiguousarray(x)
    B, C, L = x.shape
    m = cp.empty((B, C), dtype=x.dtype)
    if B * C:
        threads = _row_threads(L)
        _kernel("act", "time_mean", x.dtype)((B * C,), (threads,), (x, m, cp.int32(L)),
                                             shared_mem=threads * x.dtype.itemsize)
    return m


def time_mean_bwd(g, L):
    """Its gradient, gx[b, c, l] = g[b, c] / L, in one launch (the array code: a multiply and a copy)."""
    g = cp.ascontiguousarray(g)
    gx = cp.empty(g.shape + (L,), dtype=g.dtype)
    if gx.size:
        _kernel("act", "time_mean_grad", g.dtype)(_blocks(gx.size), (THREADS,), (g, gx, cp.int64(gx.size),
                                                                                cp.int32(L)))
    return gx


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


