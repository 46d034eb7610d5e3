"""The classifier heads (models/heads.py) against hand computations in NumPy: each head's forward,
its defaults and initialisation, which parameters it trains, and its errors in their words."""
import math

import numpy as np
import pytest

from tinysml import Tensor
from tinysml.architecture import LN_EPS
from tinysml.random import get_rng
from tinysml.models.heads import (HEADS, HopfieldHead, LinearHead, MixtureHead, MLPHead, build_head,
                                  memory_unit)

R = np.random.default_rng(11)


def rng():
    return np.random.default_rng(5)


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def hardswish(x):
    return x * np.clip(x + 3, 0, 6) / 6


def layer_norm(x, eps=LN_EPS):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def randomise(head):
    """Every parameter drawn afresh (float64), so no zero bias or unit gain hides a term."""
    head.double()
    for p in head.parameters():
        p.data = R.standard_normal(p.shape)
    return head


def hopfield_by_hand(head, h, steps):
    xi = layer_norm(h) * head.norm.weight.data + head.norm.bias.data
    xi = xi @ head.query.weight.data.T
    X, beta = head.patterns.data, math.exp(head.log_beta.data[0])
    first = None
    for _ in range(steps):
        p = softmax(beta * xi @ X.T)
        first = p if first is None else first
        xi = p @ X
    return xi @ head.out.weight.data.T + head.out.bias.data, first


def test_linear_and_mlp_heads_by_hand():
    h = R.standard_normal((4, 6))
    lin = randomise(LinearHead(6, 3, rng()))
    np.testing.assert_allclose(lin(Tensor(h)).data, h @ lin.fc.weight.data.T + lin.fc.bias.data, rtol=1e-12)
    mlp = randomise(MLPHead(6, 3, rng()))
    assert mlp.fc1.out_features == 128 and mlp.fc2.in_features == 128              # the default hidden width
    want = hardswish(h @ mlp.fc1.weight.data.T + mlp.fc1.bias.data) @ mlp.fc2.weight.data.T + mlp.fc2.bias.data
    np.testing.assert_allclose(mlp(Tensor(h)).data, want, rtol=1e-12)
    for head in (lin, mlp):                                  # no dropout by default: training mode is the same
        assert head.train().dropout.p == 0


@pytest.mark.parametrize("steps", [1, 2])
def test_hopfield_head_by_hand(steps):
    h = R.standard_normal((5, 7))
    head = randomise(HopfieldHead(7, 3, rng(), patterns=6, dim=4, steps=steps))
    logits, first = head(Tensor(h), return_association=True)
    want, want_first = hopfield_by_hand(head, h, steps)
    np.testing.assert_allclose(logits.data, want, rtol=1e-10)
    np.testing.assert_allclose(first.data, want_first, rtol=1e-10)
    np.testing.assert_allclose(head(Tensor(h)).data, want, rtol=1e-10)          # logits alone by default
    np.testing.assert_allclose(head.associate(head.query_of(Tensor(h)), Tensor(head.patterns.data[:3])).data,
                               softmax(math.exp(head.log_beta.data[0]) * head.query_of(Tensor(h)).data
                                       @ head.patterns.data[:3].T), rtol=1e-12)  # other patterns when given


def test_hopfield_head_defaults_and_initialisation():
    head = HopfieldHead(96, 5, rng())
    assert head.patterns.shape == (32, 64) and head.query.weight.shape == (64, 96) and head.query.bias is None
    assert head.steps == 1 and head.dropout.p == 0 and head.norm.eps == LN_EPS
    np.testing.assert_allclose(math.exp(head.log_beta.data[0]), 1 / math.sqrt(64), rtol=1e-6)
    assert not head.log_beta.requires_grad                   # beta is fixed unless learn_beta
    assert abs(head.patterns.data.std() - 1) < 0.05 and abs(head.patterns.data.mean()) < 0.05
    assert abs(head.query.weight.data.std() * math.sqrt(96) - 1) < 0.05
    given = HopfieldHead(96, 5, rng(), beta=0.3, learn_beta=True)
    np.testing.assert_allclose(math.exp(given.log_beta.data[0]), 0.3, rtol=1e-6)
    assert given.log_beta.requires_grad and any(p is given.log_beta for p in given.parameters())


def test_a_learnt_beta_gets_a_gradient_and_a_fixed_one_none():
    h = Tensor(R.standard_normal((3, 7)))
    for learn in (False, True):
        head = HopfieldHead(7, 3, rng(), patterns=4, dim=4, learn_beta=learn)
        head(h).sum().backward()
        assert (head.log_beta.grad is not None) == learn
        assert head.patterns.grad is not None and head.query.weight.grad is not None


