"""tinysml against PyTorch, side by side in one process, on the HAR shapes.

    python bench/vs_torch.py [--batch 64] [--channels 9] [--length 128] [--threads 2] [--repeats 30]
    python bench/vs_torch.py --device cuda [--batch 1024]    # CuPy backend vs torch CUDA, GB/s vs the device


Builds the small student (``har-student``) in tinysml and its PyTorch twin with identical weights,
checks that their outputs agree, then times, with the same number of threads:
  * every depthwise and pointwise convolution of the student, forward and backward (PyTorch's
    ``convolution_backward``, the kernel its autograd calls), with GB/s or GFLOP/s;
  * one full training step (forward, cross-entropy, backward, AdamW);
  * inference at batch 1 through the autograd path (tinysml) and eager mode (PyTorch): the
    training model in eval mode under ``no_grad`` on both sides (tinysml's network then runs its
    modules' ``infer``: the same Functions' forwards on arrays, no Tensors, no graph);
  the last two in --rounds alternating rounds, each side keeping its best median.
Ratios are tinysml time / PyTorch time (below 1: tinysml is faster). The machine's measured floors
(measured on the reference machine): ~200 GFLOP/s float32 matmul, 28-34 GB/s DRAM, 130-180 GB/s L3.

The script re-executes itself once with glibc malloc tunables that give PyTorch a fair allocator
(fresh mmaps page-fault at ~2 us a page on this machine); tinysml's Numba backend sets the same
behaviour through mallopt.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best_of_rounds, blas_kernels, median_ms, same_allocator_for_everyone  # noqa: E402

if __name__ == "__main__":
    same_allocator_for_everyone()

import numpy as np  # noqa: E402




def row(table, name, ours_ms, torch_ms, work=None, unit=""):
    rate = f"{work / (ours_ms * 1e-3) / 1e9:8.1f} {unit}" if work else ""
    table.append((name, ours_ms, torch_ms, ours_ms / torch_ms, rate))


def print_table(title, table):
    print(f"\n{title}")
    print(f"{'what':<44}{'tinysml ms':>11}{'torch ms':>10}{'ratio':>8}   tinysml rate")
    for name, a, b, r, rate in table:
        print(f"{name:<44}{a:>11.3f}{b:>10.3f}{r:>8.2f}   {rate}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="tinysml vs PyTorch CPU")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=9)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--preset", default="har-student")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--backend", default="numba", help="CPU backend (numba | numpy); --device cuda uses cupy")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: tinysml's CuPy backend against torch CUDA (when this torch has CUDA)")
    parser.add_argument("--epochs", action="store_true", help="also whole training epochs on real data "
                                                             "(bench/epochs.py: har-teacher, har-student, realworld-student)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the epoch timings (median), and of the step and batch-1 "
                             "timings (best)")
    args = parser.parse_args(argv)

    import torch
    import tinysml
    from tinysml import Tensor, no_grad
    from tinysml import functions as F
    from tinysml.backend import kernels_for
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.torch_twin import build_torch_twin

    torch.set_num_threads(args.threads)
    if args.device == "cuda":                  # arrays on the GPU, every timed call synchronised
        import cupy as cp
        args.backend = "cupy"
        dev, host, sync = cp.asarray, cp.asnumpy, cp.cuda.Device().synchronize
        tdev = "cuda" if torch.cuda.is_available() else None
        if tdev is None:
            print("(this torch has no CUDA: tinysml's times only, no ratios)")
    else:
        dev, host, sync, tdev = (lambda a: a), (lambda a: a), (lambda: None), "cpu"
    tinysml.set_backend(args.backend)
    if args.backend == "numba":
        import numba
        numba.set_num_threads(args.threads)
    K = kernels_for(dev(np.zeros(1, np.float32)))

    def t_ours(fn, repeats=args.repeats):
        return median_ms(lambda: (fn(), sync()), repeats)

    def t_torch(fn, repeats=args.repeats):
        if tdev is None:
            return float("nan")
        tsync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        return median_ms(lambda: (fn(), tsync()), repeats)

    def T(a):                                  # a NumPy array as a torch tensor on the peer's device
        return torch.from_numpy(np.ascontiguousarray(a)).to(tdev or "cpu")

    B, C, L = args.batch, args.channels, args.length
    model = build_model(preset(args.preset, C, L, args.classes), seed=0)
    twin = build_torch_twin(model).to(tdev or "cpu")
    model.to(args.device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, C, L)).astype(np.float32)
    y = rng.integers(0, args.classes, B)
    # agreement first: train-mode and eval-mode outputs
    diff_train = np.abs(host(model(Tensor(dev(x))).data) - twin(T(x)).detach().cpu().numpy()).max()
    model.eval(), twin.eval()
    with no_grad(), torch.no_grad():
        diff_eval = np.abs(host(model(Tensor(dev(x))).data) - twin(T(x)).cpu().numpy()).max()
    model.train(), twin.train()
    where = f"{args.threads} threads" if args.device == "cpu" else _gpu_name()
    print(f"{args.preset} on ({B}, {C}, {L}), backend {args.backend}, {where}; "
          f"max |logit difference| train {diff_train:.2e}, eval {diff_eval:.2e}")
    if args.device == "cpu":
        print(blas_kernels())
    assert diff_train < 1e-3 and diff_eval < 1e-3, "tinysml and torch disagree"

    # ------------------------------------------------------------------ kernels of every layer
    kernels, totals = [], {"dw fwd": [0, 0], "dw bwd": [0, 0], "pw fwd": [0, 0], "pw bwd": [0, 0]}
    L_in = model.stem[0].output_length(L)
    seen = set()
    for i, block in enumerate(model.blocks):
        dw = block.depthwise[0]
        E, k, s, p = dw.in_channels, dw.kernel_size, dw.stride, dw.padding
        L_out = dw.output_length(L_in)
        xi = rng.standard_normal((B, E, L_in)).astype(np.float32)
        wi = rng.standard_normal((E, k)).astype(np.float32)
        gyi = rng.standard_normal((B, E, L_out)).astype(np.float32)
        tx, tw, tgy = T(xi), T(wi[:, None, :]), T(gyi)
        nbytes = 4 * (xi.size + gyi.size)
        xi, wi, gyi = dev(xi), dev(wi), dev(gyi)
        f_ours = t_ours(lambda: K.dw_conv1d_fwd(xi, wi, None, s, p, 1))
        f_torch = t_torch(lambda: torch.nn.functional.conv1d(tx, tw, None, s, p, 1, E))
        b_ours = t_ours(lambda: K.dw_conv1d_bwd(gyi, xi, wi, s, p, 1))
        b_torch = t_torch(lambda: torch.ops.aten.convolution_backward(
            tgy, tx, tw, None, [s], [p], [1], False, [0], E, [True, True, False]))
        key = ("dw", E, L_in, k, s)
        if key not in seen:
            seen.add(key)
            row(kernels, f"block {i} depthwise fwd ({B},{E},{L_in}) k{k} s{s}", f_ours, f_torch, nbytes, "GB/s")
            row(kernels, f"block {i} depthwise bwd", b_ours, b_torch, 2 * nbytes, "GB/s")
        totals["dw fwd"][0] += f_ours; totals["dw fwd"][1] += f_torch
        totals["dw bwd"][0] += b_ours; totals["dw bwd"][1] += b_torch
        for name, conv, Lp in (("expand", block.expand[0], L_in), ("project", block.project[0], L_out)):
            Ci, Co = conv.in_channels, conv.out_channels
            xi = rng.standard_normal((B, Ci, Lp)).astype(np.float32)
            wi = rng.standard_normal((Co, Ci)).astype(np.float32)
            gyi = rng.standard_normal((B, Co, Lp)).astype(np.float32)
            tx, tw, tgy = T(xi), T(wi[:, :, None]), T(gyi)
            flops = 2 * B * Ci * Co * Lp
            xi, wi, gyi = dev(xi), dev(wi), dev(gyi)
            f_ours = t_ours(lambda: K.pw_conv1d_fwd(xi, wi, None))
            f_torch = t_torch(lambda: torch.nn.functional.conv1d(tx, tw))
            b_ours = t_ours(lambda: K.pw_conv1d_bwd(gyi, xi, wi, bias_grad=False))   # as torch's mask
            b_torch = t_torch(lambda: torch.ops.aten.convolution_backward(
                tgy, tx, tw, None, [1], [0], [1], False, [0], 1, [True, True, False]))
            row(kernels, f"block {i} {name} fwd ({B},{Ci},{Lp})->{Co}", f_ours, f_torch, flops, "GFLOP/s")
            row(kernels, f"block {i} {name} bwd", b_ours, b_torch, 2 * flops, "GFLOP/s")
            totals["pw fwd"][0] += f_ours; totals["pw fwd"][1] += f_torch
            totals["pw bwd"][0] += b_ours; totals["pw bwd"][1] += b_torch
        L_in = L_out
    print_table("Kernels, per layer of the student", kernels)
    summary = []
    for name, (a, b) in totals.items():
        row(summary, f"all {name} layers (sum)", a, b)

    # ------------------------------------------------------------------ a whole training step
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    topt = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=1e-2)
    xt, yt = T(x), T(y)
    xs, ys = Tensor(dev(x)), dev(y)

    def step_ours():
        opt.zero_grad()
        F.cross_entropy(model(xs), ys).backward()
        opt.step()

    def step_torch():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(twin(xt), yt).backward()
        topt.step()

    def both(ours, theirs, repeats=args.repeats):
        """(ours, theirs) in alternating rounds, each side's best (``timing.best_of_rounds``)."""
        best = best_of_rounds({"ours": lambda: t_ours(ours, repeats), "torch": lambda: t_torch(theirs, repeats)},
                              args.rounds)
        return best["ours"], best["torch"]

    row(summary, f"training step, batch {B} (fwd+bwd+AdamW)", *both(step_ours, step_torch))
    model.eval(), twin.eval()
    x1 = x[:1].copy()
    x1s, x1t = Tensor(dev(x1)), T(x1)

    def infer_ours():
        with no_grad():
            model(x1s)

    def infer_torch():
        with torch.no_grad():
            twin(x1t)

    row(summary, "inference, batch 1 (autograd path / eager)", *both(infer_ours, infer_torch, args.repeats * 3))
    print_table("Totals", summary)
    targets = []
    if args.device == "cpu":
        infer = next(r for r in summary if r[0].startswith("inference, batch 1"))
        targets.append(("autograd inference, batch 1 <= 0.5x torch eager", f"{infer[3]:.2f}x", infer[3] <= 0.5))
        if args.epochs:
            from epochs import report
            targets += report(args.rounds)
    if targets:
        print("\ntargets")
        for name, value, ok in targets:
            print(f"  {'met' if ok else 'MISSED':<7}{name}: {value}")
    if args.device == "cuda":
        _print_bandwidth(K, model, B, L, rng)


