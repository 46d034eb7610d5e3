"""Losses. Each returns the mean over the batch (a scalar Tensor)."""
from __future__ import annotations

from ..backend import kernels_for
from ..cuda_graph import capturing
from ..tensor import Function, Tensor
from .activation import log_softmax


class CrossEntropy(Function):
    """Softmax cross-entropy against a target distribution q (one-hot with label smoothing, or
    soft probabilities):  L = -1/B sum_b sum_k q[b,k] log softmax(z)[b,k];  gz = (softmax(z) - q) / B."""

    @staticmethod
    def forward(ctx, z, q):
        loss, logp = kernels_for(z).cross_entropy_fwd(z, q)        # kernels/reference.py has the equations
        ctx.save(logp, q)
        return loss

    @staticmethod
    def backward(ctx, g):
        logp, q = ctx.saved
        return kernels_for(logp).cross_entropy_bwd(logp, q, g), None


def smoothed_targets(labels, num_classes: int, smoothing: float, dtype, xp):
    """(B,) integer labels -> (B, K) targets (1 - s) onehot + s / K (elementwise, no scatter: the
    same bits as adding 1 - s at the labels, and no host value on a GPU)."""
    onehot = labels[:, None] == xp.arange(num_classes)[None, :]
    return xp.where(onehot, dtype.type(smoothing / num_classes) + dtype.type(1 - smoothing),
                    dtype.type(smoothing / num_classes)).astype(dtype, copy=False)


def cross_entropy(logits: Tensor, target, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of (B, K) logits against integer labels (B,) or probabilities (B, K)."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expected logits of shape (B, K), got {tuple(logits.shape)}")
    xp = logits.xp
    target = target.data if isinstance(target, Tensor) else xp.asarray(target)
    B, K = logits.shape
    if target.ndim == 1:
        if target.shape[0] != B:
            raise ValueError(f"cross_entropy: {target.shape[0]} labels for {B} rows of logits")
        if target.dtype.kind not in "iu":
            raise TypeError(f"cross_entropy: integer class labels expected, got dtype {target.dtype}")
        # the range check reads two numbers on the host: not while a CUDA graph is recorded (the
        # labels of a graphed step were checked when its data set was loaded)
        if target.size and not capturing() and (int(target.min()) < 0 or int(target.max()) >= K):
            raise ValueError(f"cross_entropy: labels must lie in [0, {K}), got range [{int(target.min())}, {int(target.max())}]")
        target = smoothed_targets(target, K, label_smoothing, logits.dtype, xp)
    elif target.shape != logits.shape:
        raise ValueError(f"cross_entropy: soft targets of shape {target.shape} for logits {logits.shape}")
    return CrossEntropy.apply(logits, Tensor(target.astype(logits.dtype, copy=False)))


def nll_loss(log_probs: Tensor, labels) -> Tensor:
    """-mean_b log_probs[b, labels[b]]."""
    xp = log_probs.xp
    labels = xp.asarray(labels.data if isinstance(labels, Tensor) else labels)
    return -log_probs[xp.arange(labels.shape[0]), labels].mean()


def mse_loss(a: Tensor, b) -> Tensor:
    """mean((a - b)^2) over all elements."""
    d = a - b
    return (d * d).mean()


def kl_div(target_probs, log_probs: Tensor, eps: float = 1e-12) -> Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k), averaged over the batch (rows of (B, K)).

    ``target_probs`` p may be a Tensor (differentiated through) or an array (a fixed target);
    ``log_probs`` is log q. Terms with p_k = 0 contribute 0.
    """
    from .elementwise import clip, log
    p = target_probs if isinstance(target_probs, Tensor) else Tensor(target_probs)
    return (p * (log(clip(p, eps, None)) - log_probs)).sum() * (1.0 / log_probs.shape[0])


__all__ = ["cross_entropy", "nll_loss", "mse_loss", "kl_div", "log_softmax", "smoothed_targets"]
