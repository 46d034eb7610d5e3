"""Live recognition on a sensor stream, on top of a ``tinysml.deploy.Predictor``.

    from tinysml.deploy import Predictor, StreamingRecognizer
    stream = StreamingRecognizer(Predictor.load("uci-har-student"), hop=64, k=3)
    for decision in stream.push(samples):          # (n, C) samples in arrival order, any n
        print(decision.name, decision.probability)
"""
from __future__ import annotations

import collections
import time
from typing import Protocol

import numpy as np


class Classifier(Protocol):
    """What the recognizer needs of a predictor (``tinysml.deploy.Predictor`` has it): the window
    shape, class names, and class probabilities for (B, C, L) windows."""
    channels: int
    length: int
    class_names: list

    def predict_proba(self, windows, nan_policy: str = "raise") -> np.ndarray: ...

Decision = collections.namedtuple("Decision", "sample label name probability raw_label latency_ms")


class StreamingRecognizer:
    """Live recognition on a sensor stream.

    ``push(samples)`` takes (n, C) samples in arrival order (any n); whenever ``hop`` new samples
    have arrived and a full window is buffered, the last ``length`` samples are classified. The
    decision is smoothed over the last ``k`` windows: "mean" averages the probabilities,
    "majority" votes on the labels. Each Decision carries its latency (classify + smooth).
    """

    def __init__(self, predictor: Classifier, hop: int | None = None, k: int = 3, smoothing: str = "mean"):
        if smoothing not in ("mean", "majority"):
            raise ValueError(f"smoothing must be 'mean' or 'majority', got {smoothing!r}")
        hop = predictor.length // 2 if hop is None else hop
        for name, value in (("k", k), ("hop", hop)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.p, self.k, self.smoothing, self.hop = predictor, int(k), smoothing, int(hop)
        self.buffer = np.zeros((predictor.channels, 2 * predictor.length), np.float32)    # ring, doubled
        self.filled = 0
        self.seen = 0
        self.since = 0
        self.recent = collections.deque(maxlen=k)

    def push(self, samples) -> list:
        samples = np.asarray(samples)
        if samples.dtype.kind not in "fiu":
            raise TypeError(f"expected numeric samples, got dtype {samples.dtype}")
        samples = samples.astype(np.float32, copy=False)
        if samples.ndim == 1:
            samples = samples[None]
        if samples.ndim != 2 or samples.shape[1] != self.p.channels:
            raise ValueError(f"expected samples of shape (n, {self.p.channels}), got {samples.shape}")
        out, L = [], self.p.length
        for row in samples:
            pos = self.seen % L
            self.buffer[:, pos] = row                 # write twice so that a window is always contiguous
            self.buffer[:, pos + L] = row
            self.seen += 1
            self.filled = min(self.filled + 1, L)
            self.since += 1
            if self.filled == L and self.since >= self.hop:
                self.since = 0
                start = self.seen % L
                out.append(self._decide(self.buffer[:, start:start + L]))
        return out

    def _decide(self, window) -> Decision:
        t0 = time.perf_counter()
        probs = self.p.predict_proba(window[None], nan_policy="zero")[0]
        self.recent.append(probs)
        if self.smoothing == "mean":
            smoothed = np.mean(self.recent, axis=0)
            label = int(smoothed.argmax())
            confidence = float(smoothed[label])
        else:
            votes = np.bincount([int(p.argmax()) for p in self.recent], minlength=len(probs))
            label = int(votes.argmax())
            confidence = float(votes[label] / len(self.recent))
        return Decision(self.seen, label, self.p.class_names[label], confidence, int(probs.argmax()),
                        (time.perf_counter() - t0) * 1e3)
