"""What a finite-difference check cannot see in the functions: values against NumPy, SciPy and
hand computations (the numerically careful cases among them), float32 kept through every op and its
gradient, which inputs a gradient reaches, the defaults, and the errors in their exact words. The
gradients themselves are checked in test_gradcheck_ops.py."""
import numpy as np
import pytest

from tinysml import Tensor
from tinysml import functions as F

R = np.random.default_rng(7)


def rand(*shape):
    return R.standard_normal(shape)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_equal_numpy(axis, keepdims):
    """A gradient check only shows the gradient fits the function; the values must be NumPy's."""
    x = rand(2, 3, 4)
    for ours, ref in [(F.sum, np.sum), (F.mean, np.mean), (F.max, np.max), (F.var, np.var)]:
        got = ours(Tensor(x), axis, keepdims).data
        want = ref(x, axis=axis, keepdims=keepdims)
        assert np.shape(got) == np.shape(want), ours.__name__
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=ours.__name__)
    x32 = x.astype(np.float32)
    assert F.max(Tensor(x32), axis, keepdims).data.dtype == np.float32
    assert F.var(Tensor(x32), axis, keepdims).data.dtype == np.float32


def test_reduction_defaults_reduce_everything_to_a_scalar():
    x = rand(2, 3)
    for ours, ref in [(F.sum, np.sum), (F.mean, np.mean), (F.max, np.max), (F.var, np.var)]:
        got = ours(Tensor(x)).data
        assert np.shape(got) == () and np.allclose(got, ref(x)), ours.__name__


def test_max_gradient_is_shared_among_tied_maxima():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 1.0, 0.0, 4.0]])
    t = Tensor(x, requires_grad=True)
    (F.max(t, axis=1) * Tensor(np.array([1.0, 2.0, 3.0]))).sum().backward()
    np.testing.assert_allclose(t.grad, [[0, 0.5, 0.5, 0], [0.5, 0.5, 0.5, 0.5], [3, 0, 0, 0]])
    t32 = Tensor(x.astype(np.float32), requires_grad=True)
    F.max(t32, axis=0, keepdims=True).sum().backward()
    assert t32.grad.dtype == np.float32
    np.testing.assert_allclose(t32.grad, [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]])


def test_cross_entropy_is_exact_for_huge_logits_and_rows_of_different_scale():
    """The log-softmax is shifted by each row's own maximum: logits of 1e3 do not overflow, and a
    row far below another row's maximum does not underflow to log 0."""
    import warnings
    z = np.array([[1000.0, 999.0, 990.0], [0.0, -1.0, -10.0], [-1000.0, -1001.0, -1010.0]])
    labels = np.array([1, 0, 2])
    row = np.array([0.0, -1.0, -10.0])                          # every row is this one, shifted
    logp = row - np.log(np.exp(row).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # no overflow, no log of 0
        loss = F.cross_entropy(Tensor(z), labels)
        assert loss.item() == pytest.approx(-(logp[1] + logp[0] + logp[2]) / 3, rel=1e-12)
    t = Tensor(z.astype(np.float32), requires_grad=True)
    F.cross_entropy(t, labels).backward()
    p = np.exp(logp)
    np.testing.assert_allclose(t.grad, (p[None, :] - np.eye(3)[labels]) / 3, atol=1e-6)


def test_smoothed_targets_by_hand_in_the_logits_dtype():
    from tinysml.functions.loss import smoothed_targets
    for dtype in (np.float32, np.float64):
        q = smoothed_targets(np.array([2, 0]), 4, 0.2, np.dtype(dtype), np)
        assert q.dtype == dtype
        np.testing.assert_allclose(q, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]], rtol=1e-6)
        z = Tensor(np.zeros((2, 4), dtype))
        assert F.cross_entropy(z, np.array([2, 0]), label_smoothing=0.2).data.dtype == dtype


