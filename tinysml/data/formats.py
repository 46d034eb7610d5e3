"""Readers for official file layouts. One function per format; each names what it expected when a
file does not match."""
from __future__ import annotations

import gzip
import os

import numpy as np


class DataFormatError(ValueError):
    """A data file that is not in the layout its reader expects."""


def read_ts(path):
    """Read a UEA/UCR ``.ts`` file (optionally gzip-compressed) of equal-length multivariate series.

    Layout: '#' comment lines, '@key value' header lines ending with '@data', then one line per
    series: the channels separated by ':' (each a comma-separated list of values), the class label
    last. Returns (X (n, C, L) float32, labels (n,) str, header dict).
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    header, rows, labels = {}, [], []
    in_data = False
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower() == "@data":
                    in_data = True
                elif line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                else:
                    raise DataFormatError(f"{path}:{lineno}: expected a '@key value' header line or '@data', got {line[:40]!r}")
                continue
            *channels, label = line.split(":")
            try:
                rows.append([np.array(c.split(","), dtype=np.float32) for c in channels])
            except ValueError as err:
                raise DataFormatError(f"{path}:{lineno}: a channel holds a non-numeric value ({err})") from err
            labels.append(label.strip())
    if not in_data:
        raise DataFormatError(f"{path}: no '@data' line; not a .ts file")
    if not rows:
        raise DataFormatError(f"{path}: no series after '@data'")
    dims = {len(r) for r in rows}
    lengths = {len(c) for r in rows for c in r}
    if len(dims) != 1 or len(lengths) != 1:
        raise DataFormatError(f"{path}: expected equal-length series with the same channel count, "
                              f"got channel counts {sorted(dims)} and lengths {sorted(lengths)[:5]}")
    expected_dims = header.get("dimensions")
    if expected_dims is not None and int(expected_dims) != dims.pop():
        raise DataFormatError(f"{path}: header says @dimensions {expected_dims}, the data has {len(rows[0])} channels")
    return np.stack([np.stack(r) for r in rows]), np.array(labels), header
