"""Autograd mechanics: accumulation, reuse, deep graphs, no_grad, detach, dtypes."""
import numpy as np
import pytest

from tinysml import Tensor, no_grad
from tinysml import functions as F


def test_reused_node_accumulates():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    y = x * x + x          # dy/dx = 2x + 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])


def test_diamond_graph():
    x = Tensor(np.array(1.5), requires_grad=True)
    a = x * 2
    b = a * a + a.exp()    # d/dx = 2 * (2a + e^a)
    b.backward()
    np.testing.assert_allclose(x.grad, 2 * (2 * 3.0 + np.exp(3.0)))


def test_backward_twice_accumulates_into_leaves():
    x = Tensor(np.ones(3), requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [5, 5, 5])


def test_deep_graph_does_not_recurse():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1e-3 * y
    y.backward()
    np.testing.assert_allclose(x.grad, 1.001 ** 5000, rtol=1e-9)


def test_no_grad_and_detach():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2
        z = F.exp(np.array([0.0, 1.0])) + F.sqrt(4)      # numbers and arrays as constants without a graph too
    assert y.requires_grad is False and y._ctx is None
    np.testing.assert_allclose(z.data, [3.0, np.e + 2])
    z = (x * 2).detach()
    assert not z.requires_grad


def test_dtypes():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64                 # floating arrays keep their dtype
    assert Tensor(np.zeros(2, np.int64)).dtype == np.float32
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64
    assert Tensor(np.ones(2), dtype=np.float32).dtype == np.float32                # a requested dtype wins
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    t = Tensor(np.array([1.5, 2.5]))
    assert Tensor(t).dtype == np.float64 and Tensor(t).data is t.data             # a Tensor's own array
    x = Tensor(np.ones(2, np.float32))
    assert (x * 2.5).dtype == np.float32                           # Python scalars follow the tensor


def test_backward_needs_scalar_or_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="explicit grad"):
        (x * 2).backward()
    with pytest.raises(RuntimeError) as err:
        Tensor(np.ones(1)).backward()
    assert str(err.value) == "backward() called on a tensor that does not require a gradient"


def test_the_seed_gradient_has_the_tensors_shape_and_dtype():
    x = Tensor(np.ones((1, 1), np.float32), requires_grad=True)
    x.backward()                                                   # a one-element tensor: d x / d x = 1
    assert x.grad.shape == (1, 1) and x.grad.dtype == np.float32
    y = Tensor(np.ones(3, np.float32), requires_grad=True)
    (y * 2).backward(np.array([1.0, 2.0, 3.0]))                    # a float64 grad for a float32 tensor
    assert y.grad.dtype == np.float32
    np.testing.assert_array_equal(y.grad, [2, 4, 6])


def test_a_backward_of_the_wrong_shape_names_the_function_and_both_shapes():
    from tinysml.tensor import Function

    class Broken(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            return grad[:1]

    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError) as err:
        Broken.apply(x).backward(np.ones(3))
    assert str(err.value) == "Broken.backward returned a gradient of shape (1,) for an input of shape (3,)"


def test_a_tensor_index_reads_like_its_array():
    x = Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    rows = Tensor(np.array([2, 0, 2]))
    y = x[rows]
    np.testing.assert_array_equal(y.data, x.data[[2, 0, 2]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1] * 3, [0] * 3, [2] * 3, [0] * 3])
    with pytest.raises(IndexError, match="must hold whole numbers"):
        x[Tensor(np.array([0.5]))]


def test_wrong_matmul_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((5, 4))))


# --------------------------------------------------------------------------- the methods a user calls
def test_the_methods_match_their_numpy_namesakes():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 7
    t = Tensor(a)
    np.testing.assert_array_equal(t.reshape(4, 6).data, a.reshape(4, 6))            # sizes as arguments
    np.testing.assert_array_equal(t.reshape((6, 4)).data, a.reshape(6, 4))          # or as one tuple
    np.testing.assert_array_equal(t.reshape([3, -1]).data, a.reshape(3, -1))        # or a list
    np.testing.assert_array_equal(t.reshape(24).data, a.reshape(24))
    np.testing.assert_array_equal(t.transpose().data, a.transpose())                # no axes: all reversed
    np.testing.assert_array_equal(t.transpose(1, 0, 2).data, a.transpose(1, 0, 2))
    np.testing.assert_array_equal(t.T.data, a.T)
    assert t.sum().shape == () and t.sum().item() == a.sum()                        # keepdims False
    assert t.mean(axis=1).shape == (2, 4) and t.max(axis=2).shape == (2, 3)
    np.testing.assert_allclose(t.mean(axis=(0, 2), keepdims=True).data, a.mean(axis=(0, 2), keepdims=True))
    np.testing.assert_array_equal(t.abs().data, np.abs(a))
    np.testing.assert_array_equal(t.relu().data, np.maximum(a, 0))
    np.testing.assert_allclose(t.sigmoid().data, 1 / (1 + np.exp(-a)), rtol=1e-12)
    np.testing.assert_allclose(t.abs().sqrt().data, np.sqrt(np.abs(a)))
    np.testing.assert_allclose(t.exp().log().data, a, atol=1e-12)
    assert t.numpy() is t.data and len(t) == 2 and t.size == 24 and t.ndim == 3


