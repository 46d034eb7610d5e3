"""Why does a training step with dropout, replayed as a CUDA graph, end elsewhere than the eager step
on a GPU (issue 27; train.TrainStep runs such steps eagerly until this is understood)? Evidence only.

    python bench/gpu_dropout_probe.py [--steps 15]

Trains the har-student with an MLP head on fixed batches, step by step, in several variants, and
prints after every step the largest weight difference from the eager run with the same head, what
kind of step it was (eager, capture, replay), and whether the dropout masks drawn for it equal the
eager run's. The variants separate the suspects:

  eager again          is the eager step itself deterministic with dropout?
  graph                the step replayed (the guard in TrainStep bypassed)
  graph, synchronised  the same, the device synchronised after the masks are written and before
                       each launch (a race between the refill and the replay would vanish)
  graph, p = 0         the MLP head without dropout (is it the head rather than the masks?)

On a machine without a GPU only the eager rows run (the graph needs one).
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    args = p.parse_args(argv)

    from tinysml import cuda_graph as G
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.random import manual_seed
    from tinysml.train import TrainStep, cross_entropy_loss

    rng = np.random.default_rng(0)
    n = args.batch * 5
    y = rng.integers(0, 4, n)
    X = rng.standard_normal((n, 6, 128)).astype(np.float32) + y[:, None, None].astype(np.float32) * 0.3
    masks: list = []
    draw = G._draw

    def recorded_draw(*a):                       # every mask, eager or refilled before a replay
        out = draw(*a)
        masks.append(out.copy())                 # on the device: no synchronisation inside a step
        return out

    G._draw = recorded_draw
    capture = G.cupy_capture

    def synchronised_capture(fn, static):        # every launch waits for the refilled masks, and is waited for
        launch, outputs, keep_alive = capture(fn, static)
        import cupy as cp

        def synchronised():
            cp.cuda.Device().synchronize()
            launch()
            cp.cuda.Device().synchronize()
        return synchronised, outputs, keep_alive

    def train(dropout: float, graph: bool, synchronise: bool = False):
        head = {"kind": "mlp", "hidden": 32, "dropout": dropout}
        model = build_model(preset("har-student", 6, 128, 4, head=head), seed=0).to(args.device)
        opt = AdamW(model.parameters(), lr=2e-3)
        step = TrainStep(model, cross_entropy_loss(), opt, graph=False, batch_size=args.batch)
        if graph:                                 # what TrainStep builds, without its dropout guard
            step._model_state = G.state_watch(model)
            step.graphed = G.GraphedFunction(step._body, watch=step._watched,
                                             eligible=lambda arrays: len(arrays[0]) == args.batch,
                                             on_fallback=step._fallback)
        G.cupy_capture = synchronised_capture if synchronise else capture
        manual_seed(0)
        masks.clear()
        weights, kinds = [], []
        try:
            for i in range(args.steps):
                start = (i * args.batch) % n
                before = (step.graphed.captures, step.graphed.replays) if step.graphed else None
                step(X[start:start + args.batch], y[start:start + args.batch])
                if before is None:
                    kinds.append("eager")
                else:
                    c, r = step.graphed.captures - before[0], step.graphed.replays - before[1]
                    kinds.append("capture" if c else "replay" if r else "eager")
                weights.append(np.concatenate([np.asarray(a.get() if hasattr(a, "get") else a).ravel()
                                               for a in model.state_dict().values()]))
        finally:
            G.cupy_capture = capture
        return weights, kinds, [m.get() if hasattr(m, "get") else m for m in masks], step.epoch_loss()

    variants = [("eager again", 0.3, False, False)]
    if args.device == "cuda":
        variants += [("graph", 0.3, True, False), ("graph, synchronised", 0.3, True, True),
                     ("graph, p = 0", 0.0, True, False)]
    reference = {0.3: train(0.3, False), 0.0: train(0.0, False) if args.device == "cuda" else None}
    print(f"har-student, MLP head (hidden 32), batch {args.batch}, {args.steps} steps on {args.device}; "
          f"max |weight difference| from the eager run with the same dropout, per step")
    for name, dropout, graph, sync in variants:
        w_ref, _, m_ref, loss_ref = reference[dropout]
        w, kinds, m, loss = train(dropout, graph, sync)
        same_masks = len(m) == len(m_ref) and all(np.array_equal(a, b) for a, b in zip(m, m_ref))
        print(f"\n{name}: masks drawn {len(m)} (eager {len(m_ref)}), all equal: {same_masks}; "
              f"mean loss {loss:.6f} vs {loss_ref:.6f}")
        first = None
        for i, (a, b, kind) in enumerate(zip(w, w_ref, kinds)):
            diff = float(np.abs(a - b).max())
            if diff > 0 and first is None:
                first = i + 1
            print(f"  step {i + 1:2d} {kind:8s} {diff:.3e}")
        print(f"  first step that differs: {first if first else 'none (bitwise equal)'}")
    G._draw = draw
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
