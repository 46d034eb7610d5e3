"""Classification metrics: accuracy, macro-F1, confusion matrix, per-class report.

Macro-F1 follows scikit-learn's default: the unweighted mean of per-class F1 over the classes that
occur in the true or the predicted labels; a class with no true and no predicted sample is skipped,
and F1 is 0 for a class whose precision and recall are both 0.
"""
from __future__ import annotations

import numpy as np


def _check(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """M[i, j] = number of samples of true class i predicted as j."""
    y_true, y_pred = _check(y_true, y_pred)
    K = num_classes or int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    M = np.zeros((K, K), dtype=np.int64)
    np.add.at(M, (y_true, y_pred), 1)
    return M


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _check(y_true, y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def per_class_f1(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """F1 of each class: 2 TP / (2 TP + FP + FN) (0 when the denominator is 0)."""
    M = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(M).astype(np.float64)
    denom = M.sum(0) + M.sum(1)          # (TP + FP) + (TP + FN)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true, y_pred) -> float:
    y_true, y_pred = _check(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    if present.size == 0:
        return 0.0
    return float(per_class_f1(y_true, y_pred, int(present.max()) + 1)[present].mean())


def evaluate_predictions(y_true, y_pred) -> dict:
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}


def report(y_true, y_pred, class_names) -> str:
    """A per-class table: precision, recall, F1, support."""
    M = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(M)
    lines = [f"{'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    f1 = per_class_f1(y_true, y_pred, len(class_names))
    for k, name in enumerate(class_names):
        prec = tp[k] / M[:, k].sum() if M[:, k].sum() else 0.0
        rec = tp[k] / M[k].sum() if M[k].sum() else 0.0
        lines.append(f"{name:<20}{prec:>10.3f}{rec:>10.3f}{f1[k]:>10.3f}{M[k].sum():>10d}")
    return "\n".join(lines)
