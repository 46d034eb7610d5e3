"""1-D MobileNetV3 for inertial windows (B, C, L), as in the SMLDist authors' code (docs/algorithm.md, section 2).

    stem:        Conv1d(C -> c0, k=3, s=2, p=1, no bias) -> BN -> hardswish
    bottlenecks: pointwise expand -> BN -> act -> depthwise(k, s) -> BN -> [SE] -> act -> pointwise project -> BN
                 (+ x when stride 1 and in == out). SE sits *before* the activation, as in the released code.
    head:        pointwise Conv1d(last -> head_width) -> BN -> hardswish -> mean over time -> hardswish -> h
    classifier:  a head on the (B, head_width) feature h (models/heads.py)

Some bottlenecks are *stage anchors*: the feature map after an anchor is a stage feature, the
target of stage distillation. A network is built from a table of rows (BlockSpec), so the released
configurations read exactly like the paper's tables (see PRESETS).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import functions as F
from ..architecture import BN_EPS, ArchitectureError, check_config, make_divisible
from ..functions.elementwise import Add
from ..nn import Activation, BatchNorm1d, Conv1d, ConvBNAct, Module, Sequential, SqueezeExcite
from ..tensor import Tensor, is_grad_enabled
from .heads import build_head


@dataclass(frozen=True)
class BlockSpec:
    """One bottleneck row: kernel size, expanded width, in -> out channels, SE, activation, stride,
    and whether it ends a stage (anchor)."""
    kernel: int
    expand: int
    in_ch: int
    out_ch: int
    se: bool
    act: str          # "selu" or "hardswish"
    stride: int
    anchor: bool = False


def _rows(table: str) -> tuple:
    """Parse 'k exp in out SE act stride [A]' lines into BlockSpecs ('-' for no SE, 'hsw' for hardswish)."""
    rows = []
    for line in table.strip().splitlines():
        parts = line.split()
        k, e, i, o = (int(v) for v in parts[:4])
        act = {"SELU": "selu", "hsw": "hardswish"}[parts[5]]
        rows.append(BlockSpec(k, e, i, o, parts[4] == "SE", act, int(parts[6]), len(parts) > 7 and parts[7] == "A"))
    return tuple(rows)


@dataclass(frozen=True)
class MobileNetConfig:
    """Everything needed to rebuild a network; saved inside checkpoints as JSON."""
    blocks: tuple
    in_channels: int
    length: int
    num_classes: int
    head_width: int = 512
    head: dict = field(default_factory=lambda: {"kind": "linear", "dropout": 0.0})
    width_mult: float = 1.0
    name: str = "custom"
    bn_eps: float = BN_EPS     # epsilon of every batch norm (stored, so the deploy fold uses the same)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [asdict(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MobileNetConfig":
        """Rebuild a saved config; a malformed one raises ArchitectureError naming the field."""
        check_config(d)
        d = dict(d)
        try:
            d["blocks"] = tuple(BlockSpec(**b) for b in d["blocks"])
            return cls(**d)
        except TypeError as err:
            raise ArchitectureError(f"config: {err}") from err


# Teacher and student of the released RealWorld-HAR code (63 channels x 225 steps, 8 classes).
REALWORLD_TEACHER = _rows("""
3   64   64   64  SE  SELU 2
3  288   64  128  -   SELU 2
3  352  128  128  -   SELU 1
5  384  128  256  SE  hsw  2
7  480  256  256  SE  SELU 1
5  480  256  256  SE  SELU 1  A
3  960  256  512  -   hsw  2
3  800  512  512  -   hsw  1
3  736  512  512  -   hsw  1
3  736  512  512  -   hsw  1
3 1920  512 1024  SE  hsw  1  A
3 2688 1024 1024  SE  hsw  1
5 2688 1024 2048  SE  hsw  2
7 3840 2048 2048  SE  hsw  1  A
5 3840 2048 2048  SE  hsw  1
""")
REALWORLD_STUDENT = _rows("""
3   64   64   64  SE  SELU 2
5  352   64  128  -   SELU 2
5  384  128  256  SE  hsw  2
9  480  256  256  SE  SELU 1  A
3  960  256  512  -   hsw  1
5  800  512  512  -   hsw  2
5 1920  512 1024  SE  hsw  1  A
3 2688 1024 1024  SE  hsw  1
5 2688 1024 2048  SE  hsw  2  A
9 3840 2048 2048  SE  hsw  1
""")
# Small HAR presets [ours] for 6-9 channels x ~128 steps. Anchors have equal shapes in teacher and
# student (48 x L/4, 96 x L/8, 160 x L/16), so stage features match without adapters.
HAR_TEACHER = _rows("""
3   64   32   32  SE  SELU 1
3   96   32   48  -   SELU 2
5  144   48   48  SE  SELU 1  A
5  192   48   96  SE  hsw  2
5  288   96   96  SE  hsw  1
5  288   96   96  SE  hsw  1  A
3  384   96  160  SE  hsw  2
3  480  160  160  SE  hsw  1
3  480  160  160  SE  hsw  1  A
""")
HAR_STUDENT = _rows("""
3   48   16   24  -   SELU 2
5   72   24   48  SE  SELU 1  A
5  144   48   96  SE  hsw  2  A
3  240   96  160  SE  hsw  2  A
""")
PRESETS = {
    "realworld-teacher": (REALWORLD_TEACHER, 512),
    "realworld-student": (REALWORLD_STUDENT, 512),
    "har-teacher": (HAR_TEACHER, 256),
    "har-student": (HAR_STUDENT, 256),
}


def preset(name: str, in_channels: int, length: int, num_classes: int, **overrides) -> MobileNetConfig:
    """The configuration of a named preset for inputs of (in_channels, length) and num_classes."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    blocks, head_width = PRESETS[name]
    return replace(MobileNetConfig(blocks, in_channels, length, num_classes, head_width, name=name), **overrides)


