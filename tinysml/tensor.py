"""Tensor and Function: reverse-mode automatic differentiation on NumPy/CuPy arrays.

The whole idea fits on one screen:

* a ``Tensor`` wraps an array (``.data``) and, once ``backward`` has run, its gradient (``.grad``);
* every differentiable operation is a ``Function`` subclass with two static methods,
  ``forward(ctx, *arrays, **params) -> array`` and ``backward(ctx, grad) -> tuple of arrays``,
  that work on raw arrays only (they call kernels, never build Tensors);
* ``Function.apply`` runs ``forward`` and, when a gradient is needed, records the inputs in the
  output's ``_ctx``: that record is the graph (``Function.run`` is the forward alone, on arrays);
* ``Tensor.backward`` walks the graph in reverse topological order (iteratively, so deep networks
  do not hit Python's recursion limit) and accumulates gradients, so a Tensor used twice receives
  the sum of both contributions.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backend import get_array_module

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block no graph is recorded (inference, evaluation, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


_batch_invariant = False


@contextlib.contextmanager
def batch_invariant(enabled: bool = True):
    """Within this block every forward computes each window's output in an order that does not
    depend on how many windows share its batch, so that results are bitwise the same batched
    one way or another. Most kernels are so already; the matrix products (``functions/linalg.py``)
    and the CPU pointwise convolution's packed form (``kernels/cpu_pointwise.py``) switch to a
    per-row or per-window form, which is slower. Used for the frozen teacher's outputs, which are
    computed once and cached or recomputed batch by batch (``distill/teacher_cache.py``)."""
    global _batch_invariant
    previous, _batch_invariant = _batch_invariant, enabled
    try:
        yield
    finally:
        _batch_invariant = previous


def is_batch_invariant() -> bool:
    return _batch_invariant


def _as_array(data, dtype):
    """Convert ``data`` to an array. Floating arrays keep their dtype unless one is requested;
    Python numbers, lists and integer arrays become float32."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    if isinstance(data, np.generic):          # 0-d numpy operations return scalars
        data = np.asarray(data)
    if isinstance(data, np.ndarray) or xp is not np:
        return data if data.dtype.kind == "f" else data.astype(np.float32)
    return np.asarray(data, dtype=np.float32)


class Tensor:
    """An array with an optional gradient and a link to the Function that produced it."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    # NumPy hands ``array + tensor`` (and every other ufunc with a Tensor in it) back to the
    # Tensor's reflected operator instead of applying itself element by element to an object array
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Function | None = None

    @classmethod
    def _wrap(cls, array, requires_grad: bool = False) -> "Tensor":
        """A Tensor around an array a Function returned (already an array of the backend: no
        conversion; the hot path of every operation)."""
        t = cls.__new__(cls)
        t.data, t.grad, t.requires_grad, t._ctx = array, None, requires_grad, None
        return t

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def xp(self):
        """The array module (numpy or cupy) that holds this tensor's data."""
        return get_array_module(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU when needed)."""
        return self.data if isinstance(self.data, np.ndarray) else self.data.get()

    def item(self) -> float:
        return float(self.data.reshape(-1)[0]) if self.size == 1 else _raise_item(self.shape)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    # ----------------------------------------------------------------- autograd
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` defaults to 1 for a scalar. Intermediate gradients are freed as soon as they have
        been propagated, so memory peaks at one layer's worth of gradients beyond the activations.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require a gradient")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() needs an explicit grad for a tensor of shape {self.shape}")
            grad = self.xp.ones_like(self.data)
        grads = {id(self): _as_array(grad, self.dtype)}

        for node in _reverse_topological_order(self):
            g = grads.pop(id(node))
            ctx = node._ctx
            if ctx is None:  # a leaf: accumulate into .grad
                node.grad = g if node.grad is None else node.grad + g
                continue
            parent_grads = ctx.backward(ctx, g)
            if not isinstance(parent_grads, tuple):
                parent_grads = (parent_grads,)
            for parent, pg in zip(ctx.parents, parent_grads):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:
                    raise RuntimeError(
                        f"{type(ctx).__name__}.backward returned a gradient of shape {pg.shape} "
                        f"for an input of shape {parent.shape}")
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    # ----------------------------------------------------------------- operators
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __neg__(self): return F.neg(self)
    def __pow__(self, exponent): return F.pow(self, exponent)
    def __matmul__(self, other): return F.matmul(self, other)
    def __getitem__(self, index): return F.getitem(self, index)

    def sum(self, axis=None, keepdims=False): return F.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return F.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return F.max(self, axis, keepdims)
    def reshape(self, *shape): return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    def transpose(self, *axes): return F.transpose(self, axes if axes else None)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def abs(self): return F.abs(self)
    def relu(self): return F.relu(self)
    def sigmoid(self): return F.sigmoid(self)

    @property
    def T(self): return F.transpose(self, None)


def _raise_item(shape):
    raise ValueError(f"item() needs a tensor with one element, got shape {shape}")


def _reverse_topological_order(root: Tensor) -> list:
    """Nodes reachable from ``root`` that require a gradient, each after every node that uses it.

    An explicit stack replaces recursion: (node, children_done) pairs, the node is emitted once
    all its parents have been emitted (post-order), then the list is reversed.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order[::-1]


def _constant(x) -> Tensor:
    """A Function's input that is not a Tensor: a constant (floating arrays are wrapped as they are)."""
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return Tensor._wrap(x)
    return Tensor(x)


class Function:
    """Base class of differentiable operations.

    Subclasses define ``forward(ctx, *arrays, **params)`` and ``backward(ctx, grad)`` as static
    methods. ``ctx`` is the Function instance: ``forward`` stores on it whatever ``backward`` needs
    (``ctx.save(...)`` or plain attributes); ``ctx.needs_grad[i]`` says whether input i wants one.
    """

    def __init__(self, *parents: Tensor):
        self.parents = parents
        self.needs_grad = tuple([p.requires_grad for p in parents])
        self.saved = ()

    def save(self, *arrays) -> None:
        self.saved = arrays

    @staticmethod
    def forward(ctx, *arrays, **params):  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def run(cls, *arrays, **params):
        """``forward`` on raw arrays with a throwaway ctx: no Tensors, no graph. What ``apply``
        does under ``no_grad``, and what the modules' ``infer`` (nn/module.py) calls directly."""
        return cls.forward(cls.__new__(cls), *arrays, **params)

    @classmethod
    def apply(cls, *inputs, **params) -> Tensor:
        if _grad_enabled:
            tensors = tuple([x if isinstance(x, Tensor) else _constant(x) for x in inputs])
            ctx = cls(*tensors)
            out = cls.forward(ctx, *[t.data for t in tensors], **params)
            requires_grad = any(ctx.needs_grad)
        else:                          # no graph: nothing to record, no ctx to keep
            out = cls.run(*[x.data if isinstance(x, Tensor) else _constant(x).data for x in inputs], **params)
            requires_grad = False
        if type(out) is not np.ndarray or out.dtype.kind != "f":   # scalars, integers, CuPy: the general path
            out = _as_array(out, None)
        result = Tensor._wrap(out, requires_grad)
        if requires_grad:
            result._ctx = ctx
        return result


# The operations live in tinysml.functions; imported late because they import Tensor.
from . import functions as F  # noqa: E402
