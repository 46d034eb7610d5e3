"""Argument checks shared by the configs and the command line: one clear message per bad value.

    number("batch_size", 0, low=1, integer=True)   -> ValueError: batch_size must be an integer >= 1, got 0
"""
from __future__ import annotations

import math
from numbers import Integral, Real


def number(name: str, value, *, low=None, high=None, integer: bool = False, open_low: bool = False):
    """``value`` if it is a finite number (an integer when ``integer``) in [low, high] (``open_low``:
    (low, high]); else ValueError naming ``name``, the allowed range and the value."""
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if open_low else '>='} {low}")
    if high is not None:
        bounds.append(f"<= {high}")
    wanted = f"{name} must be {kind}{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}"
    ok_type = isinstance(value, Integral) if integer else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        raise ValueError(wanted)
    if low is not None and (value <= low if open_low else value < low):
        raise ValueError(wanted)
    if high is not None and value > high:
        raise ValueError(wanted)
    return value


def fields(obj, rules: dict) -> None:
    """Check several attributes of a config object: ``rules`` maps a name to ``number``'s keywords."""
    for name, rule in rules.items():
        number(name, getattr(obj, name), **rule)


# the usual rules, by meaning
COUNT = {"low": 1, "integer": True}                  # epochs, batch sizes, widths
COUNT0 = {"low": 0, "integer": True}                 # may be zero (a phase switched off, a seed)
POSITIVE = {"low": 0, "open_low": True}              # learning rates, temperatures
NONNEG = {"low": 0}                                  # weights of loss terms, noise levels
FRACTION = {"low": 0, "high": 0.95, "open_low": True}  # a validation fraction
PROBABILITY = {"low": 0, "high": 1}                  # label smoothing, dropout