def test_hopfield_head_errors_in_their_words():
    with pytest.raises(ValueError, match=r"^a Hopfield head needs at least as many patterns as classes \(6\), got 4$"):
        HopfieldHead(5, 6, rng(), patterns=4)
    HopfieldHead(5, 4, rng(), patterns=4)                    # as many patterns as classes is enough
    for steps in (0, 3):
        with pytest.raises(ValueError, match=rf"^Hopfield update steps must be 1 or 2, got {steps}$"):
            HopfieldHead(5, 3, rng(), steps=steps)


def test_mixture_head_by_hand_and_its_members_train():
    h = R.standard_normal((4, 6))
    mix = MixtureHead(6, 3, rng()).double()
    assert [type(m) for m in mix.members] == [HopfieldHead, LinearHead]          # the default members
    np.testing.assert_allclose(softmax(mix.gate.data), 0.5)                       # equal weights at first
    randomise(mix)
    members = [m(Tensor(h)).data for m in mix.members]
    alpha = softmax(mix.gate.data)
    want = np.log(sum(a * softmax(z) for a, z in zip(alpha, members)))
    np.testing.assert_allclose(mix(Tensor(h)).data, want, rtol=1e-10)
    owned = {id(p) for p in mix.parameters()}
    assert all(id(p) in owned for m in mix.members for p in m.parameters())
    mix(Tensor(h)).sum().backward()
    assert all(p.grad is not None for p in mix.parameters() if p.requires_grad)


def test_mixture_head_log_probabilities_stay_finite_where_every_member_is_sure_otherwise():
    mix = MixtureHead(2, 2, rng(), heads=({"kind": "linear"},)).double()
    mix.head0.fc.weight.data = np.array([[0.0, 0.0], [1e4, 0.0]])
    mix.head0.fc.bias.data = np.zeros(2)
    y = mix(Tensor(np.array([[1.0, 0.0]]))).data
    np.testing.assert_allclose(y, [[math.log(1e-12), 0.0]], atol=1e-12)
    with pytest.raises(ValueError, match="^a mixture head needs at least one head$"):
        MixtureHead(2, 2, rng(), heads=())


def test_memory_unit_finds_the_hopfield_memory_or_none():
    hop = HopfieldHead(6, 3, rng())
    assert memory_unit(hop) is hop
    mix = MixtureHead(6, 3, rng(), heads=({"kind": "linear"}, {"kind": "hopfield"}))
    assert memory_unit(mix) is mix.members[1]
    assert memory_unit(MixtureHead(6, 3, rng(), heads=({"kind": "linear"},))) is None
    assert memory_unit(LinearHead(6, 3, rng())) is None


def test_build_head_from_a_spec():
    spec = {"kind": "mlp", "hidden": 16, "dropout": 0.2}
    head = build_head(spec, 6, 3, rng())
    assert isinstance(head, MLPHead) and head.fc1.out_features == 16 and head.dropout.p == 0.2
    assert spec == {"kind": "mlp", "hidden": 16, "dropout": 0.2}                  # the caller's spec is untouched
    assert isinstance(build_head({"dropout": 0.1}, 6, 3, rng()), LinearHead)      # linear unless named
    assert sorted(HEADS) == ["hopfield", "linear", "mixture", "mlp"]
    with pytest.raises(ValueError, match=r"^unknown head kind 'conv'; expected one of \['hopfield', 'linear', "
                                         r"'mixture', 'mlp'\]$"):
        build_head({"kind": "conv"}, 6, 3, rng())
    with pytest.raises(ValueError, match=r"^bad hyper-parameters for head 'linear': .*'width'"):
        build_head({"kind": "linear", "width": 3}, 6, 3, rng())


@pytest.mark.parametrize("kind", ["linear", "mlp", "hopfield"])
def test_a_heads_dropout_acts_in_training_only(kind):
    h = Tensor(R.standard_normal((8, 6)))
    head = randomise(build_head({"kind": kind, "dropout": 0.5}, 6, 3, rng()))
    plain = randomise(build_head({"kind": kind}, 6, 3, rng()))
    plain.load_state_dict(head.state_dict())
    np.testing.assert_allclose(head.eval()(h).data, plain(h).data, rtol=1e-12)
    assert not np.allclose(head.train()(h).data, plain(h).data)


@pytest.mark.parametrize("spec", [{"kind": "linear"}, {"kind": "mlp"}, {"kind": "hopfield"}, {"kind": "mixture"}])
def test_a_head_is_drawn_from_its_generator_alone(spec):
    """The same seed gives the same head, whatever the global generator did in between."""
    first = build_head(spec, 6, 3, np.random.default_rng(9)).state_dict()
    get_rng().standard_normal(10)                            # the global generator moves on
    second = build_head(spec, 6, 3, np.random.default_rng(9)).state_dict()
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
