"""Auto-search over heterogeneous classifier heads (docs/algorithm.md, section 5).

The search space is data: head kind -> hyper-parameter -> values, e.g.

    {"linear": {"dropout": [0.0, 0.2]},
     "mlp": {"hidden": [64, 128], "dropout": [0.0, 0.2]},
     "hopfield": {"patterns": [16, 32], "dim": [32, 64]},
     "mixture": {"heads": [[{"kind": "hopfield", "patterns": 16, "dim": 32}, {"kind": "linear"}]]}}

``candidates(space)`` expands the grid (or ``sample(space, budget, seed)`` draws from it). The
distilled student's pooled features are computed once for the training and validation windows;
every candidate head is then trained on those arrays alone (a pure job: arrays in, scores and
weights out), optionally with the teacher's soft targets, and scored by validation macro-F1
(ties: fewer parameters, then the order of the space). Jobs run on any
``concurrent.futures.Executor``: a local process pool by default, a dask.distributed cluster with
``Client(address).get_executor()``. A candidate that raises is reported with its error; the search
goes on. Test labels are never an input.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import itertools
import os
import time
from dataclasses import dataclass, field

import numpy as np

DEFAULT_SPACE = {
    "linear": {"dropout": [0.0, 0.2]},
    "mlp": {"hidden": [64, 128], "dropout": [0.0, 0.2]},
    "hopfield": {"patterns": [16, 32], "dim": [32, 64]},
    "mixture": {"heads": [[{"kind": "hopfield", "patterns": 16, "dim": 32}, {"kind": "linear"}],
                          [{"kind": "hopfield", "patterns": 32, "dim": 64}, {"kind": "mlp", "hidden": 64}]]},
}


def candidates(space: dict) -> list:
    """Every head spec of the grid, in a fixed order (kinds as listed, then itertools.product)."""
    specs = []
    for kind, grid in space.items():
        names = list(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            specs.append({"kind": kind, **dict(zip(names, values))})
    return specs


def sample(space: dict, budget: int, seed: int = 0) -> list:
    """``budget`` distinct specs drawn at random from the grid (all of them if it is smaller)."""
    grid = candidates(space)
    if budget >= len(grid):
        return grid
    idx = np.sort(np.random.default_rng(seed).choice(len(grid), size=budget, replace=False))
    return [grid[i] for i in idx]


def compute_features(model, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The pooled features h (n, d) of ``model`` in eval mode, without a graph."""
    from .train import predict_batched
    return predict_batched(model, X, batch_size, output=model.features)


@dataclass
class Job:
    """Everything one candidate needs (plain arrays: cheap to send to a worker)."""
    index: int
    spec: dict
    h_train: np.ndarray
    y_train: np.ndarray
    h_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    soft_train: np.ndarray | None = None     # teacher probabilities for the training windows
    kd_weight: float = 0.5
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0


