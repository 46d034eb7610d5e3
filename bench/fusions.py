"""Does each fused kernel pay? Every fusion timed on and off, side by side in one process.

    python bench/fusions.py [--batch 64] [--repeats 30]

On ``har-student`` (9 x 128), numba backend, 2 threads:
  * BN + activation (training): ``F.batch_norm_act`` (one kernel per direction, no stored
    pre-activation) against ``F.batch_norm`` then ``F.activation``, on every ConvBNAct layer's
    shape, forward + backward; and the whole training step with the model's ConvBNAct layers
    fused and unfused (the same layers run as plain Sequentials);
  * SE scaling + activation: ``F.channel_scale_act`` against ``F.channel_scale`` then the
    activation, on every SE block's shape, forward + backward;
  * the whole training step and batch-1 inference through the autograd path with no fusion, each
    fusion alone, and both;
  * depthwise conv + BN + activation for inference: what ``tinysml.deploy`` does (BN folded into
    the convolution, the activation in the same compiled pass; ``kernels/cpu_network.py``) against
    the autograd path in eval mode, at batch 1.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    import tinysml
    from tinysml import Tensor, functions as F, no_grad
    from tinysml.kernels.reference import ACTIVATIONS
    from tinysml.models import build_model, mobilenet, preset
    from tinysml.nn import ConvBNAct, Sequential
    from tinysml.optim import AdamW
    tinysml.set_backend("numba")
    B = args.batch
    model = build_model(preset("har-student", 9, 128, 6), seed=0)
    rng = np.random.default_rng(0)
    rows = []

    # 1. the kernel pair on each fused layer's shape (forward + backward, training mode)
    shapes, x = [], Tensor(rng.standard_normal((B, 9, 128)).astype(np.float32))
    model.eval()
    with no_grad():
        h = model.stem[0](x)
        shapes.append(("stem", h.shape, "hardswish"))
        h = model.stem(x)
        for block in model.blocks:
            shapes.append((f"expand {h.shape[1]}->{block.expand[0].out_channels}",
                           (B, block.expand[0].out_channels, h.shape[2]), block.expand[2].name))
            h = block(h)
        shapes.append(("head conv", (B, model.head_conv[0].out_channels, h.shape[2]), "hardswish"))
    fused_total = pair_total = 0.0
    for name, shape, act in shapes:
        xs = rng.standard_normal(shape).astype(np.float32)
        g, b = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)

        def fused():
            xt, gt, bt = Tensor(xs, requires_grad=True), Tensor(g, requires_grad=True), Tensor(b, requires_grad=True)
            F.batch_norm_act(xt, gt, bt, training=True, act=act).sum().backward()

        def pair():
            xt, gt, bt = Tensor(xs, requires_grad=True), Tensor(g, requires_grad=True), Tensor(b, requires_grad=True)
            F.activation(F.batch_norm(xt, gt, bt, training=True), act).sum().backward()
        tf, tp = median_ms(fused, args.repeats), median_ms(pair, args.repeats)
        fused_total, pair_total = fused_total + tf, pair_total + tp
        rows.append((f"BN+{act} fwd+bwd, {name} {shape}", tf, tp))
    rows.append(("BN+act fwd+bwd, all fused layers (sum)", fused_total, pair_total))

    # 1b. SE scaling + activation on each SE block's depthwise output
    se_inputs = []
    with no_grad():
        h = model.stem(x)
        for i, block in enumerate(model.blocks):
            if block.se is not None:
                se_inputs.append((i, block.depthwise(block.expand(h)).data, block.act.name))
            h = block(h)
    fused_total = pair_total = 0.0
    for i, xs, act in se_inputs:
        sv = rng.uniform(0, 1, xs.shape[:2]).astype(np.float32)

        def fused():
            xt, st_ = Tensor(xs, requires_grad=True), Tensor(sv, requires_grad=True)
            F.channel_scale_act(xt, st_, act).sum().backward()

        def pair():
            xt, st_ = Tensor(xs, requires_grad=True), Tensor(sv, requires_grad=True)
            F.activation(F.channel_scale(xt, st_), act).sum().backward()
        tf, tp = median_ms(fused, args.repeats), median_ms(pair, args.repeats)
        fused_total, pair_total = fused_total + tf, pair_total + tp
        rows.append((f"SE scale+{act} fwd+bwd, block {i} {xs.shape}", tf, tp))
    rows.append(("SE scale+act fwd+bwd, all SE blocks (sum)", fused_total, pair_total))

    # 2. whole training step and batch-1 inference, the model's ConvBNAct layers fused or not
    layers = [model.stem, model.head_conv] + [blk.expand for blk in model.blocks]
    X = rng.standard_normal((B, 9, 128)).astype(np.float32)
    y = rng.integers(0, 6, B)
    x1 = rng.standard_normal((1, 9, 128)).astype(np.float32)
    opt = AdamW(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(Tensor(X)), y).backward()
        opt.step()

    def infer():
        with no_grad():
            model(Tensor(x1))
    timings, skip = {}, mobilenet.FUSE_SKIP
    for label, bn_act, se_act in (("none", False, False), ("BN+act", True, False), ("SE+act", False, True),
                                  ("both", True, True)):
        for m in layers:                          # same children, same weights; only forward differs
            m.__class__ = ConvBNAct if bn_act else Sequential
        mobilenet.FUSE_SKIP = skip if se_act else ACTIVATIONS
        model.train()
        timings[("step", label)] = median_ms(step, args.repeats)
        model.eval()
        timings[("infer", label)] = median_ms(infer, args.repeats * 10, warmup=20)
    mobilenet.FUSE_SKIP = skip
    for label in ("BN+act", "SE+act", "both"):
        rows.append((f"training step, batch {B}, fused: {label}", timings[("step", label)], timings[("step", "none")]))
    for label in ("BN+act", "SE+act", "both"):
        rows.append((f"inference batch 1 (autograd, eval), fused: {label}", timings[("infer", label)],
                     timings[("infer", "none")]))

    # 3. depthwise + BN + act folded and compiled (tinysml.deploy) against the autograd eval path
    import tempfile
    from tinysml import io
    from tinysml.deploy import Predictor
    path = os.path.join(tempfile.mkdtemp(), "m.npz")
    io.save_model(path, model)
    p = Predictor.load(path)
    rows.append(("inference batch 1: deploy (conv+BN+act folded, one call)", median_ms(lambda: p.predict_proba(x1),
                 args.repeats * 10, warmup=20), timings[("infer", "both")]))

    print(f"\nfusions on har-student (9 x 128), batch {B}, numba backend, median of {args.repeats}")
    print(f"{'what':<64}{'fused ms':>10}{'unfused ms':>12}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<64}{a:>10.3f}{b:>12.3f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
