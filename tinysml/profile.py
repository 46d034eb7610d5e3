"""Model cost: parameters, multiply-adds (MACs) per sample, bytes, and latency.

MACs are counted by running one sample through the model with a counter active: every Conv1d
and Linear adds its multiply-adds (convolutions: O * C/G * K * Lout; linear: in * out per row).
BN, activations and pooling are not counted (the usual convention; docs/algorithm.md, section 2).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .backend import get_array_module
from .nn import Conv1d, Linear, Module
from .tensor import Tensor, no_grad


def _on_model(model: Module, x: np.ndarray) -> Tensor:
    """``x`` on the model's device and in its dtype, so a model moved to the GPU or cast to float64 is
    measured as it runs."""
    p = model.parameters()[0].data
    return Tensor(get_array_module(p).asarray(x, dtype=p.dtype))


def count_params(module_or_modules) -> int:
    """Learnable parameters of a module or a list of modules (BN's running statistics excluded)."""
    modules = module_or_modules if isinstance(module_or_modules, (list, tuple)) else [module_or_modules]
    return int(sum(m.num_parameters() for m in modules))


def model_bytes(module: Module) -> int:
    """Bytes of every parameter and buffer as stored (what a checkpoint of the weights holds)."""
    return int(sum(a.nbytes for a in module.state_dict().values()))


@contextlib.contextmanager
def _counting(model: Module):
    """Wrap the forward and the infer (the eval-mode path on arrays) of every Conv1d and Linear in
    ``model`` to record MACs per sample."""
    counts = {}
    patched = []
    for name, m in model.named_modules():
        if isinstance(m, (Conv1d, Linear)):
            for method in ("forward", "infer"):
                def counted(x, _m=m, _name=name, _orig=getattr(m, method)):
                    y = _orig(x)
                    per_sample = _m.macs(y.shape[-1]) if isinstance(_m, Conv1d) else _m.macs() * (y.size // y.shape[-1] // x.shape[0])
                    counts[_name] = counts.get(_name, 0) + per_sample
                    return y
                setattr(m, method, counted)
            patched.append(m)
    try:
        yield counts
    finally:
        for m in patched:
            del m.forward, m.infer


def count_macs(model: Module, input_shape, by_module: bool = False):
    """Multiply-adds for one sample of shape ``input_shape`` (C, L). With ``by_module`` also a dict
    name -> MACs, so that parts (e.g. the backbone without the classifier) can be summed."""
    was_training = model.training
    model.eval()
    try:
        with no_grad(), _counting(model) as counts:
            model(_on_model(model, np.zeros((1, *input_shape))))
    finally:
        model.train(was_training)
    total = int(sum(counts.values()))
    return (total, counts) if by_module else total


def backbone_macs(model, input_shape) -> int:
    """MACs of a MobileNetV3 without its classifier head (docs/algorithm.md, section 2)."""
    _, counts = count_macs(model, input_shape, by_module=True)
    return int(sum(v for k, v in counts.items() if not k.startswith("classifier")))


def latency(model: Module, input_shape, batch: int = 1, repeats: int = 20, warmup: int = 3) -> dict:
    """Wall-clock time of an eval-mode forward pass: median and min over ``repeats`` runs, in ms."""
    x = _on_model(model, np.random.default_rng(0).standard_normal((batch, *input_shape)))
    sync = getattr(get_array_module(x.data), "cuda", None)    # CuPy: wait for the GPU before reading the clock
    model.eval()
    times = []
    with no_grad():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(x)
            if sync is not None:
                sync.Stream.null.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return {"batch": batch, "median_ms": float(np.median(times)), "min_ms": float(np.min(times))}


def summary(model, input_shape) -> dict:
    """Parameters, MACs (total and backbone), and bytes of a MobileNetV3."""
    total, counts = count_macs(model, input_shape, by_module=True)
    return {
        "params": count_params(model),
        "backbone_params": count_params(model.backbone()),
        "macs": total,
        "backbone_macs": int(sum(v for k, v in counts.items() if not k.startswith("classifier"))),
        "bytes": model_bytes(model),
    }