def train_candidate(job: Job) -> dict:
    """Train one head on cached features with AdamW (weight decay 1e-2): each epoch's mini-batches
    in the order ``manual_seed(seed, index, epoch)`` draws, on cross-entropy, or (1 - w) CE(y) +
    w CE(teacher probabilities) with soft targets. The state of its best validation epoch (macro-F1;
    ties: the later epoch) is returned; a non-finite loss ends it as a failure."""
    from . import functions as F
    from .metrics import accuracy, macro_f1
    from .models.heads import build_head
    from .optim import AdamW
    from .random import manual_seed
    from .tensor import Tensor, no_grad
    t0 = time.perf_counter()
    try:
        if job.epochs < 1:
            raise ValueError(f"a candidate needs at least one epoch, got epochs={job.epochs}")
        rng = np.random.default_rng([job.seed, job.index])
        head = build_head(job.spec, job.h_train.shape[1], job.num_classes, rng)
        opt = AdamW(head.parameters(), lr=job.lr, weight_decay=1e-2)
        best = {"macro_f1": -1.0}
        for epoch in range(job.epochs):
            shuffle = manual_seed(job.seed, job.index, epoch)
            head.train()
            order = shuffle.permutation(len(job.y_train))
            for start in range(0, len(order), job.batch_size):
                idx = np.sort(order[start:start + job.batch_size])
                logits = head(Tensor(job.h_train[idx]))
                loss = F.cross_entropy(logits, job.y_train[idx])
                if job.soft_train is not None and job.kd_weight:
                    loss = loss * (1 - job.kd_weight) + F.cross_entropy(logits, job.soft_train[idx]) * job.kd_weight
                value = loss.item()
                if not np.isfinite(value):
                    raise FloatingPointError(f"training diverged: loss {value} in epoch {epoch + 1}")
                opt.zero_grad()
                loss.backward()
                opt.step()
            head.eval()
            with no_grad():
                pred = head(Tensor(job.h_val)).data.argmax(axis=1)
            score = macro_f1(job.y_val, pred)
            if score >= best["macro_f1"]:
                best = {"macro_f1": score, "accuracy": accuracy(job.y_val, pred), "epoch": epoch + 1,
                        "state": {k: v.copy() for k, v in head.state_dict().items()}}
        return {"index": job.index, "spec": job.spec, "params": head.num_parameters(), "error": None,
                "seconds": time.perf_counter() - t0, **best}
    except Exception as err:  # noqa: BLE001 - a failing candidate is reported, not fatal
        return {"index": job.index, "spec": job.spec, "params": None, "macro_f1": None, "accuracy": None,
                "epoch": None, "state": None, "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - t0}


@dataclass
class Leaderboard:
    rows: list = field(default_factory=list)      # one dict per candidate, best first; failures last

    @property
    def winner(self) -> dict:
        ok = [r for r in self.rows if r["error"] is None]
        if not ok:
            raise RuntimeError("every candidate failed:\n" + "\n".join(f"  {r['spec']}: {r['error']}" for r in self.rows))
        return ok[0]

    def markdown(self) -> str:
        lines = ["| rank | head | val macro-F1 | val accuracy | params | seconds | error |", "|---|---|---|---|---|---|---|"]
        for rank, r in enumerate(self.rows, 1):
            f1 = "" if r["macro_f1"] is None else f"{r['macro_f1']:.4f}"
            acc = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            lines.append(f"| {rank} | `{_describe(r['spec'])}` | {f1} | {acc} | {r['params'] or ''} | "
                         f"{r['seconds']:.1f} | {r['error'] or ''} |")
        return "\n".join(lines)

    def save(self, prefix: str) -> None:
        """``prefix``.csv and ``prefix``.md."""
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        with open(prefix + ".csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "head", "val_macro_f1", "val_accuracy", "params", "seconds", "error"])
            for rank, r in enumerate(self.rows, 1):
                w.writerow([rank, _describe(r["spec"]), r["macro_f1"], r["accuracy"], r["params"],
                            round(r["seconds"], 3), r["error"] or ""])
        with open(prefix + ".md", "w") as f:
            f.write(self.markdown() + "\n")


def _describe(spec: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items())


def _rank_key(r):
    if r["error"] is not None:
        return (1, 0.0, 0, r["index"])
    return (0, -r["macro_f1"], r["params"], r["index"])


def default_executor(workers: int | None = None) -> cf.Executor:
    """A local process pool of at most two workers (spawned, exiting when this process dies:
    tinysml/parallel.py) whose kernels keep their default thread count."""
    from .parallel import process_pool
    return process_pool(workers or min(2, os.cpu_count() or 1), threads=None)


def dask_executor(address: str) -> cf.Executor:
    """An Executor on a dask.distributed scheduler (``tcp://host:port``), e.g. a cluster's."""
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise ImportError("a dask scheduler needs dask.distributed: pip install 'tinysml[dask]'") from err
    return Client(address).get_executor()


def search(specs: list, h_train, y_train, h_val, y_val, num_classes: int, executor: cf.Executor | None = None,
           soft_train=None, epochs: int = 30, lr: float = 3e-3, seed: int = 0, log=print) -> Leaderboard:
    """Train every candidate head on the cached features and rank them by validation macro-F1.
    ``executor``: any concurrent.futures.Executor, "inline" (this process, one by one), or None
    (a local process pool, shut down afterwards)."""
    jobs = [Job(i, spec, h_train, y_train, h_val, y_val, num_classes, soft_train, epochs=epochs, lr=lr, seed=seed)
            for i, spec in enumerate(specs)]
    inline = executor == "inline" or (executor is None and len(jobs) <= 1)
    own = executor is None and not inline
    executor = None if inline else (executor or default_executor())
    rows = []
    try:
        if inline:
            results = map(train_candidate, jobs)
        else:
            futures = [executor.submit(train_candidate, job) for job in jobs]
            results = (f.result() for f in cf.as_completed(futures))
        for r in results:
            rows.append(r)
            status = f"val macro-F1 {r['macro_f1']:.4f}" if r["error"] is None else f"FAILED {r['error']}"
            log(f"[search] {len(rows)}/{len(jobs)} {_describe(r['spec'])}: {status} ({r['seconds']:.1f} s)")
    finally:
        if own and executor is not None:
            executor.shutdown()
    return Leaderboard(sorted(rows, key=_rank_key))
