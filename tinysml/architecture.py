"""What a network's config implies, without building the network: every weight's shape, and the
checks every loader runs before it trusts a file.

A checkpoint carries its config (the architecture, as JSON) and its arrays. Neither is trusted
alone: a file whose arrays disagree with its config (a stem with 5 taps under a config saying 3,
a depthwise weight cut to one tap, a forced residual flag, a scaler of the wrong length), or whose
values cannot be a trained network (NaN or inf, a negative running variance), is refused with an
error naming the layer. ``io.load_model``, ``deploy.Predictor.load``, ``tinysml export`` and the
ONNX export all go through here, so they accept and refuse exactly the same files.

NumPy only (the deploy path imports this module and must not load the autograd). The shapes
follow ``models/mobilenet.py`` and ``models/heads.py``; ``tests/test_architecture.py`` checks them
against the state dict of real models for every preset and head kind.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

BN_EPS = 1e-5          # batch norm epsilon unless the config says otherwise (``bn_eps``)
LN_EPS = 1e-5          # layer norm epsilon of the Hopfield head unless its spec says otherwise (``eps``)
ACTIVATIONS = ("selu", "hardswish", "relu")
HEAD_KINDS = ("linear", "mlp", "hopfield", "mixture")
MAX_WIDTH = 1 << 16    # no preset comes near; a bigger width is a corrupt or hostile config
MAX_PARAMETERS = 1 << 30   # 4 GiB of float32; the largest preset (realworld-teacher) has 77 M


class ArchitectureError(ValueError):
    """A config that cannot describe a network, or arrays that do not fit their config."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to the nearest multiple of ``divisor``, never going down by more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# --------------------------------------------------------------------------- config checks
