"""SMLDist's logits and memory losses and the KD baselines on small hand-computed cases, and their
gradients (the stage losses are in test_stage.py)."""
import numpy as np
import pytest

from tinysml import Tensor
from tinysml import functions as F
from tinysml.distill import (attention_map, attention_transfer_loss, conditional_target, direct_conditional_loss,
                             fitnet_hint_loss, hinton_kd_loss, memory_loss, smoothed_conditional_loss, transplant)
from tinysml.distill.memory import teacher_association
from tinysml.gradcheck import gradcheck
from tinysml.models.heads import HopfieldHead

R = np.random.default_rng(3)


def softmax(a):
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --------------------------------------------------------------------------- logits
def test_conditional_rule_replaces_the_target_exactly_where_the_teacher_is_wrong():
    z_t = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    y = np.array([0, 0, 2])                               # the teacher is wrong on row 1 only
    q_tilde, wrong = conditional_target(z_t, y, eta=2.0)
    assert wrong.tolist() == [False, True, False]
    np.testing.assert_allclose(q_tilde[1], softmax(np.array([[2.0, 0, 0]]))[0])
    q0 = softmax(z_t[[0]] / np.linalg.norm(z_t[0]))
    np.testing.assert_allclose(q_tilde[0], softmax(q0)[0])


def test_smoothed_conditional_loss_by_hand():
    """docs/algorithm.md, section 6, steps 1-5 (T = 2, where both target weights are 1/2)."""
    z_s = np.array([[1.0, -2.0, 0.5]])
    z_t = np.array([[0.2, 0.1, 2.0]])
    y = np.array([2])
    lam, T = 0.7, 2.0
    p = softmax(z_s / np.linalg.norm(z_s))
    log_pt = np.log(softmax(p))
    q_t = softmax(softmax(z_t / np.linalg.norm(z_t)))
    y_hat = np.array([[0.5, 0.5, 0.5]])                   # 1 - 1/T off the label, 1/T on it
    expected = -(y_hat * log_pt).sum() - lam * (q_t * log_pt).sum()
    got = smoothed_conditional_loss(Tensor(z_s), z_t, y, lam=lam, T=T).item()
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_smoothed_conditional_loss_label_weights_by_hand(T):
    """docs/algorithm.md, section 6, step 4: the label's target weight is 1/T
    and every other class's is 1 - 1/T. At T = 1 that is the plain one-hot (0 off the label); at
    T = 3 the two weights (1/3 vs 2/3) differ, so swapping them changes the loss. Written out with
    numbers, not with the formula the code uses."""
    z_s = np.array([[1.0, -2.0, 0.5], [0.3, 0.3, -1.0]])
    z_t = np.array([[0.2, 0.1, 2.0], [3.0, 0.0, 0.0]])                    # right on row 0, wrong on row 1
    y = np.array([2, 1])
    lam = 0.7
    log_pt = np.log(softmax(softmax(z_s / np.linalg.norm(z_s, axis=1, keepdims=True))))
    label_weight, other_weight = {1.0: (1.0, 0.0), 3.0: (1 / 3, 2 / 3)}[T]
    y_hat = np.array([[other_weight, other_weight, label_weight], [other_weight, label_weight, other_weight]])
    q_right = softmax(softmax(z_t[:1] / np.linalg.norm(z_t[:1])))
    q_wrong = softmax(np.array([[0.0, 1.0, 0.0]]))                        # eta * onehot(y), smoothed
    q = np.vstack([q_right, q_wrong])
    expected = (-(y_hat * log_pt).sum(1) - lam * (q * log_pt).sum(1)).mean()
    got = smoothed_conditional_loss(Tensor(z_s), z_t, y, lam=lam, T=T).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_logits_losses_gradients():
    z_t, y = R.standard_normal((4, 5)), np.array([0, 3, 1, 4])
    gradcheck(lambda z: smoothed_conditional_loss(z, z_t, y, lam=1.3, T=1.5, eta=2.0), R.standard_normal((4, 5)))
    gradcheck(lambda z: hinton_kd_loss(z, z_t, y, T=3.0, alpha=0.7), R.standard_normal((4, 5)))


def test_direct_conditional_loss_by_hand_and_gradient():
    from tinysml.distill import direct_conditional_loss
    z_s, z_t, y = R.standard_normal((3, 4)), R.standard_normal((3, 4)), np.array([0, 1, 3])
    q, _ = conditional_target(z_t, y, 1.0)
    logp = np.log(softmax(z_s))
    expected = -logp[np.arange(3), y].mean() - 0.5 * (q * logp).sum(1).mean()
    assert direct_conditional_loss(Tensor(z_s), z_t, y, lam=0.5).item() == pytest.approx(expected, rel=1e-10)
    gradcheck(lambda z: direct_conditional_loss(z, z_t, y, lam=0.5), z_s)