def test_loss_errors_name_the_problem():
    z = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        F.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(z, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        F.cross_entropy(z, np.array([0, 1]))


def test_cross_entropy_names_wrong_shapes_and_takes_soft_targets_as_an_array_or_a_tensor():
    z = Tensor(rand(3, 4))
    with pytest.raises(ValueError, match=r"^cross_entropy expected logits of shape \(B, K\), got \(3, 4, 2\)$"):
        F.cross_entropy(Tensor(rand(3, 4, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^cross_entropy: soft targets of shape \(3, 5\) for logits \(3, 4\)$"):
        F.cross_entropy(z, np.full((3, 5), 0.2))
    soft = np.abs(rand(3, 4))
    soft /= soft.sum(1, keepdims=True)
    assert F.cross_entropy(z, Tensor(soft)).item() == F.cross_entropy(z, soft).item()


def test_cross_entropy_and_nll_take_labels_as_a_list_or_an_array():
    z = Tensor(rand(3, 4))
    expected = F.cross_entropy(z, np.array([0, 3, 1])).item()
    assert F.cross_entropy(z, [0, 3, 1]).item() == expected
    log_p = F.log_softmax(z, axis=1)
    for labels in ([0, 3, 1], np.array([0, 3, 1])):
        assert F.nll_loss(log_p, labels).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(TypeError, match="integer class labels expected"):      # a Tensor holds floats
        F.cross_entropy(z, Tensor(np.array([0, 3, 1])))


def test_kl_div_by_hand_with_zero_targets_and_array_or_tensor_targets():
    """KL(p || q) averaged over rows; terms with p_k = 0 contribute 0 (not 0 * log 0 = nan)."""
    import warnings
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    log_q = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]))
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - log_q), 0.0)
    expected = terms.sum() / 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.kl_div(p, Tensor(log_q)).item() == pytest.approx(expected, rel=1e-12)
        assert F.kl_div(Tensor(p), Tensor(log_q)).item() == pytest.approx(expected, rel=1e-12)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@pytest.mark.parametrize("name, formula", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("relu6", lambda x: np.clip(x, 0, 6)),
    ("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("hardsigmoid", lambda x: np.clip(x + 3, 0, 6) / 6),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("selu", lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))))])
def test_each_named_activation_is_its_formula(name, formula):
    x = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(getattr(F, name)(Tensor(x)).data, formula(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(getattr(F, name)(Tensor(x)).data, F.activation(Tensor(x), name).data)


@pytest.mark.parametrize("axis", [1, -1])
def test_log_softmax_shifts_each_row_by_its_own_maximum(axis):
    """Huge logits do not overflow, and a row far below another row's maximum does not underflow."""
    import warnings
    from scipy.special import log_softmax
    z = np.array([[1000.0, 999.0, 990.0], [0.0, -1.0, -10.0], [-1000.0, -1001.0, -1010.0]])
    z = np.stack([z, z[::-1]], axis=0)                                        # (2, 3, 3)
    z = z if axis == -1 else z.transpose(0, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(F.log_softmax(Tensor(z), axis).data, log_softmax(z, axis), rtol=1e-12)
        np.testing.assert_allclose(F.softmax(Tensor(z), axis).data, np.exp(log_softmax(z, axis)), rtol=1e-12)


def test_division_sends_a_gradient_to_whichever_side_needs_one():
    a, b = np.array([1.0, -2.0, 3.0]), np.array([2.0, 4.0, -0.5])
    x = Tensor(a, requires_grad=True)
    (x / Tensor(b)).sum().backward()                       # the divisor is a constant
    np.testing.assert_allclose(x.grad, 1 / b)
    y = Tensor(b, requires_grad=True)
    (Tensor(a) / y).sum().backward()                       # the dividend is a constant
    np.testing.assert_allclose(y.grad, -a / b ** 2)


def test_abs_maximum_and_where_at_their_edges():
    x = Tensor(np.array([-2.0, 0.0, 3.0]), requires_grad=True)
    F.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])                 # 0 at 0, never inf or nan
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 5.0, 3.0]), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 1.0])                  # ties go to the first argument
    np.testing.assert_array_equal(b.grad, [0.0, 1.0, 0.0])
    cond = np.array([True, False, True])
    for c in (cond, Tensor(cond)):                                          # an array or a Tensor condition
        np.testing.assert_array_equal(F.where(c, a, b).data, [1.0, 5.0, 3.0])


def test_clip_passes_the_gradient_inside_and_at_its_bounds_with_either_bound_left_out():
    """As PyTorch's clamp: the gradient is 1 where low <= x <= high (bounds included), else 0."""
    a = np.array([-1.0, -0.5, 0.0, 0.7, 1.0])
    for low, high, want in ((-0.5, 0.7, [0, 1, 1, 1, 0]), (None, 0.7, [1, 1, 1, 1, 0]), (-0.5, None, [0, 1, 1, 1, 1])):
        x = Tensor(a, requires_grad=True)
        y = F.clip(x, low, high)
        np.testing.assert_array_equal(y.data, np.clip(a, low, high))
        y.sum().backward()
        np.testing.assert_array_equal(x.grad, want)


