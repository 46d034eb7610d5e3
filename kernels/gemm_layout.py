"""How each matrix product of the CUDA backend is laid out for the one GEMM kernel in cuda/gemm.cu.

The kernel computes C[z](m, n) = bias[m] + sum_k A[z](m, k) B[z](k, n), addressing every operand by
element strides with two split axes, k = k1 KS + k2 and n = n1 NS + n2, and a grid axis z = z1 Z2 + z2
(cuda/gemm.cu's header has the formulas). A ``Gemm`` holds those numbers; the functions below make
one for each use, from shapes and element strides alone (no CuPy), so that the address arithmetic
is tested on any machine: ``execute`` runs a ``Gemm`` with NumPy by exactly the kernel's formulas.

Strides are in elements (``element_strides``); a view's offset travels in its pointer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gemm:
    M: int
    N: int
    K: int
    a: tuple          # (z1, z2, m, k1, k2)
    b: tuple          # (z1, z2, k1, k2, n1, n2)
    c: tuple          # (z1, z2, m, n1, n2)
    KS: int = 0       # 0: no split (KS = K)
    NS: int = 0       # 0: no split (NS = N)
    Z1: int = 1
    Z2: int = 1

    @property
    def ks(self) -> int:
        return self.KS or max(self.K, 1)

    @property
    def ns(self) -> int:
        return self.NS or max(self.N, 1)


def element_strides(x) -> tuple:
    return tuple(s // x.itemsize for s in x.strides)


# --------------------------------------------------------------------------- convolutions
def pointwise(B, C, L, O, xs, ws, ys) -> Gemm:
    """Forward: y (B, O, L) = w (O, C) @ x (B, C, L), one product over n = (b, l). A = w, B = x, C = y."""
    return Gemm(M=O, N=B * L, K=C, NS=L,
                a=(0, 0, ws[0], 0, ws[1]), b=(0, 0, 0, xs[1], xs[0], xs[2]), c=(0, 0, ys[1], ys[0], ys[2]))


def pointwise_input_grad(B, C, L, O, gys, ws, gxs) -> Gemm:
    """gx (B, C, L) = w^T (C, O) @ gy (B, O, L). A = w (read transposed), B = gy, C = gx."""
    return Gemm(M=C, N=B * L, K=O, NS=L,
                a=(0, 0, ws[1], 0, ws[0]), b=(0, 0, 0, gys[1], gys[0], gys[2]), c=(0, 0, gxs[1], gxs[0], gxs[2]))


def pointwise_weight_grad(B, C, L, O, gys, xs, chunk: int) -> Gemm:
    """Partial gw[z] (O, C) = sum over the z-th ``chunk`` windows and l of gy[b, o, l] x[b, c, l]:
    k = (b, l) with KS = L; the B / chunk partials (a contiguous (Z, O, C) array) are summed after.
    A = gy, B = x, C = the partials."""
    return Gemm(M=O, N=C, K=chunk * L, KS=L, Z1=B // chunk,
                a=(chunk * gys[0], 0, gys[1], gys[0], gys[2]), b=(chunk * xs[0], 0, xs[0], xs[2], 0, xs[1]),
                c=(O * C, 0, C, 0, 1))


def dense(B, C, Lout, O, Kw, stride, dilation, xps, ws, ys) -> Gemm:
    """Forward of a dense convolution (groups 1) on the padded input: y[b, o, l] = sum over k = (c, t)
    of w[o, c, t] xpad[b, c, l S + t D]: M = O, K = C Kw (KS = Kw), N = (b, l) (NS = Lout).
    A = w, B = xpad, C = y."""
    return Gemm(M=O, N=B * Lout, K=C * Kw, KS=Kw, NS=Lout,
                a=(0, 0, ws[0], ws[1], ws[2]), b=(0, 0, xps[1], dilation * xps[2], xps[0], stride * xps[2]),
                c=(0, 0, ys[1], ys[0], ys[2]))


def dense_weight_grad(B, C, Lout, O, Kw, stride, dilation, gys, xps, chunk: int) -> Gemm:
    """Partial gw[z] (O, C, Kw) over the z-th ``chunk`` windows: sum over k = (b, l) (KS = Lout) of
    gy[b, o, l] xpad[b, c, l S + t D], n = (c, t) (NS = Kw). A = gy, B = xpad, C = the partials."""
    return Gemm(M=O, N=C * Kw, K=chunk * Lout, KS=Lout, NS=Kw, Z1=B // chunk,
                a=(chunk * gys[0], 0, gys[1], gys[0], gys[2]),
                b=(chunk * xps[0], 0, xps[0], stride * xps[2], xps[1], dilation * xps[2]),
                c=(O * C * Kw, 0, C * Kw, Kw, 1))


def dense_input_grad_tap(B, C, Lout, O, stride, gys, ws, gxps) -> Gemm:
    """One tap t of the input gradient: gxpad[b, c, l S + t D] += sum_o w[o, c, t] gy[b, o, l]. A = w
    at tap t (a view), B = gy, C = the view of gxpad that tap t writes (its first element at t D;
    its length stride S, which ``gxps`` already holds times S)."""
    return Gemm(M=C, N=B * Lout, K=O, NS=Lout,
                a=(0, 0, ws[1], 0, ws[0]), b=(0, 0, 0, gys[1], gys[0], gys[2]), c=(0, 0, gxps[1], gxps[0], gxps[2]))


def batch_chunk(B: int, tiles: int, want_blocks: int) -> int:
    """Windows per partial of a weight gradient: enough partials that tiles x partials reaches
    ``want_blocks`` (the device busy), a divisor of B (every partial the same size)."""
    parts = max(1, min(B, -(-want_blocks // max(tiles, 1))))
    chunk = -(-B // parts)
    while B % chunk:
        chunk += 1
    return chunk


# --------------------------------------------------------------------------- a @ b with broadcasting
def matmul(a_shape, a_strides, b_shape, b_strides):
    """The ``Gemm`` of a @ b (NumPy's broadcasting) into a new C-contiguous output, and the output's
    shape; None when the batch axes cannot be expressed in two strided levels (the caller then
    makes contiguous copies of the broadcast operands, which always can)."""
    M, K = a_shape[-2:]
    N = b_shape[-1]
    batch = tuple(np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])))
    out_shape = batch + (M, N)
    cs = _contiguous_strides(out_shape)
    sa = _batch_strides(batch, a_shape, a_strides)
    sb = _batch_strides(batch, b_shape, b_strides)
    am, ak = a_strides[-2:]
    bk, bn = b_strides[-2:]
    if batch and all(s == 0 for s in sb) and _folds_into(batch, sa, M, am):
        # b is shared by the whole batch and a's batch axes continue its rows: one product of
        # prod(batch) M rows (e.g. (B, C, L) @ (L, F): the DFT of every row in one launch)
        return Gemm(M=int(np.prod(batch)) * M, N=N, K=K, a=(0, 0, am, 0, ak), b=(0, 0, 0, bk, 0, bn),
                    c=(0, 0, N, 0, 1)), out_shape
    dims = [(n, x, y, z) for n, x, y, z in zip(batch, sa, sb, cs[:-2]) if n != 1]
    merged = []
    for d in dims:                                  # merge an axis into the one before where all three allow
        if merged and all(p == q * d[0] for p, q in zip(merged[-1][1:], d[1:])):
            n0 = merged[-1][0]
            merged[-1] = (n0 * d[0],) + d[1:]
        else:
            merged.append(d)
    if len(merged) > 2:
        return None
    merged = [(1, 0, 0, 0)] * (2 - len(merged)) + merged
    (z1, a1, b1, c1), (z2, a2, b2, c2) = merged
    return Gemm(M=M, N=N, K=K, Z1=z1, Z2=z2, a=(a1, a2, am, 0, ak), b=(b1, b2, 0, bk, 0, bn),
                c=(c1, c2, N, 0, 1)), out_shape


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _batch_strides(batch, shape, strides) -> tuple:
    """The operand's stride along each broadcast batch axis (0 where it is broadcast or absent)."""
    own = len(shape) - 2
    out = []
    for i in range(len(batch)):
        j = i - (len(batch) - own)
        out.append(0 if j < 0 or shape[j] == 1 else strides[j])
    return tuple(out)


def _folds_into(batch, sa, M, am) -> bool:
    """Whether a's batch axes, then its rows, walk memory as one axis of stride ``am``."""
    step = am * M
    for n, s in zip(reversed(batch), reversed(sa)):
        if n != 1 and s != step:
            return False
        step *= n
    return True


# --------------------------------------------------------------------------- the kernel's arithmetic in NumPy
def execute(g: Gemm, a_mem, a_off, b_mem, b_off, c_mem, c_off, bias=None, accumulate=False) -> None:
    """Run ``g`` as cuda/gemm.cu does, on flat memory (1-D arrays) with the operands' first
    elements at the given offsets: the reference the layouts are tested against on any machine."""
    m = np.arange(g.M)[:, None]
    k = np.arange(g.K)
    n = np.arange(g.N)[None, :]
    k1, k2 = np.divmod(k, g.ks)
    n1, n2 = np.divmod(n, g.ns)
    for z in range(g.Z1 * g.Z2):
        z1, z2 = divmod(z, g.Z2)
        ao = a_off + z1 * g.a[0] + z2 * g.a[1]
        bo = b_off + z1 * g.b[0] + z2 * g.b[1]
        co = c_off + z1 * g.c[0] + z2 * g.c[1]
        A = a_mem[ao + m * g.a[2] + (k1 * g.a[3] + k2 * g.a[4])[None, :]]               # (M, K)
        Bm = b_mem[bo + (k1 * g.b[2] + k2 * g.b[3])[:, None] + n1 * g.b[4] + n2 * g.b[5]]  # (K, N)
        where = co + m * g.c[2] + n1 * g.c[3] + n2 * g.c[4]                              # (M, N)
        product = A.astype(np.float64) @ Bm.astype(np.float64)
        if accumulate:
            c_mem[where] += product.astype(c_mem.dtype)
        else:
            c_mem[where] = (product + (0 if bias is None else bias[:, None])).astype(c_mem.dtype)
