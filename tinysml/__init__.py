"""tinysml: SMLDist (stage-memory-logits distillation) for human activity recognition, from scratch.

Start with ``tinysml/tensor.py`` (autograd), then ``functions/`` (the operations), ``nn/`` (layers),
``models/mobilenet.py`` (the network) and ``train.py`` (the loop).

The top-level names are imported on first use (PEP 562), so that ``import tinysml.deploy`` — the
embeddable inference path — loads neither the autograd nor SciPy.
"""
import importlib

__version__ = "0.1.0"
_LAZY = {
    "Tensor": ("tensor", "Tensor"), "no_grad": ("tensor", "no_grad"), "is_grad_enabled": ("tensor", "is_grad_enabled"), "batch_invariant": ("tensor", "batch_invariant"),
    "set_backend": ("backend", "set_backend"), "get_backend": ("backend", "get_backend"),
    "manual_seed": ("random", "manual_seed"), "functions": ("functions", None), "nn": ("nn", None),
}
__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tinysml' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value