F32_OPS = {   # name: (function of float32 Tensors, input shapes)
    "add": (lambda a, b: a + b, [(3, 4), (4,)]), "mul": (lambda a, b: a * b, [(3, 4), (3, 1)]),
    "div": (lambda a, b: a / (b * b + 1), [(3, 4), (3, 4)]), "maximum": (F.maximum, [(3, 4), (3, 4)]),
    "exp": (F.exp, [(3, 4)]), "log": (lambda a: F.log(a * a + 1), [(3, 4)]), "sqrt": (lambda a: F.sqrt(a * a + 1), [(3, 4)]),
    "abs": (F.abs, [(3, 4)]), "clip": (lambda a: F.clip(a, -0.5, 0.5), [(3, 4)]), "pow": (lambda a: a ** 3, [(3, 4)]),
    "getitem": (lambda a: a[np.array([0, 2, 2])], [(3, 4)]), "slice": (lambda a: a[:, 1:3], [(3, 4)]),
    "concat": (lambda a, b: F.concat([a, b], axis=1), [(3, 4), (3, 2)]), "pad": (lambda a: F.pad(a, [(0, 0), (1, 2)]), [(3, 4)]),
    "reshape": (lambda a: a.reshape(4, 3), [(3, 4)]), "transpose": (lambda a: a.T, [(3, 4)]),
    "interpolate": (lambda a: F.interpolate_linear(a, 7), [(2, 3, 4)]),
    "sum": (lambda a: F.sum(a, 1), [(3, 4)]), "mean": (lambda a: F.mean(a, 0), [(3, 4)]), "max": (lambda a: F.max(a, 1), [(3, 4)]),
    "var": (lambda a: F.var(a, 1), [(3, 4)]), "softmax": (lambda a: F.softmax(a, 1), [(3, 4)]),
    "log_softmax": (lambda a: F.log_softmax(a, 1), [(3, 4)]), "hardswish": (lambda a: F.activation(a, "hardswish"), [(3, 4)]),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 2)]), "linear": (lambda x, w, b=None: F.linear(x, w, b), [(3, 4), (2, 4), (2,)]),
    "conv1d": (lambda x, w: F.conv1d(x, w, padding=1), [(2, 3, 9), (4, 3, 3)]),
    "dw_conv1d": (lambda x, w: F.dw_conv1d(x, w, stride=2, padding=1), [(2, 3, 9), (3, 1, 3)]),
    "pw_conv1d": (lambda x, w: F.pw_conv1d(x, w), [(2, 3, 9), (4, 3, 1)]),
    "global_avg_pool": (F.global_avg_pool, [(2, 3, 9)]),
    "batch_norm": (lambda x, g, b: F.batch_norm(x, g, b), [(2, 3, 9), (3,), (3,)]),
    "rfft_magnitude": (F.rfft_magnitude, [(2, 3, 8)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, np.array([0, 3, 1]), 0.1), [(3, 4)]),
    "mse": (lambda a, b: F.mse_loss(a, b), [(3, 4), (3, 4)]),
}


@pytest.mark.parametrize("name", sorted(F32_OPS))
def test_float32_stays_float32_through_every_op_and_its_gradient(name):
    """A float32 model trains in float32: every output and every input gradient keeps the dtype."""
    fn, shapes = F32_OPS[name]
    inputs = [Tensor(R.standard_normal(s).astype(np.float32) + 0.5, requires_grad=True) for s in shapes]
    out = fn(*inputs)
    assert out.dtype == np.float32, out.dtype
    out.sum().backward()
    for t in inputs:
        assert t.grad is not None and t.grad.dtype == np.float32 and t.grad.shape == t.shape, name


