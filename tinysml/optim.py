"""Optimisers and learning-rate schedules.

Optimisers update ``p.data`` in place from ``p.grad``. Each keeps its per-parameter state in plain
arrays and exposes ``state_dict()`` / ``load_state_dict()`` so that training resumes exactly after
a kill. The authors trained with Ranger (RAdam + Lookahead) and ReduceLROnPlateau.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import get_array_module, kernels_for


class Optimizer:
    # whether a step may be recorded in a CUDA graph (tinysml/cuda_graph.py): every number that
    # changes between steps must then live on the device (AdamW: yes; the others keep host scalars)
    graph_capable = False

    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("optimizer got no parameters that require a gradient")
        self.lr = lr
        self.steps = 0
        self.state = [dict() for _ in self.params]   # per-parameter arrays, e.g. {"m": ..., "v": ...}

    def state_arrays(self) -> list:
        """Every array of the optimiser's state (what a CUDA graph of its step reads and writes)."""
        return [a for s in self.state for a in s.values()]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.steps += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p.data, p.grad, state)

    def update(self, w, g, state) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "state": {str(i): dict(s) for i, s in enumerate(self.state)}}

    def load_state_dict(self, sd: dict) -> None:
        self.lr, self.steps = float(sd["lr"]), int(sd["steps"])
        saved = sd["state"]
        if len(saved) != len(self.params):
            raise ValueError(f"optimizer state holds {len(saved)} parameters, this optimizer has {len(self.params)}")
        for i, p in enumerate(self.params):
            xp = get_array_module(p.data)
            self.state[i] = {k: xp.array(v, copy=True) for k, v in saved[str(i)].items()}


