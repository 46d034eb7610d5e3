"""The two forms of the pointwise (1x1) convolution kernels, side by side, on every pointwise layer
of the presets at their training batch: one GEMM per batch element, or the batch packed into one
GEMM (``kernels/cpu.py``). Prints both times and which one ``_packed`` picks, so the rule can be
checked on another machine.

    python bench/pointwise.py [--repeats 30]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def layer_shapes():
    """(preset, B, C, L, O) of every distinct pointwise layer: har presets on 6 x 128 at batch 64,
    the released student on 63 x 225 at batch 32."""
    from tinysml.models import build_model, preset
    seen = []
    for name, C, L, B in (("har-teacher", 6, 128, 64), ("har-student", 6, 128, 64), ("realworld-student", 63, 225, 32)):
        model = build_model(preset(name, C, L, 6))
        length = model.stem[0].output_length(L)
        for block in model.blocks:
            after = block.depthwise[0].output_length(length)
            for conv, n in ((block.expand[0], length), (block.project[0], after)):
                row = (name, B, conv.in_channels, n, conv.out_channels)
                if row not in seen:
                    seen.append(row)
            length = after
    return seen


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    from tinysml.kernels import cpu, cpu_pointwise
    print(f"{'layer (B, C, L) -> O':<44}{'fwd: per-b':>11}{'packed':>8}{'pick':>7}{'bwd: per-b':>12}{'packed':>8}{'pick':>7}")
    for name, B, C, L, O in layer_shapes():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((B, C, L)).astype(np.float32)
        w = rng.standard_normal((O, C)).astype(np.float32)
        gy = rng.standard_normal((B, O, L)).astype(np.float32)
        times = {}
        for packed in (False, True):
            rule = cpu_pointwise._packed
            cpu_pointwise._packed = lambda *a, backward, p=packed: p            # force one form
            try:
                times[packed] = (median_ms(lambda: cpu.pw_conv1d_fwd(x, w, None), args.repeats),
                                 median_ms(lambda: cpu.pw_conv1d_bwd(gy, x, w), args.repeats))
            finally:
                cpu_pointwise._packed = rule
        pick_f = cpu_pointwise._packed(B, L, C, O, backward=False)
        pick_b = cpu_pointwise._packed(B, L, C, O, backward=True)
        mark = lambda pick, direction: "packed" if pick else "per-b"  # noqa: E731
        print(f"{name + f' ({B}, {C}, {L}) -> {O}':<44}{times[False][0]:>11.3f}{times[True][0]:>8.3f}"
              f"{mark(pick_f, 0):>7}{times[False][1]:>12.3f}{times[True][1]:>8.3f}{mark(pick_b, 1):>7}")


if __name__ == "__main__":
    main()
