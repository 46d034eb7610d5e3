"""Every differentiable op against central finite differences in float64."""
import numpy as np
import pytest

from tinysml import Tensor
from tinysml import functions as F
from tinysml.gradcheck import gradcheck

R = np.random.default_rng(42)


def rand(*shape):
    return R.standard_normal(shape)


def away_from(x, points, margin=0.05):
    """Move values off the kinks of piecewise functions, where finite differences are meaningless."""
    x = x.copy()
    for p in points:
        close = np.abs(x - p) < margin
        x[close] = p + margin * 2 * np.sign(x[close] - p + 1e-12)
    return x


BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "maximum": F.maximum,
}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (3, 1)), ((4,), (2, 1, 4)), ((1, 3, 4), (3, 1))])
def test_binary_broadcasting(name, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if name == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    if name == "maximum":
        b = b + 0.3  # no ties
    gradcheck(BINARY[name], a, b)


@pytest.mark.parametrize("fn, make", [
    (lambda x: -x, lambda: rand(3, 4)),
    (lambda x: x ** 3, lambda: rand(3, 4)),
    (lambda x: x ** -0.5, lambda: np.abs(rand(3, 4)) + 0.5),
    (F.exp, lambda: rand(3, 4)),
    (F.log, lambda: np.abs(rand(3, 4)) + 0.1),
    (F.sqrt, lambda: np.abs(rand(3, 4)) + 0.1),
    (F.abs, lambda: away_from(rand(3, 4), [0])),
    (lambda x: F.clip(x, -0.5, 0.7), lambda: away_from(rand(3, 4), [-0.5, 0.7])),
    (lambda x: F.where(np.arange(12).reshape(3, 4) % 2 == 0, x, x * 3), lambda: rand(3, 4)),
])
def test_unary(fn, make):
    gradcheck(fn, make())


@pytest.mark.parametrize("name, kinks", [
    ("relu", [0]), ("relu6", [0, 6]), ("hardswish", [-3, 3]), ("hardsigmoid", [-3, 3]),
    ("selu", [0]), ("sigmoid", []),
])
def test_activations(name, kinks):
    x = away_from(rand(2, 3, 5) * 4, kinks)
    gradcheck(lambda t: F.activation(t, name), x)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(axis, keepdims):
    x = rand(2, 3, 4)
    gradcheck(lambda t: F.sum(t, axis, keepdims), x)
    gradcheck(lambda t: F.mean(t, axis, keepdims), x)
    gradcheck(lambda t: F.max(t, axis, keepdims), x)
    gradcheck(lambda t: F.var(t, axis, keepdims), x)


def test_softmax_family():
    x = rand(3, 5)
    gradcheck(lambda t: F.softmax(t, axis=1), x)
    gradcheck(lambda t: F.log_softmax(t, axis=1), x)
    gradcheck(lambda t: F.softmax(t, axis=0), x)


def test_movement_ops():
    x = rand(2, 3, 4)
    gradcheck(lambda t: t.reshape(6, 4), x)
    gradcheck(lambda t: t.transpose(2, 0, 1), x)
    gradcheck(lambda t: t[:, 1:, ::2], x)
    gradcheck(lambda t: t[np.array([0, 1, 1]), :, 2], x)        # repeated index accumulates
    gradcheck(lambda a, b: F.concat([a, b], axis=1), x, rand(2, 2, 4))
    gradcheck(lambda a, b: F.stack([a, b], axis=0), x, rand(2, 3, 4))
    gradcheck(lambda t: F.pad(t, ((0, 0), (1, 2), (3, 0))), x)
    gradcheck(lambda t: F.flatten(t), x)


@pytest.mark.parametrize("L_in, L_out", [(8, 5), (5, 11), (7, 7), (9, 3)])
def test_interpolate_linear(L_in, L_out):
    gradcheck(lambda t: F.interpolate_linear(t, L_out), rand(2, 3, L_in))


def test_matmul_and_linear():
    gradcheck(lambda a, b: a @ b, rand(3, 4), rand(4, 5))
    gradcheck(lambda a, b: a @ b, rand(2, 3, 4), rand(4, 5))      # broadcast batch
    gradcheck(lambda a, b: a @ b, rand(3, 4), rand(2, 4, 5))      # the batch on the right
    gradcheck(lambda a, b: a @ b, rand(2, 3, 4), rand(2, 4, 5))   # batched on both sides
    gradcheck(F.linear, rand(3, 4), rand(5, 4), rand(5))
    gradcheck(F.linear, rand(3, 4), rand(5, 4))


@pytest.mark.parametrize("B, C, O, L, K, stride, padding, dilation, groups", [
    (2, 3, 4, 9, 3, 1, 1, 1, 1),     # dense
    (1, 3, 5, 10, 3, 2, 1, 1, 1),    # dense, stride 2, batch 1
    (2, 4, 6, 11, 5, 1, 2, 2, 2),    # grouped, dilated
    (2, 4, 4, 8, 3, 2, 0, 1, 4),     # depthwise through the general kernel
])
def test_conv1d(B, C, O, L, K, stride, padding, dilation, groups):
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride, padding, dilation, groups),
              rand(B, C, L), rand(O, C // groups, K), rand(O))


@pytest.mark.parametrize("B, C, L, K, stride, padding, dilation", [
    (2, 3, 9, 3, 1, 1, 1), (1, 4, 10, 5, 2, 2, 1), (2, 2, 7, 3, 2, 0, 2), (2, 3, 8, 1, 1, 0, 1), (1, 2, 6, 9, 1, 4, 1),
])
def test_dw_conv1d(B, C, L, K, stride, padding, dilation):
    gradcheck(lambda x, w, b: F.dw_conv1d(x, w, b, stride, padding, dilation), rand(B, C, L), rand(C, K), rand(C))
    # a layer's own (C, 1, K) parameter: viewed inside, its gradient handed back in that shape
    gradcheck(lambda x, w: F.dw_conv1d(x, w, None, stride, padding, dilation), rand(B, C, L), rand(C, 1, K))


def test_pw_conv1d_and_channel_scale():
    gradcheck(F.pw_conv1d, rand(2, 3, 5), rand(4, 3), rand(4))
    gradcheck(F.pw_conv1d, rand(2, 3, 5), rand(4, 3, 1), rand(4))       # a layer's own (O, C, 1) parameter
    gradcheck(F.pw_conv1d, rand(1, 3, 5), rand(4, 3, 1))
    gradcheck(F.channel_scale, rand(2, 3, 5), rand(2, 3))
    for act in ("hardswish", "selu", "relu", "sigmoid"):
        gradcheck(lambda x, s: F.channel_scale_act(x, s, act), rand(2, 3, 5), rand(2, 3))
    gradcheck(F.global_avg_pool, rand(2, 3, 5))


def test_batch_norm_train_and_eval():
    gradcheck(lambda x, g, b: F.batch_norm(x, g, b, training=True), rand(3, 4, 5), rand(4), rand(4))
    mean, var = rand(4), np.abs(rand(4)) + 0.5
    gradcheck(lambda x, g, b: F.batch_norm(x, g, b, mean, var, training=False), rand(3, 4, 5), rand(4), rand(4))


@pytest.mark.parametrize("act", ["hardswish", "selu", "relu", "sigmoid", "identity"])
def test_batch_norm_act_train_and_eval(act):
    gradcheck(lambda x, g, b: F.batch_norm_act(x, g, b, training=True, act=act), rand(3, 4, 5), rand(4), rand(4))
    mean, var = rand(4), np.abs(rand(4)) + 0.5
    gradcheck(lambda x, g, b: F.batch_norm_act(x, g, b, mean, var, training=False, act=act),
              rand(3, 4, 5), rand(4), rand(4))


def test_layer_norm():
    gradcheck(F.layer_norm, rand(3, 6), rand(6), rand(6))
    gradcheck(F.layer_norm, rand(2, 3, 6), rand(6), rand(6))


def test_rfft_magnitude():
    gradcheck(F.rfft_magnitude, rand(2, 3, 8))
    gradcheck(F.rfft_magnitude, rand(2, 7))                       # odd length
    x = rand(1, 16)
    np.testing.assert_allclose(F.rfft_magnitude(Tensor(x)).data, np.abs(np.fft.rfft(x)), atol=1e-10)


def test_rfft_magnitude_zero_signal_has_zero_gradient():
    """|X| = 0 has no derivative; the gradient there is taken as 0, without a division by zero
    (no RuntimeWarning reaches the user, whose suite may turn warnings into errors)."""
    import warnings
    x = Tensor(np.zeros((1, 8)), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.rfft_magnitude(x).sum().backward()
    assert np.isfinite(x.grad).all() and not x.grad.any()


def test_dropout_gradient_uses_the_same_mask():
    x = rand(4, 6)
    gen = lambda: np.random.default_rng(3)  # noqa: E731 - the same mask for every evaluation
    gradcheck(lambda t: F.dropout(t, 0.4, True, rng=gen()), x)
    y = F.dropout(Tensor(np.ones((1000,))), 0.25, True, rng=gen()).data
    assert set(np.unique(y)) <= {0.0, 1 / 0.75} and abs(y.mean() - 1) < 0.1


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
    labels = np.array([0, 2, 1])
    gradcheck(lambda z: F.cross_entropy(z, labels, smoothing), rand(3, 4))
    soft = np.abs(rand(3, 4))
    soft /= soft.sum(1, keepdims=True)
    gradcheck(lambda z: F.cross_entropy(z, soft), rand(3, 4))


def test_mse_kl_nll():
    gradcheck(F.mse_loss, rand(3, 4), rand(3, 4))
    p = np.abs(rand(3, 4)) + 0.1
    p /= p.sum(1, keepdims=True)
    gradcheck(lambda z: F.kl_div(p, F.log_softmax(z, 1)), rand(3, 4))
    gradcheck(lambda q, z: F.kl_div(F.softmax(q, 1), F.log_softmax(z, 1)), rand(3, 4), rand(3, 4))
    gradcheck(lambda z: F.nll_loss(F.log_softmax(z, 1), np.array([1, 0, 3])), rand(3, 4))
