"""The dataset registry: names users type, and the loaders behind them."""
from __future__ import annotations

from .builtin import load_basicmotions

_LOADERS = {
    "basicmotions": (load_basicmotions, "UEA BasicMotions, smart-watch IMU, 4 classes, 6 x 100 (built in)"),
}


def available() -> dict:
    """name -> one-line description."""
    return {name: desc for name, (_, desc) in _LOADERS.items()}


def load(name: str):
    key = name.lower()
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[key][0]()
