"""Every Numba kernel equals the NumPy reference on random shapes (hypothesis): batch 1, odd
lengths, stride 2, dilation, padding, every kernel size 1-9; outputs NaN-poisoned before each call."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from helpers import assert_close
from tinysml.kernels import reference as ref

cpu = pytest.importorskip("tinysml.kernels.cpu")
cpu_pointwise = pytest.importorskip("tinysml.kernels.cpu_pointwise")
cpu_norm = pytest.importorskip("tinysml.kernels.cpu_norm")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def poisoned():
    cpu.set_poison(True)
    yield
    cpu.set_poison(False)


def arrays(seed, *shapes, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


conv_cases = st.fixed_dictionaries({
    "B": st.integers(1, 4), "C": st.integers(1, 12), "L": st.integers(1, 40), "K": st.integers(1, 9),
    "stride": st.integers(1, 2), "dilation": st.integers(1, 2), "padding": st.integers(0, 5),
    "bias": st.booleans(), "seed": st.integers(0, 2**16)})


def _lout(c):
    return ref.conv_out_len(c["L"], c["K"], c["stride"], c["padding"], c["dilation"])


@SETTINGS
@given(conv_cases)
def test_depthwise_forward_and_backward(c):
    assume(_lout(c) >= 1)
    x, w, b = arrays(c["seed"], (c["B"], c["C"], c["L"]), (c["C"], c["K"]), (c["C"],))
    b = b if c["bias"] else None
    args = (c["stride"], c["padding"], c["dilation"])
    y = cpu.dw_conv1d_fwd(x, w, b, *args)
    assert_close(y, ref.dw_conv1d_fwd(x, w, b, *args))
    (gy,) = arrays(c["seed"] + 1, y.shape)
    for ours, theirs in zip(cpu.dw_conv1d_bwd(gy, x, w, *args), ref.dw_conv1d_bwd(gy, x, w, *args)):
        assert_close(ours, theirs)


@SETTINGS
@given(conv_cases, st.integers(1, 24), st.sampled_from([np.float32, np.float64]))
def test_both_depthwise_backward_kernels(c, B, dtype):
    """The row kernel and the batched kernel (the batch as the vector axis) each equal the reference,
    whichever of them ``dw_conv1d_bwd`` would pick for the shape; batches up to 24."""
    assume(_lout(c) >= 1)
    x, w = arrays(c["seed"], (B, c["C"], c["L"]), (c["C"], c["K"]), dtype=dtype)
    args = (c["stride"], c["padding"], c["dilation"])
    (gy,) = arrays(c["seed"] + 1, (B, c["C"], _lout(c)), dtype=dtype)
    exact = ref.dw_conv1d_bwd(gy, x, w, *args)
    for kernel in (cpu._dw_bwd, cpu._dw_bwd_batched):
        for ours, theirs in zip(cpu._dw_bwd_with(kernel, gy, x, w, *args), exact):
            assert_close(ours, theirs)


def test_depthwise_backward_picks_the_batched_kernel_on_short_rows():
    assert cpu._dw_bwd_kernel(64, 16, 1) is cpu._dw_bwd_batched
    assert cpu._dw_bwd_kernel(64, 128, 2) is cpu._dw_bwd_batched
    assert cpu._dw_bwd_kernel(64, 128, 1) is cpu._dw_bwd            # long stride-1 rows: slices vectorise
    assert cpu._dw_bwd_kernel(4, 16, 2) is cpu._dw_bwd              # a batch too small to fill a vector


@SETTINGS
@given(conv_cases, st.integers(1, 16))
def test_dense_conv_forward_and_backward(c, O):
    assume(_lout(c) >= 1)
    C = min(c["C"], 9)
    x, w, b = arrays(c["seed"], (c["B"], C, c["L"]), (O, C, c["K"]), (O,))
    b = b if c["bias"] else None
    args = (c["stride"], c["padding"], c["dilation"], 1)
    y = cpu.conv1d_fwd(x, w, b, *args)
    assert_close(y, ref.conv1d_fwd(x, w, b, *args))
    (gy,) = arrays(c["seed"] + 1, y.shape)
    for ours, theirs in zip(cpu.conv1d_bwd(gy, x, w, *args), ref.conv1d_bwd(gy, x, w, *args)):
        assert_close(ours, theirs)
    # the stem's case: no input gradient wanted, the same weight and bias gradients
    skipped, gw, gb = cpu.conv1d_bwd(gy, x, w, *args, input_grad=False)
    assert skipped is None and ref.conv1d_bwd(gy, x, w, *args, input_grad=False)[0] is None
    for ours, theirs in zip((gw, gb), ref.conv1d_bwd(gy, x, w, *args)[1:]):
        assert_close(ours, theirs)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 40), st.integers(1, 33), st.booleans(), st.integers(0, 999))
def test_pointwise_forward_and_backward(B, C, O, L, bias, seed):
    x, w, b, gy = arrays(seed, (B, C, L), (O, C), (O,), (B, O, L))
    b = b if bias else None
    assert_close(cpu.pw_conv1d_fwd(x, w, b), ref.pw_conv1d_fwd(x, w, b))
    exact = ref.pw_conv1d_bwd(gy, x, w)
    for ours, theirs in zip(cpu.pw_conv1d_bwd(gy, x, w), exact):
        assert_close(ours, theirs)
    gx, gw, gb = cpu.pw_conv1d_bwd(gy, x, w, bias_grad=False)          # a layer without a bias: no gb
    assert gb is None and ref.pw_conv1d_bwd(gy, x, w, bias_grad=False)[2] is None
    assert_close(gx, exact[0])
    assert_close(gw, exact[1])


@pytest.mark.parametrize("B, C, O, L", [(2, 3, 5, 8), (4, 150, 150, 16), (3, 5, 4, 17), (2, 210, 200, 20),
                                        (1, 6, 5, 4), (3, 900, 600, 40)])
def test_pointwise_both_forms(B, C, O, L):
    """Both forms of the pointwise kernels (one GEMM per batch element; one packed GEMM) on shapes
    either side of the rule that picks between them, against the reference in float64."""
    forward_packed = cpu_pointwise._packed(B, L, C, O, backward=False)
    backward_packed = cpu_pointwise._packed(B, L, C, O, backward=True)
    assert (forward_packed, backward_packed) == {8: (True, True), 16: (False, True), 17: (False, False),
                                                 20: (True, True), 4: (False, False), 40: (True, True)}[L]
    x, w, b, gy = arrays(B * 1000 + L, (B, C, L), (O, C), (O,), (B, O, L))
    x64, w64, b64, gy64 = (a.astype(np.float64) for a in (x, w, b, gy))
    assert_close(cpu.pw_conv1d_fwd(x, w, b), ref.pw_conv1d_fwd(x64, w64, b64))
    for ours, theirs in zip(cpu.pw_conv1d_bwd(gy, x, w), ref.pw_conv1d_bwd(gy64, x64, w64)):
        assert_close(ours, theirs)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 20), st.integers(1, 37), st.integers(0, 999))
def test_batch_norm(B, C, L, seed):
    """Against the reference evaluated in float64: with few values per channel the statistics are
    ill-conditioned, and the float32 reference is then the less accurate side (our kernel
    accumulates in float64)."""
    assume(B * L >= 2)
    x, g, b, gy = arrays(seed, (B, C, L), (C,), (C,), (B, C, L))
    x = x * 3 + 2
    # a channel whose values (nearly) coincide has invstd ~ 1/sqrt(eps): its gradient amplifies the
    # float32 rounding of x itself, whatever the kernel; such channels are not a kernel property
    assume((x.std(axis=(0, 2)) > 0.3).all())
    x64, g64, b64, gy64 = (a.astype(np.float64) for a in (x, g, b, gy))
    ours, exact = cpu.bn_train_fwd(x, g, b, 1e-5), ref.bn_train_fwd(x64, g64, b64, 1e-5)
    for o, t in zip(ours, exact):
        assert o.dtype == np.float32
        assert_close(o, t)
    mean, invstd = exact[1], exact[3]
    ours = cpu.bn_bwd(gy, x, g, mean.astype(np.float32), invstd.astype(np.float32))
    for o, t in zip(ours, ref.bn_bwd(gy64, x64, g64, mean, invstd)):
        assert_close(o, t, rtol=2e-5)
    rm, rv = x.mean(axis=(0, 2)), x.var(axis=(0, 2)) + 0.5
    assert_close(cpu.bn_eval_fwd(x, g, b, rm, rv, 1e-5), ref.bn_eval_fwd(x, g, b, rm, rv, 1e-5))


@pytest.mark.parametrize("act", ref.ACTIVATIONS)
@SETTINGS
@given(st.integers(1, 5), st.integers(1, 20), st.integers(1, 37), st.integers(0, 999))
def test_fused_batch_norm_act(act, B, C, L, seed):
    """The fused BN + activation kernels against the composition of the reference kernels (float64)."""
    assume(B * L >= 2)
    x, g, b, gy = arrays(seed, (B, C, L), (C,), (C,), (B, C, L))
    x = x * 3 + 2
    assume((x.std(axis=(0, 2)) > 0.3).all())
    x64, g64, b64, gy64 = (a.astype(np.float64) for a in (x, g, b, gy))
    ours, exact = cpu.bn_act_train_fwd(x, g, b, 1e-5, act), ref.bn_act_train_fwd(x64, g64, b64, 1e-5, act)
    for o, t in zip(ours, exact):
        assert o.dtype == np.float32
        assert_close(o, t)
    mean, invstd = exact[1], exact[3]
    ours = cpu.bn_act_bwd(gy, x, g, b, mean.astype(np.float32), invstd.astype(np.float32), act)
    for o, t in zip(ours, ref.bn_act_bwd(gy64, x64, g64, b64, mean, invstd, act)):
        assert_close(o, t, rtol=2e-5)
    rm, rv = x.mean(axis=(0, 2)), x.var(axis=(0, 2)) + 0.5
    assert_close(cpu.bn_act_eval(x, g, b, rm, rv, 1e-5, act), ref.bn_act_eval(x, g, b, rm, rv, 1e-5, act))


@pytest.mark.parametrize("rows_from", [1, 10**9], ids=["rows", "spans"])
@pytest.mark.parametrize("act", ["identity", "hardswish", "selu"])
@SETTINGS
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 70), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 999))
def test_batch_norm_both_forms(rows_from, act, B, C, L, dtype, seed):
    """Both training forms of batch norm (one channel per task by rows; groups of channels by
    spans), forced whatever L is, against the reference in float64; and the spans' results do
    not depend on how the channels are grouped into tasks (bitwise, with spans of 16 values)."""
    assume(B * L >= 2)
    x, g, b, gy = arrays(seed, (B, C, L), (C,), (C,), (B, C, L), dtype=dtype)
    x = x * 3 + 2
    assume((x.std(axis=(0, 2)) > 0.3).all())
    rtol = 2e-5 if dtype == np.float32 else 1e-10
    x64, g64, b64, gy64 = (a.astype(np.float64) for a in (x, g, b, gy))
    exact = ref.bn_act_train_fwd(x64, g64, b64, 1e-5, act)
    mean, invstd = exact[1].astype(dtype), exact[3].astype(dtype)
    grads = ref.bn_act_bwd(gy64, x64, g64, b64, exact[1], exact[3], act)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu_norm, "ROWS_FROM", rows_from)
        ours = cpu.bn_act_train_fwd(x, g, b, 1e-5, act), cpu.bn_act_bwd(gy, x, g, b, mean, invstd, act)
        mp.setattr(cpu_norm, "SPAN", 16)
        regrouped = cpu.bn_act_train_fwd(x, g, b, 1e-5, act), cpu.bn_act_bwd(gy, x, g, b, mean, invstd, act)
    for o, t in zip(ours[0] + ours[1], exact + grads):
        assert o.dtype == dtype
        assert_close(o, t, rtol=rtol)
    for o, r in zip(ours[0] + ours[1], regrouped[0] + regrouped[1]):
        np.testing.assert_array_equal(o, r)


@pytest.mark.parametrize("name", ref.ACTIVATIONS)
@SETTINGS
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 40)), seed=st.integers(0, 999))
def test_activations(name, shape, seed):
    x, gy = arrays(seed, shape, shape)
    x = x * 5
    x[..., 0] = 3.0                      # the kinks must agree too
    assert_close(cpu.act_fwd(name, x), ref.act_fwd(name, x))
    assert_close(cpu.act_bwd(name, x, gy), ref.act_bwd(name, x, gy))


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 40), st.integers(0, 999))
def test_channel_scale(B, C, L, seed):
    x, s, gy = arrays(seed, (B, C, L), (B, C), (B, C, L))
    assert_close(cpu.channel_scale_fwd(x, s), ref.channel_scale_fwd(x, s))
    for o, t in zip(cpu.channel_scale_bwd(gy, x, s), ref.channel_scale_bwd(gy, x, s)):
        assert_close(o, t)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 300), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 999))
def test_time_mean(B, C, L, dtype, seed):
    """Rows from 1 to 300 values (shorter and longer than a vector, one row or many per batch element)."""
    x, g = arrays(seed, (B, C, L), (B, C), dtype=dtype)
    x = x * np.random.default_rng(seed).random((B, C, 1)).astype(dtype) * 100
    m = cpu.time_mean_fwd(x)
    assert m.dtype == dtype
    assert_close(m, ref.time_mean_fwd(x))
    np.testing.assert_array_equal(cpu.time_mean_bwd(g, L), ref.time_mean_bwd(g, L))


@pytest.mark.parametrize("act", ref.ACTIVATIONS)
@SETTINGS
@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 40), st.integers(0, 999))
def test_fused_channel_scale_act(act, B, C, L, seed):
    x, s, gy = arrays(seed, (B, C, L), (B, C), (B, C, L))
    x = x * 4
    x64, s64, gy64 = (a.astype(np.float64) for a in (x, s, gy))
    assert_close(cpu.channel_scale_act_fwd(x, s, act), ref.channel_scale_act_fwd(x64, s64, act))
    for o, t in zip(cpu.channel_scale_act_bwd(gy, x, s, act), ref.channel_scale_act_bwd(gy64, x64, s64, act)):
        assert_close(o, t, rtol=2e-5)


def test_float64_and_grouped_fallback():
    x, w, b, wg = arrays(0, (2, 6, 21), (6, 5), (6,), (4, 3, 3), dtype=np.float64)
    np.testing.assert_allclose(cpu.dw_conv1d_fwd(x, w, b, 2, 2, 1), ref.dw_conv1d_fwd(x, w, b, 2, 2, 1), rtol=1e-12)
    np.testing.assert_allclose(cpu.conv1d_fwd(x, wg, None, 1, 1, 1, 2), ref.conv1d_fwd(x, wg, None, 1, 1, 1, 2))


def test_same_inputs_same_bits():
    x, w = arrays(3, (16, 64, 50), (64, 7))
    gy = cpu.dw_conv1d_fwd(x, w, None, 1, 3, 1)
    first = cpu.dw_conv1d_bwd(gy, x, w, 1, 3, 1)
    for _ in range(3):
        for a, b in zip(first, cpu.dw_conv1d_bwd(gy, x, w, 1, 3, 1)):
            assert np.array_equal(a, b)
    g = np.ones(64, np.float32)
    assert all(np.array_equal(a, b) for a, b in zip(cpu.bn_train_fwd(x, g, g, 1e-5), cpu.bn_train_fwd(x, g, g, 1e-5)))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("n, weight_decay", [(7, 0.0), (40_000, 0.01)])            # one thread; all threads
def test_adamw_step_equals_the_reference(dtype, rtol, n, weight_decay):
    rng = np.random.default_rng(n)
    w, g, m, v = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    v = np.abs(v)
    ours, theirs = [a.copy() for a in (w, m, v)], [a.copy() for a in (w, m, v)]
    for t in (1, 2, 50):
        cpu.adamw_step(ours[0], g, ours[1], ours[2], 1e-3, 0.9, 0.999, 1e-8, weight_decay, t)
        ref.adamw_step(theirs[0], g, theirs[1], theirs[2], 1e-3, 0.9, 0.999, 1e-8, weight_decay, t)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


cpu_runtime = pytest.importorskip("tinysml.kernels.cpu_runtime")


def _small_calls(seed, B, C, O, L, dtype):
    """Every backend call that launches a kernel marked ``serial_twin``, on arrays small enough to
    run on the calling thread; returns every array they produce."""
    rng = np.random.default_rng(seed)
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    x, gy, gamma, beta, s = r(B, C, L), r(B, C, L), r(C), r(C), r(B, C)
    out = [cpu.bn_eval_fwd(x, gamma, beta, r(C), np.abs(r(C)) + dtype(0.5), 1e-5),
           cpu.time_mean_fwd(x), cpu.time_mean_bwd(s, L), *cpu.bn_train_fwd(x, gamma, beta, 1e-5)]
    for act in ref.ACTIVATIONS:
        out += [cpu.act_fwd(act, x), cpu.act_bwd(act, x, gy), *cpu.bn_act_train_fwd(x, gamma, beta, 1e-5, act),
                cpu.channel_scale_act_fwd(x, s, act), *cpu.channel_scale_act_bwd(gy, x, s, act)]
    w = r(O, C)
    y = cpu.pw_conv1d_fwd(x, w, r(O))
    out += [y, *cpu.pw_conv1d_bwd(r(*y.shape), x, w, bias_grad=True)]
    for stride in (1, 2):
        wd = r(O, C, 3)
        y = cpu.conv1d_fwd(x, wd, r(O), stride, 1, 1, 1)
        out += [y, *cpu.conv1d_bwd(r(*y.shape), x, wd, stride, 1, 1, 1)]
    return out


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20), st.integers(1, 70),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 999))
def test_serial_twins_same_bits(B, C, O, L, dtype, seed):
    """A kernel marked ``serial_twin`` computes on small work, as its twin, exactly the bits that the
    parallel kernel computes on one thread: every backend call that uses one, both forms of the
    pointwise and batch norm kernels (short and long rows), float32 and float64."""
    twins = _small_calls(seed, B, C, O, L, dtype)
    cpu_runtime.use_twins = False
    try:
        parallel = _small_calls(seed, B, C, O, L, dtype)
    finally:
        cpu_runtime.use_twins = True
    for a, b in zip(twins, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_marked_kernel_is_compared_with_its_twin(monkeypatch):
    """``_small_calls`` reaches, through its twin, every kernel marked ``serial_twin`` (a newly
    marked kernel must be added there)."""
    reached = set()

    class Watched(dict):
        def __getitem__(self, kernel):
            reached.add(kernel)
            return super().__getitem__(kernel)

    monkeypatch.setattr(cpu_runtime, "_TWINS", Watched(cpu_runtime._TWINS))
    for dtype in (np.float32, np.float64):
        for L in (8, 40):                             # packed and per-element pointwise; spans and rows
            _small_calls(0, 3, 6, 5, L, dtype)
    missed = sorted(k.py_func.__name__ for k in set(cpu_runtime._TWINS) - reached)
    assert not missed, f"marked serial_twin but never launched on small work: {missed}"
