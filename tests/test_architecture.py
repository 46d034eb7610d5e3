"""tinysml/architecture.py: the shapes a config implies equal the state of the network it builds,
and a config that cannot describe a network is refused by name."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from tinysml.architecture import ArchitectureError, check_config, state_shapes
from tinysml.models import BlockSpec, MobileNetConfig, build_model, preset

HEADS = [{"kind": "linear"}, {"kind": "mlp", "hidden": 24}, {"kind": "hopfield", "patterns": 8, "dim": 12, "eps": 1e-3},
         {"kind": "mixture", "heads": [{"kind": "hopfield", "patterns": 6, "dim": 8}, {"kind": "mlp", "hidden": 10}]}]


def shapes_of(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["har-teacher", "har-student"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: h["kind"])
def test_state_shapes_match_the_built_model(name, head):
    cfg = preset(name, 6, 100, 5, head=head)
    assert state_shapes(cfg.to_dict()) == shapes_of(build_model(cfg))


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from([1, 3, 5, 7]), st.integers(4, 40), st.integers(4, 24),
                               st.booleans(), st.sampled_from(["selu", "hardswish"]), st.sampled_from([1, 2])),
                     min_size=1, max_size=4),
       width_mult=st.sampled_from([0.5, 1.0, 1.3]), channels=st.integers(1, 9))
def test_state_shapes_match_random_networks(rows, width_mult, channels):
    blocks, prev = [], 8
    for k, e, o, se, act, s in rows:
        blocks.append(BlockSpec(k, e, prev, o, se, act, s))
        prev = o
    cfg = MobileNetConfig(tuple(blocks), channels, 33, 3, head_width=16, width_mult=width_mult)
    assert state_shapes(cfg.to_dict()) == shapes_of(build_model(cfg))


def test_epsilons_are_stored_and_used():
    cfg = preset("har-student", 6, 100, 4, bn_eps=1e-3, head={"kind": "hopfield", "eps": 1e-2})
    model = build_model(cfg.to_dict())
    assert {m.eps for _, m in model.named_modules() if type(m).__name__ == "BatchNorm1d"} == {1e-3}
    assert model.classifier.norm.eps == 1e-2


BAD_CONFIGS = [
    (lambda c: c.pop("in_channels"), "in_channels must be an integer"),
    (lambda c: c.update(num_classes="4"), "num_classes must be an integer"),
    (lambda c: c["blocks"][0].update(kernel=4), r"blocks\[0\]: kernel must be odd"),
    (lambda c: c["blocks"][1].update(stride=3), r"blocks\[1\]: stride must be an integer in \[1, 2\]"),
    (lambda c: c["blocks"][2].update(act="gelu"), r"blocks\[2\]: act must be one of"),
    (lambda c: c["blocks"][0].pop("expand"), r"blocks\[0\]: expand must be an integer"),
    (lambda c: c.update(blocks=[]), "blocks must be a non-empty list"),
    (lambda c: c.update(head={"kind": "tree"}), "config head: expected a head spec"),
    (lambda c: c.update(bn_eps=float("nan")), "bn_eps must be a finite positive number"),
    (lambda c: c["blocks"][3].update(expand=60000, out_ch=60000), "would have .* parameters"),
    (lambda c: c.update(unknown_option=1), "unexpected keyword argument 'unknown_option'"),
]


@pytest.mark.parametrize("corrupt,message", BAD_CONFIGS)
def test_bad_configs_are_refused_by_name(corrupt, message):
    cfg = preset("har-student", 6, 100, 4).to_dict()
    corrupt(cfg)
    with pytest.raises(ArchitectureError, match=message):
        build_model(cfg)


def test_a_config_object_is_checked_too():
    cfg = dataclasses.replace(preset("har-student", 6, 100, 4), in_channels=10**9)
    with pytest.raises(ArchitectureError, match="in_channels must be an integer in"):
        build_model(cfg)
    assert check_config(preset("har-student", 6, 100, 4).to_dict())["in_channels"] == 6
