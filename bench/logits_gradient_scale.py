"""How much gradient the smoothed conditional rule gives, compared with cross-entropy.

    python bench/logits_gradient_scale.py

Mean |d loss / d z_s| on random batches (64 windows, 6 classes) with a confident teacher, at
several student logit scales: the released rule (L2-normalised logits, softmax twice), the direct
form of ours (the same conditional targets on the plain log-softmax), and plain cross-entropy.
"""
import numpy as np

from tinysml import Tensor
from tinysml import functions as F
from tinysml.distill import direct_conditional_loss, smoothed_conditional_loss


def grad_scale(loss_fn, z):
    t = Tensor(z, requires_grad=True)
    loss_fn(t).backward()
    return float(np.abs(t.grad).mean())


rng = np.random.default_rng(0)
y = rng.integers(0, 6, 64)
z_t = rng.standard_normal((64, 6)) * 5
z_t[np.arange(64), y] += 10
print(f"{'logit scale':>12}{'CE':>12}{'released rule':>16}{'ratio':>8}{'direct [ours]':>16}{'ratio':>8}")
for scale in (1, 5, 20):
    z = rng.standard_normal((64, 6)) * scale
    ce = grad_scale(lambda t: F.cross_entropy(t, y), z)
    released = grad_scale(lambda t: smoothed_conditional_loss(t, z_t, y), z)
    direct = grad_scale(lambda t: direct_conditional_loss(t, z_t, y), z)
    print(f"{scale:>12}{ce:>12.2e}{released:>16.2e}{released / ce:>8.3f}{direct:>16.2e}{direct / ce:>8.3f}")
