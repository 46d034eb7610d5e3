"""Module: a container of Parameters, buffers and sub-modules.

Parameters and sub-modules are found by walking the instance's attributes in the order they were
assigned (``vars(self)``): no registration hooks. Buffers (non-learnable state such as batch norm's
running statistics) are plain arrays whose attribute names are listed in ``self.buffer_names``.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError

    def infer(self, x):
        """The eval-mode forward on a raw array, returning an array: no Tensors, no graph.

        It computes what ``forward`` computes in eval mode under ``no_grad``, by the same
        Functions' forwards in the same order (``Function.run``), so the same bits. What it skips
        is the bookkeeping around each operation (module call, argument checks, ``apply``, a
        Tensor per result): ~2 us an operation, a third of a batch-1 forward of the student. The
        network checks its input once and calls it (``MobileNetV3.forward_stages``). The layers
        the networks use override it; any other module runs its ``forward`` here."""
        return self.forward(Tensor._wrap(x)).data

    # ----------------------------------------------------------------- traversal
    def children(self):
        """(name, module) for the direct sub-modules, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = ""):
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_parameters(full)

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        for name in getattr(self, "buffer_names", ()):
            yield (f"{prefix}.{name}" if prefix else name), getattr(self, name)
        for name, child in self.children():
            yield from child.named_buffers(f"{prefix}.{name}" if prefix else name)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # ----------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = flag
        return self

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """name -> array for every parameter and buffer (the live arrays, not copies)."""
        state = {name: p.data for name, p in self.named_parameters()}
        state.update(dict(self.named_buffers()))
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers.

        Every mismatch is reported at once: missing and unexpected names (when strict) and shape
        differences, e.g. a checkpoint of another architecture.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        problems = wrong + ([f"missing from checkpoint: {', '.join(missing)}"] if strict and missing else []) \
            + ([f"not in model: {', '.join(unexpected)}"] if strict and unexpected else [])
        if problems:
            raise ValueError("state dict does not match the model:\n  " + "\n  ".join(problems))
        for k, target in own.items():
            if k in state:
                xp = get_array_module(target)
                target[...] = xp.asarray(state[k], dtype=target.dtype)

    def to(self, target) -> "Module":
        """Move to a device ("cpu" or "cuda") or cast floating state to a dtype (e.g. np.float64)."""
        if target is None:              # np.dtype(None) is float64: a forgotten device would cast silently
            raise TypeError("Module.to needs a device ('cpu' or 'cuda') or a dtype, got None")
        if isinstance(target, str):
            convert = _device_converter(target)
        else:
            dtype = np.dtype(target)
            convert = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
        for _, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    value.data = convert(value.data)
                    value.grad = None
            for name in getattr(module, "buffer_names", ()):
                setattr(module, name, convert(getattr(module, name)))
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self.children():
            lines.append("  " + f"({name}): {child!r}".replace("\n", "\n  "))
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


def _device_converter(device: str):
    if device == "cpu":
        return lambda a: a if isinstance(a, np.ndarray) else a.get()
    if device == "cuda":
        try:
            import cupy
        except ImportError as err:
            raise ImportError("device 'cuda' needs CuPy: pip install 'tinysml[cuda12]' or 'tinysml[cuda13]'") from err
        return cupy.asarray
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