def test_reflected_operators_put_the_constant_first():
    a = np.array([1.0, 2.0, 4.0])
    t = Tensor(a, requires_grad=True)
    for out, want in ((3 + t, 3 + a), (3 - t, 3 - a), (3 * t, 3 * a), (3 / t, 3 / a),
                      (np.ones(3) + t, 1 + a), (-t, -a), (t ** 2, a ** 2)):
        assert isinstance(out, Tensor)
        np.testing.assert_allclose(out.data, want)
    (3 + t).sum().backward()
    np.testing.assert_array_equal(t.grad, np.ones(3))


def test_numpy_returns_host_data_and_copies_device_arrays_to_the_host():
    class DeviceArray:                     # what numpy() relies on of a CuPy array: .get() copies to the host
        def get(self):
            return np.arange(3.0)
    t = Tensor(np.ones(2))
    assert t.numpy() is t.data
    np.testing.assert_array_equal(Tensor._wrap(DeviceArray()).numpy(), np.arange(3.0))


def test_repr_and_detach():
    t = Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    assert repr(t) == "Tensor(shape=(2, 3), dtype=float32, requires_grad=True)"
    assert repr(Tensor(np.zeros(4))) == "Tensor(shape=(4,), dtype=float64)"
    d = (t * 2).detach()
    assert not d.requires_grad and d._ctx is None and d.dtype == np.float32
    np.testing.assert_array_equal(d.data, np.zeros((2, 3)))


def test_shape_functions_match_numpy_and_their_defaults():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    b = a + 100
    c = a - 100
    np.testing.assert_array_equal(F.flatten(Tensor(a)).data, a.reshape(2, 12))        # from axis 1
    np.testing.assert_array_equal(F.flatten(Tensor(a), 2).data, a.reshape(2, 3, 4))
    np.testing.assert_array_equal(F.flatten(Tensor(a), 0).data, a.reshape(24))
    np.testing.assert_array_equal(F.reshape(Tensor(a), [4, 6]).data, a.reshape(4, 6))
    for axis in (None, 0, 1, -1, -2):
        kw = {} if axis is None else {"axis": axis}
        np.testing.assert_array_equal(F.concat([Tensor(a), Tensor(b)], **kw).data, np.concatenate([a, b], **kw))
        np.testing.assert_array_equal(F.stack([Tensor(a), Tensor(b), Tensor(c)], **kw).data, np.stack([a, b, c], **kw))
    np.testing.assert_array_equal(F.pad(Tensor(a), [(0, 0), (1, 0), (0, 2)]).data, np.pad(a, [(0, 0), (1, 0), (0, 2)]))
    np.testing.assert_array_equal(F.pad(Tensor(a), [(0, 0), (0, 0), (1, 1)], value=-5.0).data,
                                  np.pad(a, [(0, 0), (0, 0), (1, 1)], constant_values=-5.0))


def test_concat_of_three_sends_each_part_its_own_gradient():
    parts = [Tensor(np.zeros((2, n)), requires_grad=True) for n in (1, 2, 3)]
    out = F.concat(parts, axis=1)                                                         # (2, 6)
    (out * Tensor(np.arange(12.0).reshape(2, 6))).sum().backward()
    np.testing.assert_array_equal(parts[0].grad, [[0], [6]])
    np.testing.assert_array_equal(parts[1].grad, [[1, 2], [7, 8]])
    np.testing.assert_array_equal(parts[2].grad, [[3, 4, 5], [9, 10, 11]])


def test_interpolate_linear_is_the_identity_at_equal_length_only_along_the_last_axis():
    x = Tensor(np.arange(12.0).reshape(1, 4, 3))                  # (B, C, L): C = 4 is not the length
    assert F.interpolate_linear(x, 3) is x
    y = F.interpolate_linear(x, 4)
    assert y.shape == (1, 4, 4)
    np.testing.assert_allclose(y.data[0, 0], [0.0, 0.625, 1.375, 2.0])    # PyTorch's align_corners=False


def test_item_reads_one_element_and_names_any_other_shape():
    assert Tensor(np.array([[2.5]])).item() == 2.5 and isinstance(Tensor(np.array(3.0)).item(), float)
    with pytest.raises(ValueError, match=r"^item\(\) needs a tensor with one element, got shape \(2, 1\)$"):
        Tensor(np.zeros((2, 1))).item()


def test_functions_take_numbers_and_arrays_as_constants():
    assert F.exp(0.0).item() == 1.0 and F.sqrt(4).item() == 2.0
    y = F.log(np.array([1.0, np.e]))
    assert isinstance(y, Tensor) and not y.requires_grad
    np.testing.assert_allclose(y.data, [0.0, 1.0])
    z = F.exp(np.array([0, 1]))                          # an integer array becomes a float32 constant
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.data, [1.0, np.e], rtol=1e-6)
    w = F.add(1.0, np.ones(2, np.float32))               # a number beside an array takes the array's dtype
    assert w.dtype == np.float32 and not w.requires_grad
    np.testing.assert_array_equal(w.data, [2.0, 2.0])


def test_dropout_is_the_identity_and_draws_nothing_at_eval_or_p_zero():
    x = Tensor(np.ones((4, 5)), requires_grad=True)
    rng = np.random.default_rng(0)
    for p, training in [(0.5, False), (0.0, True), (0.0, False)]:
        assert F.dropout(x, p, training, rng=rng) is x
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state   # no random number drawn
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"^dropout probability must be in \[0, 1\), got "):
            F.dropout(x, p, True)


def test_a_results_data_is_always_a_floating_array_even_for_a_single_number():
    x = Tensor(np.ones(3), requires_grad=True)
    for y in (x.sum(), x.mean(), F.sum(x * 2), (x * 2).max()):
        assert type(y.data) is np.ndarray and y.data.ndim == 0 and y.dtype == np.float64
