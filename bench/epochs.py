"""Whole training epochs, tinysml against PyTorch on identical weights and batches.

    python bench/vs_torch.py --epochs [--rounds 3]          # the section of vs_torch.py this module prints

``har-teacher`` and ``har-student`` train on real data: the uci-har training windows of one seed's
split (scaled as the pipeline scales them), batch 64, AdamW, one epoch = every batch once. The
released ``realworld-student`` (52 M parameters) has no dataset here (RealWorld-HAR is not
distributed through a package registry), so it trains on random windows of its real shape,
63 x 225, batch 32, for a fixed number of steps. Both sides alternate, round by round, and the
median epoch of each is compared: tinysml with its Numba backend, PyTorch with the same thread
count and allocator settings.
"""
from __future__ import annotations

import time

import numpy as np

TARGETS = {"har-teacher": 0.7, "har-student": 0.6, "realworld-student": 1.0}


def real_data(seed: int = 0):
    """(X, y) of uci-har's training part for ``seed``, scaled, and the number of classes."""
    from tinysml.data import load, prepare
    p = prepare(load("uci-har"), 0.2, seed, "robust")
    return p.train[0], p.train[1], p.dataset.num_classes


def one_epoch_each(preset_name, X, y, num_classes, batch, rounds, steps=None):
    """Median seconds of one epoch (or ``steps`` steps) for tinysml and for torch, alternating."""
    import torch
    from tinysml import Tensor
    from tinysml import functions as F
    from tinysml.data import iterate_batches
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    from tinysml.torch_twin import build_torch_twin
    C, L = X.shape[1:]
    model = build_model(preset(preset_name, C, L, num_classes), seed=0)
    twin = build_torch_twin(model)
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    topt = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=1e-2)
    batches = list(iterate_batches(X, y, batch, np.random.default_rng(0)))[:steps]
    tbatches = [(torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(yb)) for xb, yb in batches]

    def ours():
        for xb, yb in batches:
            opt.zero_grad()
            F.cross_entropy(model(Tensor(xb)), yb).backward()
            opt.step()

    def theirs():
        for xb, yb in tbatches:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(twin(xb), yb).backward()
            topt.step()

    times = {"tinysml": [], "torch": []}
    for _ in range(rounds):
        for name, fn in (("tinysml", ours), ("torch", theirs)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return float(np.median(times["tinysml"])), float(np.median(times["torch"])), len(batches)


def report(rounds: int = 3, realworld_steps: int = 4) -> list:
    """Print the epoch table; returns (target name, value, met) rows."""
    X, y, K = real_data()
    rows = []
    print(f"\nTraining epochs (median of {rounds} alternating rounds; AdamW; identical weights and batches)")
    print(f"{'what':<58}{'tinysml s':>10}{'torch s':>9}{'ratio':>8}")
    cases = [("har-teacher", X, y, K, 64, None, "uci-har train windows"),
             ("har-student", X, y, K, 64, None, "uci-har train windows")]
    rng = np.random.default_rng(0)
    Xr = rng.standard_normal((32 * realworld_steps, 63, 225)).astype(np.float32)
    cases.append(("realworld-student", Xr, rng.integers(0, 8, len(Xr)), 8, 32, realworld_steps,
                  "random 63 x 225 windows"))
    for name, Xc, yc, k, batch, steps, what in cases:
        ours, theirs, n = one_epoch_each(name, Xc, yc, k, batch, rounds, steps)
        label = f"{name}, {what}, batch {batch}, {n} steps"
        print(f"{label:<58}{ours:>10.2f}{theirs:>9.2f}{ours / theirs:>8.2f}")
        rows.append((f"{name} epoch <= {TARGETS[name]}x torch", f"{ours / theirs:.2f}x", ours / theirs <= TARGETS[name]))
    return rows