def test_hinton_kd_at_equal_logits_is_the_ce_part():
    z, y = R.standard_normal((3, 4)), np.array([0, 1, 2])
    kd = hinton_kd_loss(Tensor(z), z, y, T=4.0, alpha=0.6).item()
    assert kd == pytest.approx(0.4 * F.cross_entropy(Tensor(z), y).item(), rel=1e-9)


# --------------------------------------------------------------------------- memory
def _heads():
    rng = np.random.default_rng(0)
    t = HopfieldHead(8, 3, rng, patterns=5, dim=4)
    s = HopfieldHead(6, 3, rng, patterns=5, dim=4)
    for h in (t, s):
        h.double()
    return t, s


def test_transplant_copies_the_memory_and_output_map():
    t, s = _heads()
    transplant(t, s)
    assert np.array_equal(s.patterns.data, t.patterns.data) and np.array_equal(s.out.weight.data, t.out.weight.data)
    assert not np.array_equal(s.query.weight.data[:, :6], t.query.weight.data[:, :6])   # the query stays the student's


def test_memory_kl_is_zero_when_the_queries_agree_and_positive_otherwise():
    t, s = _heads()
    transplant(t, s)
    h_t = R.standard_normal((4, 8))
    xi_t = t.query_of(Tensor(h_t))
    p_t = t.associate(xi_t).data
    # a student whose query equals the teacher's: make its query map reproduce xi_t exactly
    h_s = R.standard_normal((4, 6))
    s.norm.weight.data[:] = 1
    s.norm.bias.data[:] = 0
    normed = s.norm(Tensor(h_s)).data
    s.query.weight.data = np.linalg.lstsq(normed, xi_t.data, rcond=None)[0].T
    assert memory_loss(s, Tensor(h_s), p_t, t.patterns.data).item() == pytest.approx(0.0, abs=1e-8)
    s.query.weight.data = -s.query.weight.data  # (a constant shift would vanish after LayerNorm)
    assert memory_loss(s, Tensor(h_s), p_t, t.patterns.data).item() > 1e-3


def test_memory_loss_gradient():
    t, s = _heads()
    p_t = t.associate(t.query_of(Tensor(R.standard_normal((3, 8))))).data
    gradcheck(lambda h: memory_loss(s, h, p_t, t.patterns.data), R.standard_normal((3, 6)))


def test_hopfield_head_gradient_and_errors():
    rng = np.random.default_rng(1)
    head = HopfieldHead(5, 3, rng, patterns=4, dim=3, steps=2, learn_beta=True).double()
    gradcheck(lambda h: head(h), R.standard_normal((2, 5)))
    with pytest.raises(ValueError, match="at least as many patterns as classes"):
        HopfieldHead(5, 6, rng, patterns=4)


# --------------------------------------------------------------------------- baselines
def test_attention_transfer():
    fs, ft = R.standard_normal((2, 4, 8)), R.standard_normal((2, 6, 8))
    a = attention_map(Tensor(fs)).data
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0)
    assert attention_transfer_loss([Tensor(ft[:, :4])], [ft[:, :4]]).item() == pytest.approx(0, abs=1e-12)
    gradcheck(lambda x: attention_transfer_loss([x], [ft], beta=2.0), fs)


# --------------------------------------------------------------------------- issue 28: two holes a slip passed
@pytest.mark.parametrize("T, alpha", [(1.0, 0.9), (2.0, 0.5), (4.0, 0.9), (7.5, 0.3)])
def test_hinton_kd_equals_a_hand_computation_at_several_temperatures(T, alpha):
    """alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) CE(z_s, y), computed here in
    float64 from the definitions: a loss that lost its T^2 (or its 1/T) differs at T != 1."""
    rng = np.random.default_rng(int(T * 10))
    z_s, z_t = rng.standard_normal((6, 5)) * 3, rng.standard_normal((6, 5)) * 3
    y = rng.integers(0, 5, 6)

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    p_t, p_s = softmax(z_t / T), softmax(z_s / T)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(1).mean()
    ce = -np.log(softmax(z_s)[np.arange(6), y]).mean()
    want = alpha * T * T * kl + (1 - alpha) * ce
    got = hinton_kd_loss(Tensor(z_s), z_t, y, T=T, alpha=alpha).item()
    assert got == pytest.approx(want, rel=1e-9)