FUSE_SKIP = ConvBNAct.unfused      # activations whose fused kernels measured slower (bench/fusions.py)


class Bottleneck(Module):
    """Inverted residual: expand (1x1) -> depthwise (k, stride) -> [SE] -> project (1x1)."""

    def __init__(self, spec: BlockSpec, in_ch: int, exp: int, out_ch: int, rng, eps: float = BN_EPS):
        k, s = spec.kernel, spec.stride
        self.expand = ConvBNAct(Conv1d(in_ch, exp, 1, bias=False, rng=rng), BatchNorm1d(exp, eps), Activation(spec.act))
        self.depthwise = Sequential(Conv1d(exp, exp, k, stride=s, padding=(k - 1) // 2, groups=exp, bias=False, rng=rng),
                                    BatchNorm1d(exp, eps))
        self.se = SqueezeExcite(exp, rng=rng) if spec.se else None
        self.act = Activation(spec.act)
        self.project = Sequential(Conv1d(exp, out_ch, 1, bias=False, rng=rng), BatchNorm1d(out_ch, eps))
        self.residual = s == 1 and in_ch == out_ch

    def forward(self, x):                       # x (B, in, L)
        h = self.expand(x)                      # (B, exp, L)
        h = self.depthwise(h)                   # (B, exp, L / stride)
        if self.se is not None and self.act.name not in FUSE_SKIP:
            h = self.se(h, act=self.act.name)   # SE scaling and the activation, one fused kernel
        else:
            h = self.act(self.se(h) if self.se is not None else h)
        h = self.project(h)                     # (B, out, L / stride)
        return h + x if self.residual else h

    def infer(self, x):                         # forward's steps on arrays (Module.infer)
        h = self.depthwise.infer(self.expand.infer(x))
        if self.se is not None and self.act.name not in FUSE_SKIP:
            h = self.se.infer(h, act=self.act.name)
        else:
            h = self.act.infer(self.se.infer(h) if self.se is not None else h)
        h = self.project.infer(h)
        return Add.run(h, x) if self.residual else h


class MobileNetV3(Module):
    """The 1-D MobileNetV3 backbone with a classifier head and stage anchors."""

    def __init__(self, config: MobileNetConfig, seed: int = 0):
        check_config(config.to_dict())          # a clear error before any allocation, never a MemoryError
        self.config = config
        rng = np.random.default_rng(seed)
        width = lambda c: make_divisible(c * config.width_mult)  # noqa: E731
        c0 = width(config.blocks[0].in_ch)
        self.stem = ConvBNAct(Conv1d(config.in_channels, c0, 3, stride=2, padding=1, bias=False, rng=rng),
                               BatchNorm1d(c0, config.bn_eps), Activation("hardswish"))
        blocks, prev = [], c0
        for spec in config.blocks:
            out = width(spec.out_ch)
            blocks.append(Bottleneck(spec, prev, width(spec.expand), out, rng, config.bn_eps))
            prev = out
        self.blocks = Sequential(*blocks)
        self.head_conv = ConvBNAct(Conv1d(prev, config.head_width, 1, bias=False, rng=rng),
                                    BatchNorm1d(config.head_width, config.bn_eps), Activation("hardswish"))
        self.classifier = build_head(config.head, config.head_width, config.num_classes, rng)
        self.anchors = tuple(i for i, spec in enumerate(config.blocks) if spec.anchor)

    # ----------------------------------------------------------------- shapes
    def check_input(self, x) -> None:
        """Reject windows that are not (B, in_channels, length), naming the expected shape."""
        C, L = self.config.in_channels, self.config.length
        shape = tuple(x.shape)
        if len(shape) != 3 or shape[1:] != (C, L):
            raise ValueError(f"expected windows of shape (B, {C}, {L}) = (batch, channels, time steps), got {shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"expected floating-point windows, got dtype {x.dtype}")

    def stage_shapes(self) -> list:
        """(channels, length) of each stage feature for this model's input length."""
        L = self.stem[0].output_length(self.config.length)
        shapes = []
        for i, block in enumerate(self.blocks):
            L = block.depthwise[0].output_length(L)
            if i in self.anchors:
                shapes.append((block.project[0].out_channels, L))
        return shapes

    # ----------------------------------------------------------------- forward passes
    def forward_stages(self, x, upto: int | None = None):
        """Stage features [F_0, F_1, ...] (each (B, C_s, L_s)); stops after anchor ``upto`` when given."""
        self.check_input(x)
        last = self.anchors[upto] if upto is not None else len(self.blocks) - 1
        if not self.training and not is_grad_enabled():     # inference: the same steps on arrays, no graph
            stages, h = self._stages(lambda module, a: module.infer(a), x.data if isinstance(x, Tensor) else x, last)
            return [Tensor._wrap(s) for s in stages], Tensor._wrap(h)
        return self._stages(lambda module, t: module(t), x, last)

    def _stages(self, run, h, last):
        stages, h = [], run(self.stem, h)
        for i in range(last + 1):
            h = run(self.blocks[i], h)
            if i in self.anchors:
                stages.append(h)
        return stages, h

    def features(self, x, return_stages: bool = False):
        """The pooled feature h (B, head_width), optionally with the stage features."""
        stages, h = self.forward_stages(x)
        h = F.hardswish(F.global_avg_pool(self.head_conv(h)))   # (B, head_width)
        return (h, stages) if return_stages else h

    def forward(self, x, return_stages: bool = False):
        """Logits (B, num_classes), optionally with the stage features."""
        h, stages = self.features(x, return_stages=True)
        logits = self.classifier(h)
        return (logits, stages) if return_stages else logits

    def backbone(self) -> list:
        """The modules docs/algorithm.md (section 2) counts as the backbone: stem, bottlenecks, head conv (not the classifier)."""
        return [self.stem, self.blocks, self.head_conv]

    def extra_repr(self):
        return f"{self.config.name}: {self.config.in_channels}x{self.config.length} -> {self.config.num_classes}"


def build_model(config: MobileNetConfig | dict, seed: int = 0) -> MobileNetV3:
    if isinstance(config, dict):
        config = MobileNetConfig.from_dict(config)
    return MobileNetV3(config, seed=seed)
