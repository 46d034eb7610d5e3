"""Command-line argument types: a number parsed and checked against a ``validate`` rule, with an
error message that names the rule. Shared by ``cli.py``, ``compare.py`` and ``evidence.py``."""
from __future__ import annotations

import argparse

from . import validate as V


def typed(rule: dict, integer: bool = False):
    """An argparse type: parse a number and check it against a ``validate`` rule, naming the rule."""
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}")
        try:
            return V.number("the value", value, **{k: v for k, v in rule.items() if k != "integer"}, integer=integer)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace("the value must be", "must be")) from None
    parse.__name__ = "integer" if integer else "number"
    return parse


COUNT, COUNT0 = typed(V.COUNT, integer=True), typed(V.COUNT0, integer=True)
POSITIVE, NONNEG = typed(V.POSITIVE), typed(V.NONNEG)
FRACTION, SMOOTHING = typed(V.FRACTION), typed({"low": 0, "high": 0.99})
