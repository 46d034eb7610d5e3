"""Where a training step's time goes: per autograd Function (forward and backward), the loss, the
optimiser and the rest (graph bookkeeping), on the CPU or the GPU.

    python bench/step_profile.py [--preset har-student] [--batch 64] [--device cpu|cuda] [--steps 20]

Every Function's forward and backward is wrapped with a timer; on the GPU each is followed by a
device synchronisation, so a row is the time until its kernels finished (the sum of the rows is
therefore a little more than an unprofiled step, which is printed first for comparison). The
optimiser's step and zero_grad are timed the same way. A row's calls are per step.
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="har-student")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=9)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--array-code", action="store_true",
                        help="cuda: the reference array code instead of the fused batch-norm and AdamW kernels "
                             "(what they save)")
    args = parser.parse_args(argv)

    from tinysml import Tensor
    from tinysml import functions as F
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.tensor import Function

    if args.device == "cuda":
        import cupy as cp
        dev, sync = cp.asarray, cp.cuda.Device().synchronize
        if args.array_code:
            from tinysml.kernels import cuda, reference
            for name in ("bn_act_train_fwd", "bn_act_bwd", "bn_train_fwd", "bn_bwd", "adamw_step"):
                setattr(cuda, name, getattr(reference, name))
    else:
        dev, sync = (lambda a: a), (lambda: None)
    model = build_model(preset(args.preset, args.channels, args.length, args.classes), seed=0).to(args.device)
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    rng = np.random.default_rng(0)
    x = Tensor(dev(rng.standard_normal((args.batch, args.channels, args.length)).astype(np.float32)))
    y = dev(rng.integers(0, args.classes, args.batch))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    plain = (time.perf_counter() - t0) / args.steps * 1e3

    times, calls = collections.defaultdict(float), collections.Counter()

    def timed(name, fn):
        def wrapper(*a, **k):
            sync()
            t = time.perf_counter()
            out = fn(*a, **k)
            sync()
            times[name] += time.perf_counter() - t
            calls[name] += 1
            return out
        return wrapper

    for cls in set(_subclasses(Function)):
        for part in ("forward", "backward"):
            if part in vars(cls):
                setattr(cls, part, staticmethod(timed(f"{cls.__name__}.{part}", vars(cls)[part].__func__)))
    opt.step, opt.zero_grad = timed("optimizer.step (AdamW)", opt.step), timed("optimizer.zero_grad", opt.zero_grad)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    profiled = (time.perf_counter() - t0) / args.steps * 1e3
    where = args.device if args.device == "cpu" else _gpu_name()
    where += ", array code for batch norm and AdamW" if args.array_code else ""
    print(f"{args.preset}, batch {args.batch} on ({args.channels}, {args.length}), {where}: training step "
          f"{plain:.2f} ms unprofiled, {profiled:.2f} ms profiled (per step, {args.steps} steps)")
    if args.device == "cpu":
        from timing import blas_kernels
        print(blas_kernels())
    print(f"{'what':<44}{'calls':>7}{'ms':>9}{'share':>8}")
    total = sum(times.values())
    for name, t in sorted(times.items(), key=lambda kv: -kv[1]):
        ms = t / args.steps * 1e3
        print(f"{name:<44}{calls[name] // args.steps:>7}{ms:>9.3f}{100 * ms / profiled:>7.1f}%")
    rest = profiled - total / args.steps * 1e3
    print(f"{'rest (graph, Tensor wrapping, Python)':<44}{'':>7}{rest:>9.3f}{100 * rest / profiled:>7.1f}%")


def _gpu_name() -> str:
    import cupy as cp
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


if __name__ == "__main__":
    main()