class SGD(Optimizer):
    """v = mu v + (g + wd w);  w -= lr (g + mu v if nesterov else v)."""

    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def update(self, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            v = state.get("v")
            if v is None:
                v = state["v"] = g.copy()
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        w -= self.lr * g


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter):
    w -= lr wd w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr m^ / (sqrt(v^) + eps).

    On a GPU the update of every parameter is one launch (kernels/cuda/adamw.cu); the step count t
    and the learning rate live in two device scalars that it reads, and t is advanced by a kernel,
    so that a step recorded in a CUDA graph stays right when replayed (tinysml/cuda_graph.py).
    ``steps`` and ``lr`` on the host stay the truth: the device copies are rewritten from them
    (outside a capture) whenever they differ from what the device holds, e.g. after a schedule
    changed ``lr`` or a checkpoint was loaded."""

    graph_capable = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self._device = None            # {"t": (1,) float64, "lr": (1,) float64} on the GPU, and what they hold

    def sync_device_scalars(self) -> None:
        """Write ``steps`` and ``lr`` into the device scalars where they differ (no-op on the CPU).
        Never while a graph is being recorded: the write would be recorded with the value of now."""
        xp = get_array_module(self.params[0].data)
        if xp is np:
            return
        d = self._device
        if d is None:
            d = self._device = {"t": xp.zeros(1, xp.float64), "lr": xp.zeros(1, xp.float64), "t_host": None, "lr_host": None}
        if d["t_host"] != self.steps or d["lr_host"] != self.lr:
            from .cuda_graph import capturing
            if capturing():
                raise RuntimeError("AdamW's step count or learning rate changed during a CUDA graph capture")
            d["t"].fill(self.steps)
            d["lr"].fill(self.lr)
            d["t_host"], d["lr_host"] = self.steps, self.lr

    def replayed(self) -> None:
        """A recorded step was replayed: its kernel advanced t on the device; count it on the host."""
        self.steps += 1
        self._device["t_host"] = self.steps

    def step(self) -> None:
        xp = get_array_module(self.params[0].data)
        if xp is np:
            return super().step()
        self.sync_device_scalars()
        d = self._device
        d["t"] += 1                                      # on the device: a graph replays this too
        self.steps += 1
        d["t_host"] = self.steps
        b1, b2 = self.betas
        by_dtype = {}                                    # the parameters with a gradient, one launch per dtype
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            if "m" not in state:
                state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            by_dtype.setdefault(p.data.dtype, []).append((p.data, p.grad, state["m"], state["v"]))
        for group in by_dtype.values():
            ws, gs, ms, vs = (list(column) for column in zip(*group))
            kernels_for(ws[0]).adamw_step_multi(ws, gs, ms, vs, d["lr"], d["t"], b1, b2, self.eps, self.weight_decay)

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        if self._device is not None:
            self._device["t_host"] = None                 # rewrite the device scalars at the next step

    def _decay_and_moments(self, w, g, state):
        """Decoupled weight decay on w, then the updated moments (m, v) of g."""
        if self.weight_decay:
            w *= 1 - self.lr * self.weight_decay
        xp = get_array_module(g)
        b1, b2 = self.betas
        if "m" not in state:
            state["m"], state["v"] = xp.zeros_like(g), xp.zeros_like(g)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        return m, v

    def update(self, w, g, state):
        if "m" not in state:
            xp = get_array_module(g)
            state["m"], state["v"] = xp.zeros_like(w), xp.zeros_like(w)
        b1, b2 = self.betas
        kernels_for(w).adamw_step(w, g, state["m"], state["v"], self.lr, b1, b2, self.eps, self.weight_decay,
                                  self.steps)


class RAdam(AdamW):
    """Rectified Adam (Liu et al. 2020): while the variance of the adaptive rate is intractable
    (rho_t <= 5) take plain momentum steps, afterwards Adam steps scaled by the rectification r_t.
    Weight decay is decoupled, as in AdamW. Its step decides on the host (rho_t > 5), so it is not
    recorded in CUDA graphs: a training loop with RAdam runs eagerly on a GPU."""

    graph_capable = False

    def step(self) -> None:
        Optimizer.step(self)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, betas, eps, weight_decay)

    def update(self, w, g, state):
        xp = get_array_module(w)
        m, v = self._decay_and_moments(w, g, state)
        b1, b2 = self.betas
        t = self.steps
        m_hat = m / (1 - b1 ** t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            w -= self.lr * r * m_hat * (math.sqrt(1 - b2 ** t) / (xp.sqrt(v) + self.eps))
        else:
            w -= self.lr * m_hat


class Lookahead:
    """Lookahead (Zhang et al. 2019) around an inner optimiser: every k steps the slow weights move
    alpha of the way to the fast ones, and the fast weights restart from there."""

    def __init__(self, inner: Optimizer, k: int = 6, alpha: float = 0.5):
        self.inner, self.k, self.alpha = inner, k, alpha
        self.slow = [p.data.copy() for p in inner.params]

    params = property(lambda self: self.inner.params)
    lr = property(lambda self: self.inner.lr, lambda self, value: setattr(self.inner, "lr", value))

    def zero_grad(self) -> None:
        self.inner.zero_grad()

    def step(self) -> None:
        self.inner.step()
        if self.inner.steps % self.k == 0:
            for p, slow in zip(self.inner.params, self.slow):
                slow += self.alpha * (p.data - slow)
                p.data[...] = slow

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "slow": {str(i): s for i, s in enumerate(self.slow)}}

    def load_state_dict(self, sd: dict) -> None:
        self.inner.load_state_dict(sd["inner"])
        for i, p in enumerate(self.inner.params):
            self.slow[i] = get_array_module(p.data).asarray(sd["slow"][str(i)]).copy()


def Ranger(params, lr=1e-3, weight_decay=0.0, k=6, alpha=0.5) -> Lookahead:
    """RAdam + Lookahead, the optimiser of the authors' released code."""
    return Lookahead(RAdam(params, lr=lr, betas=(0.95, 0.999), eps=1e-5, weight_decay=weight_decay), k=k, alpha=alpha)


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    name = name.lower()
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    if name == "adamw":
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "radam":
        return RAdam(params, lr=lr, weight_decay=weight_decay)
    if name == "ranger":
        return Ranger(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected sgd, adamw, radam or ranger")


# --------------------------------------------------------------------------- schedules
class CosineSchedule:
    """Linear warm-up for ``warmup`` epochs, then cosine decay from the base lr to ``min_lr``.
    Call ``step()`` once per epoch (after it)."""

    def __init__(self, optimizer, epochs: int, warmup: int = 0, min_lr: float = 0.0):
        self.optimizer, self.epochs, self.warmup, self.min_lr = optimizer, epochs, warmup, min_lr
        self.base_lr = optimizer.lr
        self.epoch = 0
        self._apply()

    def _apply(self):
        e = self.epoch
        if e < self.warmup:
            lr = self.base_lr * (e + 1) / (self.warmup + 1)
        else:
            progress = min(1.0, (e - self.warmup) / max(1, self.epochs - self.warmup))
            lr = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        self.optimizer.lr = lr

    def step(self, metric=None) -> None:
        self.epoch += 1
        self._apply()

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, sd):
        self.epoch, self.base_lr = int(sd["epoch"]), float(sd["base_lr"])
        self._apply()


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when ``metric`` has not improved for ``patience`` epochs, then
    wait ``cooldown`` epochs; never below ``min_lr``. The authors used factor 0.85, patience 5,
    cooldown 5, min lr 1e-5. ``mode`` "max" for accuracy/F1, "min" for a loss."""

    def __init__(self, optimizer, mode="max", factor=0.85, patience=5, cooldown=5, min_lr=1e-5, threshold=1e-4):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.optimizer, self.mode, self.factor = optimizer, mode, factor
        self.patience, self.cooldown, self.min_lr, self.threshold = patience, cooldown, min_lr, threshold
        self.best = None
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _improved(self, metric) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return metric > self.best * (1 + self.threshold) if self.best > 0 else metric > self.best
        return metric < self.best * (1 - self.threshold) if self.best > 0 else metric < self.best

    def step(self, metric) -> None:
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the monitored metric")
        if self._improved(metric):
            self.best, self.bad_epochs = float(metric), 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.min_lr, self.optimizer.lr * self.factor)
            self.cooldown_left, self.bad_epochs = self.cooldown, 0

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, sd):
        self.best = None if sd["best"] is None else float(sd["best"])
        self.bad_epochs, self.cooldown_left = int(sd["bad_epochs"]), int(sd["cooldown_left"])


class ConstantSchedule:
    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self, metric=None):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, sd):
        pass


def build_schedule(name: str, optimizer, epochs: int):
    name = name.lower()
    if name == "cosine":
        return CosineSchedule(optimizer, epochs, warmup=min(3, epochs // 10))
    if name == "plateau":
        return ReduceLROnPlateau(optimizer)
    if name in ("none", "constant"):
        return ConstantSchedule(optimizer)
    raise ValueError(f"unknown schedule {name!r}; expected cosine, plateau or none")
