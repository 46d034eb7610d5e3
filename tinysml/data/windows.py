"""From continuous recordings to windows: windowing with a label rule, resampling, the
gravity/body split, and gap filling. Every reader produces ``Recording``s; one path windows them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import WindowSet


@dataclass
class Recording:
    """One continuous recording: signal (N, C) float, per-sample labels (N,) int, a subject id."""
    signal: np.ndarray
    labels: np.ndarray
    subject: int


def label_runs(labels: np.ndarray):
    """(start, end, label) of each maximal run of equal labels."""
    if len(labels) == 0:
        return []
    change = np.flatnonzero(np.diff(labels) != 0) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(labels)]
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def window_recording(rec: Recording, length: int, hop: int, rule: str = "segment", keep=None):
    """Windows (n, C, length) and their labels from one recording.

    rule "segment": windows start at each constant-label run and stay inside it (the UCI-HAR
        protocol: no window spans two activities);
    "majority": slide over the whole recording, label = most frequent label in the window;
    "center": slide, label = the label at the window's centre.
    ``keep``: labels to keep (others, e.g. unlabelled -1 or transient 0, are dropped).
    """
    X, y = [], []
    sig = rec.signal
    if rule == "segment":
        for s, e, lab in label_runs(rec.labels):
            if (keep is not None and lab not in keep) or e - s < length:
                continue
            for start in range(s, e - length + 1, hop):
                X.append(sig[start:start + length])
                y.append(lab)
    elif rule in ("majority", "center"):
        for start in range(0, len(sig) - length + 1, hop):
            seg = rec.labels[start:start + length]
            if rule == "center":
                lab = int(seg[length // 2])
            else:
                values, counts = np.unique(seg, return_counts=True)
                lab = int(values[np.argmax(counts)])
            if keep is None or lab in keep:
                X.append(sig[start:start + length])
                y.append(lab)
    else:
        raise ValueError(f"unknown label rule {rule!r}; expected segment, majority or center")
    if not X:
        return np.zeros((0, sig.shape[1], length), np.float32), np.zeros(0, np.int64)
    return np.stack(X).transpose(0, 2, 1).astype(np.float32), np.asarray(y, np.int64)


def windows_from_recordings(recordings, length: int, hop: int, label_map: dict, rule: str = "segment") -> WindowSet:
    """Window every recording; ``label_map`` maps raw labels to class indices (others dropped)."""
    Xs, ys, subjects = [], [], []
    for rec in recordings:
        X, y = window_recording(rec, length, hop, rule, keep=set(label_map))
        Xs.append(X)
        ys.append(np.array([label_map[v] for v in y], np.int64))
        subjects.append(np.full(len(y), rec.subject, np.int64))
    C = recordings[0].signal.shape[1] if recordings else 0
    cat = lambda parts, empty: np.concatenate(parts) if parts else empty  # noqa: E731
    return WindowSet(cat(Xs, np.zeros((0, C, length), np.float32)), cat(ys, np.zeros(0, np.int64)),
                     cat(subjects, np.zeros(0, np.int64)))


def resample(signal: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Resample (N, C) along time with a polyphase filter (scipy), e.g. 100 Hz -> 50 Hz."""
    from fractions import Fraction

    from scipy.signal import resample_poly
    if from_hz == to_hz:
        return signal
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=0).astype(signal.dtype, copy=False)


def gravity_body_split(acc: np.ndarray, rate_hz: float, cutoff_hz: float = 0.3, order: int = 3):
    """Split total acceleration (N, 3) into gravity (low-pass Butterworth, zero phase) and body
    (the rest), as UCI-HAR does with a 0.3 Hz corner."""
    from scipy.signal import butter, filtfilt
    b, a = butter(order, cutoff_hz / (rate_hz / 2), btype="low")
    gravity = filtfilt(b, a, acc, axis=0)
    return gravity.astype(acc.dtype), (acc - gravity).astype(acc.dtype)


def fill_gaps(signal: np.ndarray, max_gap: int):
    """Linearly interpolate runs of NaN of at most ``max_gap`` samples (per channel). Returns the
    filled signal, a boolean mask (N,) of samples still invalid (longer gaps: to be dropped), and a
    report {"filled": samples interpolated, "dropped": samples left invalid}."""
    out = signal.astype(np.float64, copy=True)
    filled = 0
    for c in range(out.shape[1]):
        col = out[:, c]
        bad = np.isnan(col)
        if not bad.any():
            continue
        good = np.flatnonzero(~bad)
        for s, e, is_bad in label_runs(bad.astype(np.int64)):
            if is_bad and e - s <= max_gap and s > 0 and e < len(col):
                col[s:e] = np.interp(np.arange(s, e), good, col[good])
                filled += e - s
    invalid = np.isnan(out).any(axis=1)
    return out.astype(signal.dtype), invalid, {"filled": int(filled), "dropped": int(invalid.sum())}
