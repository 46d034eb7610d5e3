"""Where a replayed training step's GPU time goes: every unit of the network (stem, each bottleneck,
head conv and pooling, classifier and loss, AdamW over all parameters), forward and backward, as
its own CUDA graph, replayed back to back between CUDA events, for tinysml and for torch (its own
captured graphs of the twin, ``tinysml.torch_twin``). Evidence for issue 27's "within 1.5x of
torch's captured step": a replayed graph has no host time, so each row is kernel time, and the
ratio column says which units to work on.

    python bench/gpu_units.py [--batch 64] [--presets har-student har-teacher]
    python bench/gpu_units.py --device cpu       # the plumbing without a GPU: eager, host timers

Each unit's input is what the units before it produce (one eager forward), its upstream gradient
a fixed random array; gradients are allocated afresh by every backward, as in a training step.
"Functions" counts tinysml's autograd Function calls of the unit (forward and backward), a proxy
for its kernel launches. The last rows: the units summed, and the whole step replayed (the
difference is what the units' boundaries add or hide).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import network_options  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    network_options(p)
    p.add_argument("--replays", type=int, default=100)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    import torch
    import tinysml
    if gpu:
        tinysml.set_backend("cupy")
    for name in args.presets:
        print(table(name, args, gpu, torch))
    return 0


def table(name, args, gpu, torch) -> str:
    from tinysml import Tensor
    from tinysml import cuda_graph as G
    from tinysml import functions as F
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.tensor import Function
    from tinysml.torch_twin import build_torch_twin
    from tinysml.train import TrainStep

    B, C, L, K = args.batch, args.channels, args.length, args.classes
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((B, C, L)).astype(np.float32), rng.integers(0, K, B)
    model = build_model(preset(name, C, L, K), seed=0)
    twin = build_torch_twin(model)
    dev = "cuda" if gpu else "cpu"
    model.to(dev), twin.to(dev)
    model.train(), twin.train()
    xp = __import__("cupy") if gpu else np

    def ours_units():
        """(name, fn(Tensor) -> Tensor, input array, needs the input's gradient)."""
        units, h = [], xp.asarray(X)
        step = [("stem", model.stem, False)] + [(f"block {i}", b, True) for i, b in enumerate(model.blocks)]
        step += [("head conv + pool", lambda t: F.hardswish(F.global_avg_pool(model.head_conv(t))), True)]
        for unit_name, fn, grad in step:
            units.append((unit_name, fn, h, grad))
            h = fn(Tensor(h)).data
        labels = xp.asarray(Y)
        units.append(("classifier + loss", lambda t: F.cross_entropy(model.classifier(t), labels), h, True))
        return units

    def twin_units():
        units, h = [], torch.from_numpy(X).to(dev)
        step = [twin.stem] + list(twin.blocks) + [lambda t: torch.nn.functional.hardswish(twin.head_conv(t).mean(2))]
        for fn in step:
            units.append((fn, h))
            with torch.no_grad():
                h = fn(h)
        labels = torch.from_numpy(Y).to(dev)
        units.append((lambda t: torch.nn.functional.cross_entropy(twin.classifier.fc(t), labels), h))
        return units

    rows = []
    for (unit_name, fn, h, needs_grad), (tfn, th) in zip(ours_units(), twin_units()):
        out_shape = fn(Tensor(h)).shape
        g = None if out_shape == () else xp.asarray(rng.standard_normal(out_shape).astype(np.float32))

        def body(x, fn=fn, g=g, needs_grad=needs_grad):
            model.zero_grad()
            out = fn(Tensor(x, requires_grad=needs_grad))
            out.backward(g)

        calls = count_functions(Function, lambda: body(h))
        ours = replay_ms(G, body, [h], gpu, args.replays)
        tg = None if g is None else torch.from_numpy(g.get() if gpu else g).to(dev)
        theirs = torch_replay_ms(torch, twin, tfn, th, tg, needs_grad, gpu, args.replays)
        rows.append((unit_name, ours, theirs, calls))

    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for q in model.parameters():
        q.grad = xp.asarray(rng.standard_normal(q.data.shape).astype(np.float32))
    opt.step()                                                     # state created outside the graph
    rows.append(("AdamW, all parameters", replay_ms(G, lambda x: opt.step(), [xp.zeros(1, np.float32)], gpu,
                                                    args.replays, sync=opt.sync_device_scalars),
                 torch_adamw_ms(torch, twin, gpu, args.replays), len(model.parameters())))

    step = TrainStep(model, lambda m, x, y: F.cross_entropy(m(x), y), AdamW(model.parameters(), lr=1e-3),
                     graph=gpu, batch_size=B)
    whole = step_ms(step, X, Y, gpu, args.replays)
    lines = [f"{name}, batch {B}, {C} x {L} windows, {K} classes, {'CUDA graphs' if gpu else 'eager, host timers'}: "
             "ms per replay (forward + backward)", "",
             f"{'unit':<26}{'tinysml':>10}{'torch':>10}{'ratio':>8}{'Functions':>11}"]
    for unit_name, ours, theirs, calls in rows:
        lines.append(f"{unit_name:<26}{ours:>10.3f}{theirs:>10.3f}{ours / theirs:>8.2f}{calls:>11d}")
    total_ours, total_theirs = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines += [f"{'units summed':<26}{total_ours:>10.3f}{total_theirs:>10.3f}{total_ours / total_theirs:>8.2f}",
              f"{'whole step replayed':<26}{whole:>10.3f}", ""]
    return "\n".join(lines)


def count_functions(Function, run) -> int:
    """How many autograd Functions one run applies forward and backward (a proxy for launches)."""
    calls = {"n": 0}
    apply = Function.apply.__func__

    def counted(cls, *a, **kw):
        calls["n"] += 1
        out = apply(cls, *a, **kw)
        backward = out._ctx.__class__.backward if out._ctx is not None else None
        if backward is not None and out.requires_grad:
            calls["n"] += 1                                      # its backward, once the output needs a gradient
        return out
    Function.apply = classmethod(counted)
    try:
        run()
    finally:
        Function.apply = classmethod(apply)
    return calls["n"]


def timed(launch, gpu, n) -> float:
    """ms per call of ``launch`` run ``n`` times back to back: between CUDA events on a GPU (device
    time), by the host clock elsewhere; the best of three rounds."""
    best = float("inf")
    for _ in range(3):
        if gpu:
            import cupy as cp
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            for _ in range(n):
                launch()
            end.record()
            end.synchronize()
            best = min(best, cp.cuda.get_elapsed_time(start, end) / n)
        else:
            t0 = time.perf_counter()
            for _ in range(n):
                launch()
            best = min(best, (time.perf_counter() - t0) * 1e3 / n)
    return best


def replay_ms(G, body, arrays, gpu, n, sync=None) -> float:
    """``body(*arrays)`` captured once (after the warm-up) and replayed; eagerly on the CPU."""
    graphed = G.GraphedFunction(body, capture=None if gpu else (lambda fn, static: ((lambda: fn(*static)), None, ())))
    for _ in range(G.WARMUP + 1):
        if sync:
            sync()
        graphed(*arrays)
    (rec,) = graphed.graphs.values() if graphed.graphs else (None,)
    if rec is None:
        raise RuntimeError(f"the unit was not captured: {graphed.failed}")
    return timed(rec.launch, gpu, max(1, n // (1 if gpu else 10)))


def torch_replay_ms(torch, twin, fn, x, g, needs_grad, gpu, n) -> float:
    """The same unit of the twin, captured as a torch.cuda.CUDAGraph (eager on the CPU)."""
    static = x.clone().requires_grad_(needs_grad)

    def body():
        twin.zero_grad(set_to_none=True)
        static.grad = None
        out = fn(static)
        out.backward(g)
    if not gpu:
        return timed(body, gpu, max(1, n // 10))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    twin.zero_grad(set_to_none=True)
    static.grad = None
    with torch.cuda.graph(graph):
        out = fn(static)
        out.backward(g)
    return timed(graph.replay, gpu, n)


def torch_adamw_ms(torch, twin, gpu, n) -> float:
    """torch's AdamW over the twin's parameters (capturable, as a graph on the GPU)."""
    for q in twin.parameters():
        q.grad = torch.randn_like(q)
    lr = torch.tensor(1e-3, device="cuda") if gpu else 1e-3
    opt = torch.optim.AdamW(twin.parameters(), lr=lr, weight_decay=1e-2, capturable=gpu)
    if not gpu:
        return timed(opt.step, gpu, max(1, n // 10))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    return timed(graph.replay, gpu, n)


def step_ms(step, X, Y, gpu, n) -> float:
    """The whole training step replayed (``TrainStep``'s graph); the eager step on the CPU."""
    for _ in range(4):
        step(X, Y)
    graphed = step.graphed
    if gpu and graphed is not None and graphed.graphs:
        (rec,) = graphed.graphs.values()
        return timed(rec.launch, gpu, n)
    return timed(lambda: step(X, Y), gpu, max(1, n // 10))


if __name__ == "__main__":
    raise SystemExit(main())
