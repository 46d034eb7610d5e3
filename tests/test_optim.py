"""Optimisers and schedules against PyTorch's (same gradients in, same weights out)."""
import numpy as np
import pytest

from tinysml import optim
from tinysml.nn import Parameter

torch = pytest.importorskip("torch")


def _trajectory(make_ours, make_torch, steps=12):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(steps)]
    p = Parameter(w0.copy())
    ours = make_ours([p])
    tp = torch.tensor(w0.copy(), requires_grad=True)
    theirs = make_torch([tp])
    for g in grads:
        p.grad = g.copy()
        ours.step()
        tp.grad = torch.from_numpy(g.copy())
        theirs.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_sgd_nesterov_weight_decay():
    _trajectory(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
                lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True))


def test_adamw():
    _trajectory(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.05),
                lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05))


def test_radam_both_regimes():
    _trajectory(lambda ps: optim.RAdam(ps, lr=0.01, weight_decay=0.02),
                lambda ps: torch.optim.RAdam(ps, lr=0.01, weight_decay=0.02, decoupled_weight_decay=True), steps=12)


def test_lookahead_syncs_every_k_steps():
    p = Parameter(np.zeros(2))
    opt = optim.Lookahead(optim.SGD([p], lr=1.0, momentum=0.0), k=2, alpha=0.5)
    for _ in range(2):
        p.grad = -np.ones(2)
        opt.step()
    np.testing.assert_allclose(p.data, [1.0, 1.0])    # fast went to 2, slow moved halfway
    np.testing.assert_allclose(opt.slow[0], [1.0, 1.0])


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(3) for _ in range(10)]
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    oa = optim.Ranger([a], lr=0.05)
    for g in grads[:5]:
        a.grad = g; oa.step()
    b.data[...] = a.data
    ob = optim.Ranger([b], lr=0.05)
    ob.load_state_dict(oa.state_dict())
    for g in grads[5:]:
        a.grad = g; oa.step()
        b.grad = g; ob.step()
    np.testing.assert_array_equal(a.data, b.data)


def test_reduce_on_plateau_matches_torch():
    p = Parameter(np.zeros(1))
    ours = optim.ReduceLROnPlateau(optim.SGD([p], lr=1.0), mode="max", factor=0.5, patience=2, cooldown=1, min_lr=0.1)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="max", factor=0.5, patience=2, cooldown=1, min_lr=0.1)
    for metric in [0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]:
        ours.step(metric)
        theirs.step(metric)
        assert ours.optimizer.lr == pytest.approx(topt.param_groups[0]["lr"])


def test_cosine_schedule_endpoints():
    p = Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.CosineSchedule(opt, epochs=10, warmup=0, min_lr=0.1)
    assert opt.lr == pytest.approx(1.0)
    for _ in range(10):
        sched.step()
    assert opt.lr == pytest.approx(0.1)