def test_the_soft_term_of_hinton_kd_keeps_its_gradient_scale_across_temperatures():
    """Why T^2: the soft term's gradient shrinks like 1/T^2 (Hinton et al. 2015), and T^2 restores
    it: at large T the scaled gradient approaches (z_s - z_t) / K (centred logits), whatever T."""
    rng = np.random.default_rng(3)
    z_t = rng.standard_normal((4, 5))
    z_t -= z_t.mean(1, keepdims=True)
    z_s = z_t + 0.01 * rng.standard_normal((4, 5))
    z_s -= z_s.mean(1, keepdims=True)
    y = np.zeros(4, int)
    grads = []
    for T in (20.0, 40.0):
        z = Tensor(z_s.copy(), requires_grad=True)
        hinton_kd_loss(z, z_t, y, T=T, alpha=1.0).backward()
        grads.append(z.grad)
    want = (z_s - z_t) / 5 / 4                                         # / K, and / B (the batch mean)
    size = [np.linalg.norm(g) / np.linalg.norm(want) for g in grads]
    assert all(0.8 < r < 1.2 for r in size), size                      # without T^2: 1/400 and 1/1600
    assert np.linalg.norm(grads[0] - grads[1]) < 0.1 * np.linalg.norm(grads[0])


# --------------------------------------------------------------------------- behaviour a mutation run showed unchecked
def _softmax64(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_kd_stays_finite_and_right_for_large_and_offset_teacher_logits():
    """Teacher logits in the thousands, rows at very different offsets: the softmax of each row is
    shifted by that row's maximum, so nothing overflows or underflows to 0/0."""
    z_t = np.array([[1000.0, 990.0, 980.0], [-2000.0, -1995.0, -2010.0]])
    z_s = np.array([[0.5, -0.2, 0.1], [0.0, 0.3, -0.4]])
    y = np.array([0, 1])
    got = hinton_kd_loss(Tensor(z_s), z_t, y, T=2.0, alpha=1.0).item()
    p_t, p_s = _softmax64(z_t / 2), _softmax64(z_s / 2)
    assert got == pytest.approx(4 * (p_t * (np.log(p_t) - np.log(p_s))).sum(1).mean(), rel=1e-9)


def test_conditional_target_of_small_and_eta_scaled_logits_by_hand():
    """Teacher logits of norm far below 1 are still L2-normalised (the 1e-12 floor only guards 0),
    and a wrong teacher's row is softmax(eta onehot(y)) for eta != 1."""
    z_t = np.array([[0.003, 0.001, -0.002], [0.0, 0.002, 0.001]])
    y = np.array([0, 0])                                           # row 0 right, row 1 wrong
    q, wrong = conditional_target(z_t, y, eta=2.5)
    unit = z_t / np.linalg.norm(z_t, axis=1, keepdims=True)
    np.testing.assert_array_equal(wrong, [False, True])
    np.testing.assert_allclose(q[0], _softmax64(_softmax64(unit)[:1])[0], rtol=1e-12)
    np.testing.assert_allclose(q[1], _softmax64(np.array([[2.5, 0.0, 0.0]]))[0], rtol=1e-12)


def test_the_losses_defaults_are_the_documented_ones():
    """lambda = T = eta = 1 (the released code's) for the conditional rule; T = 4, alpha = 0.9 for KD."""
    rng = np.random.default_rng(5)
    z_s, z_t, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), np.array([0, 1, 2, 0])
    assert smoothed_conditional_loss(Tensor(z_s), z_t, y).item() == \
        smoothed_conditional_loss(Tensor(z_s), z_t, y, lam=1.0, T=1.0, eta=1.0).item()
    assert direct_conditional_loss(Tensor(z_s), z_t, y).item() == \
        direct_conditional_loss(Tensor(z_s), z_t, y, lam=1.0, eta=1.0).item()
    assert hinton_kd_loss(Tensor(z_s), z_t, y).item() == hinton_kd_loss(Tensor(z_s), z_t, y, T=4.0, alpha=0.9).item()
    assert smoothed_conditional_loss(Tensor(z_s), z_t, y, lam=1.0).item() != \
        smoothed_conditional_loss(Tensor(z_s), z_t, y, lam=2.0).item()          # so the comparison above can fail


