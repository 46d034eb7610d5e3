"""tinysml: SMLDist (stage-memory-logits distillation) for human activity recognition, from scratch.

Start with ``tinysml/tensor.py`` (autograd), then ``functions/`` (the operations), ``nn/`` (layers),
``models/mobilenet.py`` (the network) and ``train.py`` (the loop).
"""
from .backend import get_backend, set_backend
from .tensor import Tensor, no_grad, is_grad_enabled
from .random import manual_seed
from . import functions
from . import nn

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "is_grad_enabled", "set_backend", "get_backend", "manual_seed", "functions", "nn"]
