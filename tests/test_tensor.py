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
    assert not y.requires_grad and y._ctx is None
    z = (x * 2).detach()
    assert not z.requires_grad


def test_dtypes():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64                 # floating arrays keep their dtype
    assert Tensor(np.zeros(2, np.int64)).dtype == np.float32
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64
    x = Tensor(np.ones(2, np.float32))
    assert (x * 2.5).dtype == np.float32                           # Python scalars follow the tensor


def test_backward_needs_scalar_or_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="explicit grad"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require"):
        Tensor(np.ones(1)).backward()


def test_wrong_matmul_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((5, 4))))
