"""Stage distillation (tinysml/distill/stage.py): the frequency attention and the stage loss from
their equations, the adapters, and which parameters each stage of both presets trains."""
import numpy as np
import pytest

from tinysml import Tensor, no_grad
from tinysml.distill import frequency_attention, stage_loss
from tinysml.distill.stage import StageAdapter
from tinysml.gradcheck import gradcheck

R = np.random.default_rng(3)


# --------------------------------------------------------------------------- stage
def test_frequency_attention_sums_to_one_and_favours_the_teacher_energy():
    t = np.arange(32)
    f = np.sin(2 * np.pi * 4 * t / 32)[None, None, :] * np.ones((2, 3, 1)) * 10
    a = frequency_attention(f)
    assert a.shape == (17,) and a.sum() == pytest.approx(1.0) and a.argmax() == 4
    np.testing.assert_allclose(frequency_attention(f, uniform=True), np.full(17, 1 / 17))
    assert frequency_attention(f, tau=100.0).std() < a.std()        # higher temperature: flatter


def dft_magnitude(x):
    """|sum_l x_l exp(-2 pi i f l / L)| for f = 0..L/2, as an explicit sum (no FFT)."""
    L = x.shape[-1]
    dft = np.exp(-2j * np.pi * np.outer(np.arange(L), np.arange(L // 2 + 1)) / L)     # (L, F)
    return np.abs(np.einsum("bcl,lf->bcf", x, dft))                                  # (B, C, F)


def attention_by_hand(ft, tau):
    """a = softmax_f(mean_{b,c} log(1 + |rFFT F_T|_f) / tau), in float64 from the equation."""
    score = np.log(1 + dft_magnitude(ft)).mean(axis=(0, 1)) / tau
    return np.exp(score - score.max()) / np.exp(score - score.max()).sum()


def test_frequency_attention_from_the_equation_in_float64():
    """docs/algorithm.md, section 3: the attention computed independently of the code's rFFT
    and attention, and one case worked out by hand."""
    ft = R.standard_normal((2, 3, 8)) * 3
    np.testing.assert_allclose(frequency_attention(ft, tau=0.5), attention_by_hand(ft, 0.5), rtol=1e-10)
    # a hand case: a constant signal of value 2 has |X_0| = 2L = 16 and no energy elsewhere
    flat = np.full((1, 1, 8), 2.0)
    s0 = np.log(17.0)
    want = np.array([np.exp(s0)] + [1.0] * 4) / (np.exp(s0) + 4)
    np.testing.assert_allclose(frequency_attention(flat, tau=1.0), want, rtol=1e-10)


def test_stage_loss_by_hand_and_zero_at_equality():
    """docs/algorithm.md, section 3: L_stage = MSE + gamma sum_f a_f mean_{b,c} (X_S,f - X_T,f)^2."""
    fs, ft = R.standard_normal((2, 3, 8)), R.standard_normal((2, 3, 8))
    a = attention_by_hand(ft, 0.5)
    spectral = ((dft_magnitude(fs) - dft_magnitude(ft)) ** 2).mean(axis=(0, 1))         # (F,)
    expected = ((fs - ft) ** 2).mean() + 0.3 * (a * spectral).sum()
    assert stage_loss(Tensor(fs), ft, gamma=0.3, tau=0.5).item() == pytest.approx(expected, rel=1e-10)
    assert stage_loss(Tensor(ft), ft).item() == pytest.approx(0.0, abs=1e-12)
    assert stage_loss(Tensor(fs), ft, gamma=0).item() == pytest.approx(((fs - ft) ** 2).mean())
    gradcheck(lambda x: stage_loss(x, ft, gamma=1.0), fs)
    with pytest.raises(ValueError, match="adapter"):
        stage_loss(Tensor(fs), ft[:, :2])


def test_adapter_maps_shapes_and_has_gradients():
    ad = StageAdapter((4, 10), (6, 7), np.random.default_rng(0))
    assert ad(Tensor(R.standard_normal((2, 4, 10)).astype(np.float32))).shape == (2, 6, 7)
    ad.conv.weight.data = ad.conv.weight.data.astype(np.float64)
    gradcheck(lambda x: ad(x), R.standard_normal((2, 4, 10)))


@pytest.mark.parametrize("student_name, teacher_name", [("har-student", "har-teacher"),
                                                       ("realworld-student", "realworld-teacher")])
def test_each_stage_trains_exactly_the_stem_its_blocks_and_its_adapter(student_name, teacher_name):
    """Stage s's parameters are the stem's, those of every block up to and including anchor s, and
    adapter s's: no more (a later block, another adapter, the head) and no fewer (the block at the
    anchor itself). Checked by name, for every stage of both preset pairs."""
    from tinysml.distill.stage import StudentStages
    from tinysml.models import build_model, preset
    C, L = (6, 128) if student_name.startswith("har") else (63, 225)
    student = build_model(preset(student_name, C, L, 4), seed=0)
    teacher = build_model(preset(teacher_name, C, L, 4), seed=1)
    wrapped = StudentStages(student, teacher)
    names = {id(p): n for n, p in wrapped.named_parameters()}
    assert len(student.anchors) == 3
    for s, anchor in enumerate(student.anchors):
        got = {names[id(p)] for p in wrapped.stage_parameters(s)}
        want = {n for n in names.values()
                if n.startswith("student.stem.") or n.startswith(f"adapter{s}.")
                or any(n.startswith(f"student.blocks.{i}.") for i in range(anchor + 1))}
        assert got == want, (s, sorted(got ^ want)[:5])
        assert any(n.startswith(f"student.blocks.{anchor}.") for n in got)


def test_a_stage_step_moves_its_parameters_and_nothing_else():
    """One optimiser step of stage 0's loss: the parameters of stage 0 change, every other parameter
    of the student (later blocks, the head, other adapters) keeps its bits."""
    from tinysml.distill.stage import StudentStages, stage_loss
    from tinysml.models import build_model, preset
    from tinysml.optim import AdamW
    student = build_model(preset("har-student", 6, 128, 4), seed=0)
    teacher = build_model(preset("har-teacher", 6, 128, 4), seed=1)
    wrapped = StudentStages(student, teacher)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 6, 128)).astype(np.float32))
    with no_grad():
        target = teacher.forward_stages(x, upto=0)[0][0].data
    trained = wrapped.stage_parameters(0)
    before = {n: p.data.copy() for n, p in wrapped.named_parameters()}
    opt = AdamW(trained, lr=1e-2)
    stage_loss(wrapped.stage_feature(x, 0), target).backward()
    opt.step()
    ids = {id(p) for p in trained}
    for n, p in wrapped.named_parameters():
        moved = not np.array_equal(before[n], p.data)
        if id(p) in ids and p.size > 1:
            assert moved, f"{n} is trained in stage 0 but did not move"
        if id(p) not in ids:
            assert not moved, f"{n} moved in stage 0"


