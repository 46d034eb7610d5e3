"""kernels/gemm_layout.py: every product the CUDA backend sends to its one GEMM kernel (cuda/gemm.cu),
run by ``execute`` (the kernel's address arithmetic in NumPy) and compared with the NumPy reference
kernels: pointwise and dense convolutions forward and backward (odd lengths, stride 2, dilation,
padding, batch 1) and a @ b with broadcasting and strided views. The kernel itself is compared with
the reference on a GPU in tests/test_kernels_cuda.py."""
import numpy as np
from hypothesis import given, settings, strategies as st

from tinysml.kernels import gemm_layout as GL
from tinysml.kernels import reference as ref

ES = GL.element_strides


def _mem(x):
    """(flat memory, offset) of an array view: its base made contiguous, and where x starts in it."""
    base = x if x.base is None else x.base
    while base.base is not None:
        base = base.base
    assert base.flags.c_contiguous
    return base.reshape(-1), (x.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // x.itemsize


def _run(g, a, b, c, bias=None, accumulate=False):
    (am, ao), (bm, bo), (cm, co) = _mem(a), _mem(b), _mem(c)
    GL.execute(g, am, ao, bm, bo, cm, co, bias, accumulate)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 5), C=st.integers(1, 9), O=st.integers(1, 9), L=st.integers(1, 13),
       bias=st.booleans(), chunks=st.integers(1, 5))
def test_pointwise_forward_and_both_gradients(B, C, O, L, bias, chunks):
    rng = np.random.default_rng(B * 1000 + C * 100 + O * 10 + L)
    x, w, b = rng.standard_normal((B, C, L)), rng.standard_normal((O, C)), rng.standard_normal(O)
    gy = rng.standard_normal((B, O, L))
    y = np.empty((B, O, L))
    _run(GL.pointwise(B, C, L, O, ES(x), ES(w), ES(y)), w, x, y, b if bias else None)
    _close(y, ref.pw_conv1d_fwd(x, w, b if bias else None))
    gx_ref, gw_ref, _ = ref.pw_conv1d_bwd(gy, x, w)
    gx = np.empty_like(x)
    _run(GL.pointwise_input_grad(B, C, L, O, ES(gy), ES(w), ES(gx)), w, gy, gx)
    _close(gx, gx_ref)
    chunk = GL.batch_chunk(B, 1, chunks)
    assert B % chunk == 0
    parts = np.empty((B // chunk, O, C))
    _run(GL.pointwise_weight_grad(B, C, L, O, ES(gy), ES(x), chunk), gy, x, parts)
    _close(parts.sum(0), gw_ref)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 4), C=st.integers(1, 6), O=st.integers(1, 7), L=st.integers(1, 17), Kw=st.integers(1, 5),
       stride=st.integers(1, 2), dilation=st.integers(1, 2), padding=st.integers(0, 3), chunks=st.integers(1, 4))
def test_dense_convolution_forward_and_both_gradients(B, C, O, L, Kw, stride, dilation, padding, chunks):
    Lout = ref.conv_out_len(L, Kw, stride, padding, dilation)
    if Lout < 1:
        return
    rng = np.random.default_rng(L * 7 + Kw)
    x, w, b = rng.standard_normal((B, C, L)), rng.standard_normal((O, C, Kw)), rng.standard_normal(O)
    gy = rng.standard_normal((B, O, Lout))
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    y = np.empty((B, O, Lout))
    _run(GL.dense(B, C, Lout, O, Kw, stride, dilation, ES(xpad), ES(w), ES(y)), w, xpad, y, b)
    _close(y, ref.conv1d_fwd(x, w, b, stride, padding, dilation))
    gx_ref, gw_ref, _ = ref.conv1d_bwd(gy, x, w, stride, padding, dilation)
    chunk = GL.batch_chunk(B, 1, chunks)
    parts = np.empty((B // chunk, O, C, Kw))
    _run(GL.dense_weight_grad(B, C, Lout, O, Kw, stride, dilation, ES(gy), ES(xpad), chunk), gy, xpad, parts)
    _close(parts.sum(0), gw_ref)
    gxpad = np.zeros_like(xpad)
    for t in range(Kw):
        view = gxpad[:, :, t * dilation: t * dilation + stride * (Lout - 1) + 1: stride]
        _run(GL.dense_input_grad_tap(B, C, Lout, O, stride, ES(gy), ES(w), ES(view)), w[:, :, t], gy, view,
             accumulate=True)
    _close(gxpad[:, :, padding:padding + L], gx_ref)


SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((4, 5), (2, 5, 3)),
          ((2, 1, 3, 4), (1, 5, 4, 2)), ((6, 2, 3, 1, 4), (6, 2, 3, 4, 2)), ((1, 4), (4, 1)), ((5, 0), (0, 3)),
          ((2, 3, 7, 1, 4), (3, 1, 4, 5))]


def test_matmul_with_broadcasting_and_strided_views_matches_numpy():
    rng = np.random.default_rng(0)
    for sa, sb in SHAPES:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        for a_, b_ in ((a, b), (np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2), b.swapaxes(-1, -2).copy().swapaxes(-1, -2))):
            plan = GL.matmul(a_.shape, ES(a_), b_.shape, ES(b_))
            if plan is None:                        # not two strided levels: contiguous broadcast copies
                batch = np.broadcast_shapes(a_.shape[:-2], b_.shape[:-2])
                a_ = np.ascontiguousarray(np.broadcast_to(a_, batch + a_.shape[-2:]))
                b_ = np.ascontiguousarray(np.broadcast_to(b_, batch + b_.shape[-2:]))
                plan = GL.matmul(a_.shape, ES(a_), b_.shape, ES(b_))
            g, shape = plan
            out = np.empty(shape)
            _run(g, a_, b_, out)
            _close(out, a @ b)


def test_a_shared_right_operand_folds_the_batch_into_the_rows():
    a, b = np.ones((8, 6, 128)), np.ones((128, 65))
    g, shape = GL.matmul(a.shape, ES(a), b.shape, ES(b))
    assert (g.M, g.Z1, g.Z2) == (48, 1, 1) and shape == (8, 6, 65)


def test_batch_chunk_divides_the_batch_and_fills_the_device():
    assert GL.batch_chunk(64, 1, 264) == 1
    assert GL.batch_chunk(64, 8, 264) == 2            # 33 partials wanted -> chunks of 2 windows
    assert GL.batch_chunk(7, 300, 264) == 7
    for B in range(1, 70):
        for tiles in (1, 3, 50):
            assert B % GL.batch_chunk(B, tiles, 264) == 0