@pytest.mark.parametrize("name", ["conv1d", "dw_conv1d", "pw_conv1d", "linear", "matmul"])
def test_a_frozen_layer_still_passes_the_gradient_to_its_input(name):
    """Weights that need no gradient (a frozen layer) between an input that needs one and the loss:
    the input gets exactly the gradient it gets when the weights are trainable too, and the
    weights get none."""
    fn, (x_shape, w_shape, *_) = F32_OPS[name]
    x, w = R.standard_normal(x_shape), R.standard_normal(w_shape)
    xs = [Tensor(x, requires_grad=True) for _ in range(2)]
    ws = [Tensor(w, requires_grad=False), Tensor(w, requires_grad=True)]
    for xi, wi in zip(xs, ws):
        fn(xi, wi).sum().backward()
    assert ws[0].grad is None and xs[0].grad is not None
    np.testing.assert_allclose(xs[0].grad, xs[1].grad, rtol=1e-12)
    ws[1].grad = None
    x_const = Tensor(x)
    fn(x_const, ws[1]).sum().backward()                 # and a constant input: the weights still learn
    assert x_const.grad is None and ws[1].grad is not None


def test_the_layers_defaults_are_a_plain_training_mode_layer():
    """conv1d and dw_conv1d default to stride 1, no padding, no dilation, one group (a 'valid'
    cross-correlation); batch_norm defaults to training mode (the batch's own statistics)."""
    x, w = rand(2, 3, 9), rand(4, 3, 3)
    want = np.stack([[sum(np.correlate(x[b, c], w[o, c], "valid") for c in range(3)) for o in range(4)] for b in range(2)])
    np.testing.assert_allclose(F.conv1d(Tensor(x), Tensor(w)).data, want, rtol=1e-10)
    wd = rand(3, 1, 3)
    want_dw = np.stack([[np.correlate(x[b, c], wd[c, 0], "valid") for c in range(3)] for b in range(2)])
    np.testing.assert_allclose(F.dw_conv1d(Tensor(x), Tensor(wd)).data, want_dw, rtol=1e-10)
    y = F.batch_norm(Tensor(x * 3 + 2), Tensor(np.ones(3)), Tensor(np.zeros(3))).data
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 2)), 1, rtol=1e-3)             # eps = 1e-5 keeps it just under 1


