"""Networks: the 1-D MobileNetV3 (teacher and students) and classifier heads."""
from .mobilenet import (BlockSpec, MobileNetConfig, MobileNetV3, Bottleneck, PRESETS, preset, build_model,
                        make_divisible)
from .heads import build_head, HEADS

__all__ = ["BlockSpec", "MobileNetConfig", "MobileNetV3", "Bottleneck", "PRESETS", "preset", "build_model",
           "make_divisible", "build_head", "HEADS"]