@pytest.mark.parametrize("loss", ["released", "direct", "kd"])
def test_logits_losses_keep_float32_take_the_teacher_as_a_constant_and_survive_zero_logits(loss):
    """float32 in, float32 out; a teacher given as a Tensor that requires a gradient gets none (it is
    frozen) and gives the loss an array would; all-zero student logits (a head at initialisation)
    give a finite loss and gradient."""
    fn = {"released": smoothed_conditional_loss, "direct": direct_conditional_loss, "kd": hinton_kd_loss}[loss]
    rng = np.random.default_rng(2)
    z_s = rng.standard_normal((5, 4)).astype(np.float32)
    z_t = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0])
    out = fn(Tensor(z_s), z_t, y)
    assert out.dtype == np.float32
    teacher = Tensor(z_t, requires_grad=True)
    student = Tensor(z_s, requires_grad=True)
    as_tensor = fn(student, teacher, y)
    as_tensor.backward()
    assert teacher.grad is None and student.grad is not None
    assert as_tensor.item() == out.item()
    zero = Tensor(np.zeros((5, 4), np.float32), requires_grad=True)
    z = fn(zero, z_t, y)
    z.backward()
    assert np.isfinite(z.item()) and np.isfinite(zero.grad).all()


@pytest.mark.parametrize("lam, T, eta", [(0.7, 2.0, 2.5), (1.0, 1.0, 0.5)])
def test_both_conditional_losses_by_hand_with_eta_lam_and_T(lam, T, eta):
    """Steps 1-5 of docs/algorithm.md, section 6, in float64, with one wrong teacher row so that eta
    enters; the direct form is CE(z_s, y) + lam CE(z_s, q~)."""
    z_s = np.array([[1.0, -0.5, 0.2], [0.3, 0.9, -1.1], [-0.4, 0.1, 0.6]])
    z_t = np.array([[2.0, 0.1, -1.0], [1.5, -0.3, 0.2], [0.1, 0.2, 3.0]])
    y = np.array([0, 1, 2])                                       # the teacher is wrong on row 1
    q = _softmax64(z_t / np.linalg.norm(z_t, axis=1, keepdims=True))
    wrong = q.argmax(1) != y
    assert wrong.tolist() == [False, True, False]
    q = np.where(wrong[:, None], eta * np.eye(3)[y], q)
    q_tilde = _softmax64(q)
    q_dtype, _ = conditional_target(z_t.astype(np.float32), y, eta)
    assert q_dtype.dtype == np.float32                            # the teacher's dtype is kept
    p = _softmax64(z_s / np.linalg.norm(z_s, axis=1, keepdims=True))
    log_p_tilde = np.log(_softmax64(p))
    y_hat = np.full((3, 3), 1 - 1 / T)
    y_hat[np.arange(3), y] = 1 / T
    released = -((y_hat + lam * q_tilde) * log_p_tilde).sum(1).mean()
    assert smoothed_conditional_loss(Tensor(z_s), z_t, y, lam, T, eta).item() == pytest.approx(released, rel=1e-10)
    log_p = np.log(_softmax64(z_s))
    direct = -log_p[np.arange(3), y].mean() - lam * (q_tilde * log_p).sum(1).mean()
    assert direct_conditional_loss(Tensor(z_s), z_t, y, lam, eta).item() == pytest.approx(direct, rel=1e-10)
    assert np.allclose(conditional_target(z_t, y)[0], conditional_target(z_t, y, 1.0)[0])   # eta's default


# --------------------------------------------------------------------------- issue 28: baselines and memory by hand
def _att(f):
    """The attention map from its definition, float64: mean_c f^2 over channels, L2-normalised over L."""
    a = (np.asarray(f, float) ** 2).mean(axis=1)
    return a / np.sqrt((a ** 2).sum(axis=1, keepdims=True) + 1e-12)


def test_attention_map_and_loss_by_hand_over_several_anchors():
    rng = np.random.default_rng(3)
    fs = [rng.standard_normal((3, 4, 8)), rng.standard_normal((3, 5, 4))]
    ft = [rng.standard_normal((3, 6, 8)), rng.standard_normal((3, 2, 4))]
    np.testing.assert_allclose(attention_map(Tensor(fs[0])).data, _att(fs[0]), rtol=1e-12)
    expected = sum(((_att(s) - _att(t)) ** 2).sum(axis=1).mean() for s, t in zip(fs, ft)) * 7.0 / 2
    got = attention_transfer_loss([Tensor(f) for f in fs], ft, beta=7.0)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert attention_transfer_loss([Tensor(f) for f in fs], [Tensor(t) for t in ft], 7.0).item() == pytest.approx(expected)
    default = attention_transfer_loss([Tensor(f) for f in fs], ft).item()          # beta 1000 by default
    assert default == pytest.approx(expected * 1000 / 7.0, rel=1e-10)
    tiny = np.zeros((1, 2, 3))                                                      # all-zero features: finite
    assert np.isfinite(attention_map(Tensor(tiny)).data).all()