def test_stage_loss_defaults_are_gamma_1_tau_1_frequency_aware():
    """The documented defaults (docs/algorithm.md): gamma = 1, tau = 1, the teacher's attention."""
    rng = np.random.default_rng(8)
    fs, ft = Tensor(rng.standard_normal((2, 3, 16))), rng.standard_normal((2, 3, 16)) * 2
    default = stage_loss(fs, ft).item()
    assert default == pytest.approx(stage_loss(fs, ft, 1.0, 1.0, False).item(), rel=1e-12)
    for other in (dict(gamma=2.0), dict(tau=2.0), dict(uniform=True)):
        assert default != pytest.approx(stage_loss(fs, ft, **other).item(), rel=1e-6), other


# --------------------------------------------------------------------------- issue 28: stage distillation's parts
def test_frequency_attention_defaults_dtype_and_large_features():
    rng = np.random.default_rng(9)
    ft = rng.standard_normal((2, 3, 16))
    a = frequency_attention(ft)
    np.testing.assert_array_equal(a, frequency_attention(ft, 1.0, False))             # tau 1, not uniform
    assert not np.allclose(a, frequency_attention(ft, 2.0))
    for uniform in (False, True):
        assert frequency_attention(ft.astype(np.float32), uniform=uniform).dtype == np.float32
    huge = frequency_attention(ft * 1e100, tau=0.01)                                   # scores near 23000: exp overflows unshifted
    assert np.isfinite(huge).all() and huge.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(frequency_attention(ft, uniform=True), np.full(9, 1 / 9))


def test_stage_adapter_is_the_identity_for_equal_shapes_and_seeded_otherwise():
    x = Tensor(R.standard_normal((2, 4, 8)).astype(np.float32))
    same = StageAdapter((4, 8), (4, 8), np.random.default_rng(0))
    assert same.parameters() == [] and np.array_equal(same(x).data, x.data)
    a1 = StageAdapter((4, 8), (6, 8), np.random.default_rng(3))
    a2 = StageAdapter((4, 8), (6, 8), np.random.default_rng(3))
    a3 = StageAdapter((4, 8), (6, 8), np.random.default_rng(4))
    assert [p.data.shape for p in a1.parameters()] == [(6, 4, 1)]                    # a 1x1 conv, no bias
    np.testing.assert_array_equal(a1.parameters()[0].data, a2.parameters()[0].data)
    assert not np.array_equal(a1.parameters()[0].data, a3.parameters()[0].data)
    unseeded = [StageAdapter((4, 8), (6, 8)).parameters()[0].data for _ in range(2)]   # no rng: still reproducible
    np.testing.assert_array_equal(*unseeded)


def test_student_stages_seeds_its_adapters_and_holds_them_in_its_state():
    from tinysml.distill.stage import StudentStages
    from tinysml.models import build_model, preset
    student = build_model(preset("har-student", 6, 64, 4), seed=0)
    teacher = build_model(preset("realworld-student", 6, 64, 4), seed=1)            # other widths: adapters convolve
    weights = lambda m: [p.data.copy() for a in m.adapters for p in a.parameters()]  # noqa: E731
    default, zero, one = StudentStages(student, teacher), StudentStages(student, teacher, 0), StudentStages(student, teacher, 1)
    assert weights(default) and all(np.array_equal(a, b) for a, b in zip(weights(default), weights(zero)))
    assert not any(np.array_equal(a, b) for a, b in zip(weights(zero), weights(one)))
    held = {id(p) for p in default.parameters()}
    assert all(id(p) in held for a in default.adapters for p in a.parameters())   # checkpoints carry them
    assert any(k.startswith("adapter0.") for k in default.state_dict())
    with pytest.raises(ValueError, match=r"^the student has 3 stage anchors and the teacher 2$"):
        class Two:
            def stage_shapes(self):
                return [(8, 4), (8, 2)]
        StudentStages(student, Two())