@pytest.mark.parametrize("fn", [F.batch_norm, F.batch_norm_act])
def test_batch_norm_defaults_by_hand(fn):
    """Training mode, eps 1e-5, momentum 0.1 on the running statistics (unbiased variance) and, for
    batch_norm_act, the identity activation."""
    x = rand(2, 3, 9) * 3 + 2
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    running = [np.full(3, 0.5), np.ones(3)]
    y = fn(Tensor(x), Tensor(np.ones(3)), Tensor(np.zeros(3)), *running).data
    np.testing.assert_allclose(y, (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(running[0], 0.45 + 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(running[1], 0.9 + 0.1 * var * 18 / 17, rtol=1e-12)


@pytest.mark.parametrize("fn", [F.batch_norm, F.batch_norm_act])
def test_a_momentum_held_in_an_array_updates_the_statistics_as_the_number_does(fn):
    """Precise BN replayed as a CUDA graph reads its momentum 1/(k+1) from a float64 0-d array;
    in float32 the statistics must come out bit for bit as with the Python number."""
    rng = np.random.default_rng(5)
    for k in range(40):
        x = (rng.standard_normal((3, 8, 7)) * 3 + 1).astype(np.float32)
        gamma, beta = Tensor(np.ones(8, np.float32)), Tensor(np.zeros(8, np.float32))
        start = [rng.standard_normal(8).astype(np.float32), rng.random(8).astype(np.float32) + 0.5]
        by_number, by_array = [a.copy() for a in start], [a.copy() for a in start]
        fn(Tensor(x), gamma, beta, *by_number, momentum=1.0 / (k + 1))
        fn(Tensor(x), gamma, beta, *by_array, momentum=np.asarray(1.0 / (k + 1)))
        for a, b in zip(by_number, by_array):
            assert a.dtype == np.float32 and b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
        assert k == 0 or not np.array_equal(by_number[0], start[0])


def test_the_layers_name_a_wrong_input():
    x = Tensor(rand(2, 3, 9))
    cases = [
        (lambda: F.conv1d(x, Tensor(rand(4, 2, 3))), r"^conv1d with weight \(4, 2, 3\) and groups=1 expected input of "
                                                     r"shape \(B, 2, L\), got \(2, 3, 9\)$"),
        (lambda: F.conv1d(Tensor(rand(2, 4, 9)), Tensor(rand(3, 2, 3)), groups=2),
         r"^conv1d: out channels 3 not divisible by groups 2$"),
        (lambda: F.dw_conv1d(x, Tensor(rand(3, 2, 3))), r"^depthwise conv1d expected a weight of shape \(C, K\) or "
                                                        r"\(C, 1, K\), got \(3, 2, 3\)$"),
        (lambda: F.dw_conv1d(x, Tensor(rand(4, 3))), r"^depthwise conv1d with weight \(4, 3\) expected input of shape "
                                                     r"\(B, 4, L\), got \(2, 3, 9\)$"),
        (lambda: F.pw_conv1d(x, Tensor(rand(4, 3, 2))), r"^pointwise conv1d expected a weight of shape \(O, C\) or "
                                                        r"\(O, C, 1\), got \(4, 3, 2\)$"),
        (lambda: F.pw_conv1d(x, Tensor(rand(4, 2))), r"^pointwise conv1d with weight \(4, 2\) expected input of "
                                                     r"shape \(B, 2, L\), got \(2, 3, 9\)$"),
        (lambda: F.batch_norm(x, Tensor(np.ones(4)), Tensor(np.zeros(4))),
         r"^batch_norm expected input of shape \(B, 4, L\), got \(2, 3, 9\)$"),
        (lambda: F.batch_norm(Tensor(rand(1, 3, 1)), Tensor(np.ones(3)), Tensor(np.zeros(3))),
         r"^batch_norm in training mode needs more than one value per channel, got input \(1, 3, 1\)$"),
        (lambda: F.batch_norm(x, Tensor(np.ones(3)), Tensor(np.zeros(3)), training=False),
         r"^batch_norm needs both running_mean and running_var \(the stored statistics\) in eval mode, and both "
         r"or neither in training mode$"),
        (lambda: F.batch_norm(x, Tensor(np.ones(3)), Tensor(np.zeros(3)), np.zeros(3)), r"^batch_norm needs both"),
        (lambda: F.batch_norm_act(x, Tensor(np.ones(4)), Tensor(np.zeros(4))),
         r"^batch_norm_act expected input of shape \(B, 4, L\), got \(2, 3, 9\)$"),
        (lambda: F.batch_norm_act(Tensor(rand(1, 3, 1)), Tensor(np.ones(3)), Tensor(np.zeros(3))),
         r"^batch_norm_act in training mode needs more than one value per channel, got input \(1, 3, 1\)$"),
        (lambda: F.global_avg_pool(Tensor(rand(2, 3))), r"^global_avg_pool expected input of shape \(B, C, L\), "
                                                        r"got \(2, 3\)$"),
        (lambda: F.layer_norm(x, Tensor(np.ones(4)), Tensor(np.zeros(4))),
         r"^layer_norm expected a last axis of 4, got shape \(2, 3, 9\)$"),
        (lambda: F.matmul(Tensor(rand(3)), Tensor(rand(3, 2))),
         r"^matmul needs arrays of at least 2 dimensions, got shapes \(3,\) and \(3, 2\)$"),
        (lambda: F.matmul(Tensor(rand(2, 3)), Tensor(rand(3))),
         r"^matmul needs arrays of at least 2 dimensions, got shapes \(2, 3\) and \(3,\)$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    F.batch_norm(Tensor(rand(1, 3, 1)), Tensor(np.ones(3)), Tensor(np.zeros(3)), np.zeros(3), np.ones(3), training=False)
    for fn in (F.batch_norm, F.batch_norm_act):           # two values per channel are enough to train on
        for shape in [(2, 3, 1), (1, 3, 2)]:
            fn(Tensor(rand(*shape)), Tensor(np.ones(3)), Tensor(np.zeros(3)))


@pytest.mark.parametrize("fn", [F.batch_norm, F.batch_norm_act])
def test_running_statistics_given_as_tensors_work_like_arrays(fn):
    """Training updates a Tensor's statistics in place, as it does an array's; eval reads them."""
    x, gamma, beta = Tensor(rand(4, 3, 5)), Tensor(np.ones(3)), Tensor(np.full(3, 0.5))
    arrays = [np.zeros(3), np.ones(3)]
    tensors = [Tensor(np.zeros(3)), Tensor(np.ones(3))]
    fn(x, gamma, beta, *arrays)
    fn(x, gamma, beta, *tensors)
    assert not np.allclose(arrays[0], 0)
    for a, t in zip(arrays, tensors):
        np.testing.assert_array_equal(t.data, a)
    np.testing.assert_array_equal(fn(x, gamma, beta, *tensors, training=False).data,
                                  fn(x, gamma, beta, *arrays, training=False).data)