def _print_bandwidth(K, model, B, L, rng) -> None:
    """The depthwise forward kernels' DRAM throughput: 50 launches back to back between two CUDA
    events, so the host's per-call overhead (allocation, argument packing, launch, sync), which
    the per-call timings above include, overlaps the GPU's work. Bytes: read x, write y."""
    import cupy as cp
    peak, best, where = _gpu_bandwidth_gbs(), 0.0, ""
    L_in = model.stem[0].output_length(L)
    for i, block in enumerate(model.blocks):
        dw = block.depthwise[0]
        E, k, s, p = dw.in_channels, dw.kernel_size, dw.stride, dw.padding
        x = cp.asarray(rng.standard_normal((B, E, L_in)).astype(np.float32))
        w = cp.asarray(rng.standard_normal((E, k)).astype(np.float32))
        y = K.dw_conv1d_fwd(x, w, None, s, p, 1)
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(50):
            K.dw_conv1d_fwd(x, w, None, s, p, 1)
        stop.record()
        stop.synchronize()
        gbs = 50 * (x.nbytes + y.nbytes) / (cp.cuda.get_elapsed_time(start, stop) * 1e-3) / 1e9
        if gbs > best:
            best, where = gbs, f"block {i} ({B},{E},{L_in}) k{k} s{s}"
        L_in = dw.output_length(L_in)
    print(f"\ndepthwise kernels: best {best:.0f} GB/s = {100 * best / peak:.0f}% of the device's {peak:.0f} GB/s "
          f"({where}, forward, 50 launches back to back; use --batch 1024 or more for the bandwidth target)")


def _gpu_name() -> str:
    import cupy as cp
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _gpu_bandwidth_gbs() -> float:
    """Peak DRAM bandwidth: 2 x memory clock x bus width, or the datasheet figure where CUDA 13's
    device properties no longer report the clock."""
    import cupy as cp
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    clock_khz, bus_bits = props.get("memoryClockRate", 0), props.get("memoryBusWidth", 0)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    name = _gpu_name()
    for key, gbs in (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100", 2039.0), ("Orin", 204.8)):
        if key in name:
            return gbs
    raise RuntimeError(f"unknown peak bandwidth for {name!r}")


if __name__ == "__main__":
    main()