def test_attention_transfer_resamples_the_student_map_to_the_teacher_length():
    rng = np.random.default_rng(4)
    fs, ft = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 8))
    a_s = F.interpolate_linear(Tensor(_att(fs)[:, None, :]), 8).data[:, 0, :]
    expected = ((a_s - _att(ft)) ** 2).sum(axis=1).mean() * 3.0 / 2
    assert attention_transfer_loss([Tensor(fs)], [ft], beta=3.0).item() == pytest.approx(expected, rel=1e-10)
    gradcheck(lambda x: attention_transfer_loss([x], [ft], beta=3.0), fs)


def test_fitnet_hint_is_the_mean_squared_error_to_a_constant_teacher():
    rng = np.random.default_rng(5)
    s, t = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    assert fitnet_hint_loss(Tensor(s), t).item() == pytest.approx(((s - t) ** 2).mean(), rel=1e-12)
    teacher = Tensor(t, requires_grad=True)
    student = Tensor(s, requires_grad=True)
    fitnet_hint_loss(student, teacher).backward()
    assert teacher.grad is None                                        # the teacher is a constant
    np.testing.assert_allclose(student.grad, 2 * (s - t) / s.size, rtol=1e-12)


def test_memory_loss_by_hand():
    """KL(p_T || softmax(beta_S xi_S X_T^T)), beta_S = exp(log_beta) of the student's unit."""
    t, s = _heads()
    s.log_beta.data[...] = np.log(1.7)
    h_s = R.standard_normal((4, 6))
    p_t = t.associate(t.query_of(Tensor(R.standard_normal((4, 8))))).data
    xi = s.query_of(Tensor(h_s)).data
    z = 1.7 * xi @ t.patterns.data.T
    log_q = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    expected = (p_t * (np.log(p_t) - log_q)).sum(1).mean()
    assert memory_loss(s, Tensor(h_s), p_t, t.patterns.data).item() == pytest.approx(expected, rel=1e-10)


def test_teacher_association_is_the_teacher_units_retrieval_without_a_graph():
    t, _ = _heads()
    h = R.standard_normal((3, 8))
    p, patterns = teacher_association(t, Tensor(h))
    np.testing.assert_array_equal(p, t.associate(t.query_of(Tensor(h))).data)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert patterns is t.patterns.data and isinstance(p, np.ndarray)
    from tinysml.models.heads import LinearHead, MixtureHead
    rng = np.random.default_rng(0)
    mixture = MixtureHead(8, 3, rng, heads=[{"kind": "linear"}, {"kind": "hopfield", "patterns": 5, "dim": 4}])
    p_mix, _ = teacher_association(mixture, Tensor(h))                 # the memory inside a mixture
    assert p_mix.shape == (3, 5)
    with pytest.raises(TypeError, match=r"teacher's head \(LinearHead\) holds no Hopfield memory"):
        teacher_association(LinearHead(8, 3, rng), Tensor(h))


def test_transplant_whole_head_when_the_architectures_match_and_errors_otherwise():
    rng = np.random.default_rng(6)
    t, s = HopfieldHead(8, 3, rng, patterns=5, dim=4), HopfieldHead(8, 3, rng, patterns=5, dim=4)
    assert transplant(t, s) == "whole head"
    for name, value in t.state_dict().items():
        np.testing.assert_array_equal(s.state_dict()[name], value)
    t.patterns.data[...] += 1                                          # a copy, not a view
    assert not np.array_equal(s.patterns.data, t.patterns.data)
    t, s = _heads()                                                    # another feature width
    t.log_beta.data[...] = 0.37
    t.out.bias.data[...] = 0.11
    assert transplant(t, s) == "memory and output map"
    for a, b in [(s.patterns, t.patterns), (s.log_beta, t.log_beta), (s.out.weight, t.out.weight), (s.out.bias, t.out.bias)]:
        np.testing.assert_array_equal(a.data, b.data)
    from tinysml.models.heads import LinearHead
    with pytest.raises(TypeError, match="needs Hopfield memories, got LinearHead and HopfieldHead"):
        transplant(LinearHead(8, 3, rng), HopfieldHead(6, 3, rng, patterns=5, dim=4))
    with pytest.raises(ValueError, match=r"memories differ: teacher \(5, 4\)"):
        transplant(HopfieldHead(8, 3, rng, patterns=5, dim=4), HopfieldHead(6, 3, rng, patterns=6, dim=4))


