"""Serial twins against Numba's parallel loop on one thread, kernel by kernel.

    python bench/twins.py [--preset har-student] [--repeats 3000]

Records every kernel launch of a batch-1 eval forward of the preset, of a training step
(forward, backward and AdamW) at batch 2, and of every activation on (2, 72, 32) in float32 and
float64, all small enough that every launch runs on the calling
thread (``kernels/cpu_runtime.py``: ``SMALL_WORK``). Each launch is then replayed two ways: the
``parallel=True`` kernel with Numba set to one thread, and its serial twin (the same source
without ``parallel``). It prints both times in microseconds (best of 5 medians), whether the two
wrote the same bits, and whether the kernel is marked ``serial_twin`` (the ones that run as their
twin). A kernel is worth marking where its twin is faster on every shape it runs on.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402

import numpy as np  # noqa: E402


def record(preset_name: str):
    """[(kernel, args)] of every launch in a batch-1 eval forward, a batch-2 training step and the
    activations; the forward's launches alone; and a call that runs that forward."""
    import tinysml
    from tinysml import Tensor, no_grad
    from tinysml import functions as F
    from tinysml.kernels import cpu, cpu_runtime
    from tinysml.kernels.reference import ACTIVATIONS
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW

    tinysml.set_backend("numba")
    model = build_model(preset(preset_name, 9, 128, 6), seed=0)
    rng = np.random.default_rng(0)
    x1 = Tensor(rng.standard_normal((1, 9, 128)).astype(np.float32))
    x2 = Tensor(rng.standard_normal((2, 9, 128)).astype(np.float32))
    launches, launch = [], cpu_runtime._launch

    def recording(kernel, work, *args):
        launches.append((kernel, args))
        launch(kernel, work, *args)

    modules = [m for name, m in sys.modules.items() if name.startswith("tinysml.kernels.cpu")]
    for m in modules:
        if getattr(m, "_launch", None) is launch:
            m._launch = recording
    try:
        model.eval()
        with no_grad():
            model(x1)
        forward = len(launches)
        model.train()
        F.cross_entropy(model(x2), np.array([0, 1])).backward()
        AdamW(model.parameters(), lr=1e-3).step()
        for dtype in (np.float32, np.float64):          # every activation, whether the preset uses it or not
            a = rng.standard_normal((2, 72, 32)).astype(dtype)
            for name in ACTIVATIONS:
                cpu.act_bwd(name, a, cpu.act_fwd(name, a))
    finally:
        for m in modules:
            if getattr(m, "_launch", None) is recording:
                m._launch = launch
    def infer():
        with no_grad():
            model(x1)

    model.eval()
    return launches, launches[:forward], infer


def main(argv=None):
    parser = argparse.ArgumentParser(description="serial twins vs parallel kernels on one thread")
    parser.add_argument("--preset", default="har-student")
    parser.add_argument("--repeats", type=int, default=3000)
    args = parser.parse_args(argv)

    import numba
    from tinysml.kernels import cpu_runtime

    launches, forward_launches, infer = record(args.preset)
    marked = set(cpu_runtime._TWINS)

    def kernels_only():                                   # the forward's launches as _launch runs them
        for kernel, kargs in forward_launches:
            (cpu_runtime._TWINS.get(kernel) or kernel)(*kargs)

    whole = min(median_ms(infer, args.repeats // 3) for _ in range(5)) * 1e3
    numba.set_num_threads(1)
    kernels = min(median_ms(kernels_only, args.repeats // 3) for _ in range(5)) * 1e3
    rows, twins = defaultdict(list), {}
    for kernel, kargs in launches:
        twin = twins.get(kernel) or twins.setdefault(kernel, cpu_runtime.serial_compile(kernel))
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in kargs]
        kernel(*kargs)
        twin(*copies)
        same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(kargs, copies) if isinstance(a, np.ndarray))
        par = min(median_ms(lambda: kernel(*kargs), args.repeats) for _ in range(5)) * 1e3
        ser = min(median_ms(lambda: twin(*kargs), args.repeats) for _ in range(5)) * 1e3
        shape = next(tuple(a.shape) for a in kargs if isinstance(a, np.ndarray))
        rows[kernel].append((shape, par, ser, same))

    print(f"{args.preset}, batch-1 eval forward under no_grad: {whole:.0f} us; its {len(forward_launches)} kernel "
          f"launches back to back (twins where marked): {kernels:.0f} us; the rest (the Functions' wrappers, the "
          f"modules): {whole - kernels:.0f} us")
    print("\nEvery launch of that forward, of a batch-2 training step and of the activations, on one thread:")
    print(f"{'kernel':<25}{'marked':>7}{'launches':>9}{'parallel us':>13}{'twin us':>9}{'twin faster':>13}{'same bits':>11}")
    for kernel, r in sorted(rows.items(), key=lambda kv: kv[0].py_func.__name__):
        par, ser = sum(p for _, p, _, _ in r), sum(s for _, _, s, _ in r)
        faster = sum(s < p for _, p, s, _ in r)
        print(f"{kernel.py_func.__name__:<25}{'yes' if kernel in marked else '':>7}{len(r):>9}"
              f"{par:>13.1f}{ser:>9.1f}{f'{faster}/{len(r)}':>13}{str(all(s for *_, s in r)):>11}")


if __name__ == "__main__":
    main()