def _int(cfg: dict, key: str, where: str, low: int = 1, high: int = MAX_WIDTH) -> int:
    value = cfg.get(key) if isinstance(cfg, dict) else None
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise ArchitectureError(f"{where}: {key} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _real(cfg: dict, key: str, where: str, default: float, positive: bool = True) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or (positive and value <= 0):
        raise ArchitectureError(f"{where}: {key} must be a finite{' positive' if positive else ''} number, got {value!r}")
    return float(value)


def check_config(cfg) -> dict:
    """Validate a MobileNet config dict (as stored in checkpoints); returns it unchanged."""
    if not isinstance(cfg, dict):
        raise ArchitectureError(f"the model config must be a mapping, got {type(cfg).__name__}")
    for key in ("in_channels", "length", "num_classes", "head_width"):
        _int(cfg, key, "config", high=MAX_WIDTH if key != "length" else 1 << 24)
    _real(cfg, "width_mult", "config", 1.0)
    _real(cfg, "bn_eps", "config", BN_EPS)
    blocks = cfg.get("blocks")
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ArchitectureError(f"config: blocks must be a non-empty list of bottleneck rows, got {blocks!r}")
    for i, b in enumerate(blocks):
        where = f"config blocks[{i}]"
        if not isinstance(b, dict):
            raise ArchitectureError(f"{where}: expected a mapping, got {type(b).__name__}")
        k = _int(b, "kernel", where, high=255)
        if k % 2 == 0:
            raise ArchitectureError(f"{where}: kernel must be odd (same padding), got {k}")
        for key in ("expand", "in_ch", "out_ch"):
            _int(b, key, where)
        _int(b, "stride", where, high=2)
        if b.get("act") not in ACTIVATIONS:
            raise ArchitectureError(f"{where}: act must be one of {ACTIVATIONS}, got {b.get('act')!r}")
        for key in ("se", "anchor"):
            if not isinstance(b.get(key, False), bool):
                raise ArchitectureError(f"{where}: {key} must be true or false, got {b.get(key)!r}")
    check_head_spec(cfg.get("head", {"kind": "linear"}), "config head")
    count = sum(math.prod(shape) for shape in state_shapes(cfg).values())
    if count > MAX_PARAMETERS:
        raise ArchitectureError(f"config: the network would have {count:,} parameters ({count * 4 / 2**30:.1f} GiB); "
                                f"refusing anything over {MAX_PARAMETERS:,}")
    return cfg


def check_head_spec(spec, where: str) -> None:
    if not isinstance(spec, dict) or spec.get("kind", "linear") not in HEAD_KINDS:
        raise ArchitectureError(f"{where}: expected a head spec with kind in {HEAD_KINDS}, got {spec!r}")
    kind = spec.get("kind", "linear")
    sizes = {"mlp": ("hidden",), "hopfield": ("patterns", "dim")}.get(kind, ())
    for key in sizes:
        if key in spec:
            _int(spec, key, where)
    if kind == "hopfield":
        _real(spec, "eps", where, LN_EPS)
    elif kind == "mixture":
        members = spec.get("heads", ({"kind": "hopfield"}, {"kind": "linear"}))
        if not isinstance(members, (list, tuple)) or not members:
            raise ArchitectureError(f"{where}: a mixture needs a non-empty list of heads, got {members!r}")
        for i, member in enumerate(members):
            check_head_spec(member, f"{where} member {i}")


# --------------------------------------------------------------------------- shapes
def trunk(cfg: dict) -> list:
    """The trunk's layers as plain numbers: one dict per layer (stem, each bottleneck, head conv)
    with its channel widths, kernel, stride, activation, SE and residual flags, as the model builds them."""
    width = lambda c: make_divisible(c * cfg.get("width_mult", 1.0))  # noqa: E731
    c0 = width(cfg["blocks"][0]["in_ch"])
    layers = [{"op": "stem", "in": cfg["in_channels"], "out": c0, "kernel": 3, "stride": 2}]
    prev = c0
    for b in cfg["blocks"]:
        out = width(b["out_ch"])
        layers.append({"op": "block", "in": prev, "expand": width(b["expand"]), "out": out, "kernel": b["kernel"],
                       "stride": b["stride"], "act": b["act"], "se": bool(b["se"]),
                       "residual": b["stride"] == 1 and prev == out})
        prev = out
    layers.append({"op": "head", "in": prev, "out": cfg["head_width"]})
    return layers


def _bn(name: str, n: int) -> dict:
    return {f"{name}.{p}": (n,) for p in ("weight", "bias", "running_mean", "running_var")}


def head_shapes(spec: dict, d: int, k: int, prefix: str = "") -> dict:
    """State names and shapes of a classifier head on d features with k classes."""
    kind, p = spec.get("kind", "linear"), prefix
    if kind == "linear":
        return {f"{p}fc.weight": (k, d), f"{p}fc.bias": (k,)}
    if kind == "mlp":
        h = spec.get("hidden", 128)
        return {f"{p}fc1.weight": (h, d), f"{p}fc1.bias": (h,), f"{p}fc2.weight": (k, h), f"{p}fc2.bias": (k,)}
    if kind == "hopfield":
        n, m = spec.get("patterns", 32), spec.get("dim", 64)
        return {f"{p}norm.weight": (d,), f"{p}norm.bias": (d,), f"{p}query.weight": (m, d), f"{p}patterns": (n, m),
                f"{p}log_beta": (1,), f"{p}out.weight": (k, m), f"{p}out.bias": (k,)}
    members = spec.get("heads", ({"kind": "hopfield"}, {"kind": "linear"}))
    shapes = {}
    for i, member in enumerate(members):
        shapes.update(head_shapes(member, d, k, f"{p}head{i}."))
    return {**shapes, f"{p}gate": (len(members),)}


def state_shapes(cfg: dict) -> dict:
    """Every entry of the model's state dict and its shape, from the config alone."""
    shapes = {}
    for i, layer in enumerate(trunk(cfg)):
        if layer["op"] == "stem":
            shapes.update({"stem.0.weight": (layer["out"], layer["in"], 3), **_bn("stem.1", layer["out"])})
        elif layer["op"] == "head":
            shapes.update({"head_conv.0.weight": (layer["out"], layer["in"], 1), **_bn("head_conv.1", layer["out"])})
        else:
            p, E = f"blocks.{i - 1}", layer["expand"]
            shapes.update({f"{p}.expand.0.weight": (E, layer["in"], 1), **_bn(f"{p}.expand.1", E),
                           f"{p}.depthwise.0.weight": (E, 1, layer["kernel"]), **_bn(f"{p}.depthwise.1", E),
                           f"{p}.project.0.weight": (layer["out"], E, 1), **_bn(f"{p}.project.1", layer["out"])})
            if layer["se"]:
                shapes.update({f"{p}.se.fc1.weight": (E // 4, E), f"{p}.se.fc2.weight": (E, E // 4)})
    shapes.update(head_shapes(cfg.get("head", {"kind": "linear"}), cfg["head_width"], cfg["num_classes"], "classifier."))
    return shapes


def deploy_shapes(layer: dict) -> dict:
    """The folded arrays of one deploy layer (``deploy.fold_model``) and their shapes."""
    if layer["op"] == "stem":
        return {"w": (layer["out"], layer["in"], 3), "b": (layer["out"],)}
    if layer["op"] == "head":
        return {"w": (layer["out"], layer["in"]), "b": (layer["out"],)}
    E = layer["expand"]
    shapes = {"we": (E, layer["in"]), "be": (E,), "wd": (E, layer["kernel"]), "bd": (E,),
              "wp": (layer["out"], E), "bp": (layer["out"],)}
    if layer["se"]:
        shapes.update({"se1": (E // 4, E), "se2": (E, E // 4)})
    return shapes


# --------------------------------------------------------------------------- array checks
def _check_array(name: str, value, shape: tuple, where: str) -> None:
    if not isinstance(value, np.ndarray) and type(value).__module__.split(".")[0] != "cupy":
        raise ArchitectureError(f"{where}: {name} must be an array of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ArchitectureError(f"{where}: {name} has shape {tuple(value.shape)}, but the config implies {tuple(shape)}")
    if value.dtype.kind != "f":
        raise ArchitectureError(f"{where}: {name} must hold floating-point values, got dtype {value.dtype}")
    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
    if bad:
        raise ArchitectureError(f"{where}: {name} holds {bad} NaN or infinite value(s); the weights are broken "
                                f"(training diverged, or the file was altered)")
    if name.endswith("running_var") and float(value.min()) < 0:
        raise ArchitectureError(f"{where}: {name} has a negative running variance ({float(value.min()):.3g})")


def check_arrays(arrays: dict, shapes: dict, where: str) -> None:
    """Every expected entry present with its shape, finite, nothing unexpected (named, all at once)."""
    missing = [k for k in shapes if k not in arrays]
    unexpected = [k for k in arrays if k not in shapes]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing else []) + \
                ([f"not in the config's network: {', '.join(unexpected[:8])}"] if unexpected else [])
        raise ArchitectureError(f"{where}: the arrays do not match the config ({'; '.join(parts)})")
    for name, shape in shapes.items():
        _check_array(name, arrays[name], shape, where)


def check_state(cfg: dict, state: dict, where: str = "checkpoint") -> None:
    """A model checkpoint's state dict against its own config."""
    check_config(cfg)
    if not isinstance(state, dict):
        raise ArchitectureError(f"{where}: the model state must be a mapping of arrays")
    check_arrays(state, state_shapes(cfg), where)


def check_scaler(scaler, channels: int, where: str = "checkpoint") -> None:
    """The stored input scaling: shift and scale of one value per input channel, scale > 0, and
    finite clipping bounds (or none)."""
    if scaler is None:
        return
    if not isinstance(scaler, dict):
        raise ArchitectureError(f"{where}: scaler must be a mapping, got {type(scaler).__name__}")
    for key in ("shift", "scale"):
        value = scaler.get(key)
        if not isinstance(value, np.ndarray):
            raise ArchitectureError(f"{where}: scaler {key} must be an array of {channels} values, got {value!r}")
        _check_array(f"scaler {key}", value, (channels,), where)
    if float(scaler["scale"].min()) <= 0:
        raise ArchitectureError(f"{where}: scaler scale must be positive in every channel")
    bounds = [scaler.get(key) for key in ("low", "high")]
    for key, value in zip(("low", "high"), bounds):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)):
            raise ArchitectureError(f"{where}: scaler {key} must be a finite number or null, got {value!r}")
    if None not in bounds and bounds[0] >= bounds[1]:
        raise ArchitectureError(f"{where}: scaler clips to an empty range [{bounds[0]}, {bounds[1]}]")


def check_class_names(names, num_classes: int, where: str = "checkpoint") -> None:
    if names is None:
        return
    if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise ArchitectureError(f"{where}: class_names must be a list of {num_classes} strings, got {names!r}")


def check_model_tree(tree: dict, where: str = "checkpoint") -> None:
    """A model checkpoint tree: the state against the config, the scaling and the class names."""
    cfg = tree.get("config")
    check_state(cfg, tree.get("state"), where)
    check_scaler(tree.get("scaler"), cfg["in_channels"], where)
    check_class_names(tree.get("class_names"), cfg["num_classes"], where)


def check_deploy(tree: dict, where: str = "checkpoint") -> None:
    """A deploy tree (folded weights): every layer against the config, including the flags the
    predictor acts on (activation, stride, kernel, residual), the classifier, scaling and class names."""
    cfg = check_config(tree.get("config"))
    expected, layers = trunk(cfg), tree.get("layers")
    if not isinstance(layers, list) or len(layers) != len(expected):
        got = len(layers) if isinstance(layers, list) else layers
        raise ArchitectureError(f"{where}: the config implies {len(expected)} layers, the file holds {got}")
    for i, (want, layer) in enumerate(zip(expected, layers)):
        name = f"layer {i} ({want['op']}{'' if want['op'] != 'block' else f' blocks.{i - 1}'})"
        if not isinstance(layer, dict) or layer.get("op") != want["op"]:
            raise ArchitectureError(f"{where}: {name} should be a {want['op']!r} layer")
        for flag in ("act", "stride", "kernel", "residual"):
            if want["op"] == "block" and layer.get(flag) != want[flag]:
                raise ArchitectureError(f"{where}: {name} says {flag}={layer.get(flag)!r}, "
                                        f"but the config implies {want[flag]!r}")
        arrays = {k: v for k, v in layer.items() if k not in ("op", "act", "stride", "kernel", "residual")}
        check_arrays(arrays, deploy_shapes(want), f"{where}: {name}")
    head = head_shapes(cfg.get("head", {"kind": "linear"}), cfg["head_width"], cfg["num_classes"])
    if not isinstance(tree.get("classifier"), dict):
        raise ArchitectureError(f"{where}: the classifier must be a mapping of arrays")
    check_arrays(tree["classifier"], head, f"{where}: classifier")
    check_scaler(tree.get("scaler"), cfg["in_channels"], where)
    check_class_names(tree.get("class_names"), cfg["num_classes"], where)
