"""The 1-D MobileNetV3: docs/algorithm.md's counts (section 2), stage anchors, shapes, input errors, gradients."""
import numpy as np
import pytest

from tinysml import Tensor, profile
from tinysml import functions as F
from tinysml.gradcheck import directional_check
from tinysml.models import BlockSpec, MobileNetConfig, build_model, make_divisible, preset
from tinysml.models.mobilenet import Bottleneck


@pytest.mark.parametrize("name, params_m, macs_m", [("realworld-teacher", 77.40, 309.7),
                                                     ("realworld-student", 52.31, 227.7)])
def test_realworld_presets_reproduce_spec_counts(name, params_m, macs_m):
    model = build_model(preset(name, 63, 225, 8))
    params = profile.count_params(model.backbone()) / 1e6
    macs = profile.backbone_macs(model, (63, 225)) / 1e6
    assert abs(params / params_m - 1) < 0.005, params
    assert abs(macs / macs_m - 1) < 0.005, macs


def test_small_presets_sizes_and_matching_anchors():
    teacher = build_model(preset("har-teacher", 9, 128, 6))
    student = build_model(preset("har-student", 9, 128, 6))
    assert 0.5e6 <= teacher.num_parameters() <= 2e6
    assert 30e3 <= student.num_parameters() <= 300e3
    assert teacher.stage_shapes() == student.stage_shapes() == [(48, 32), (96, 16), (160, 8)]
    assert profile.count_macs(student, (9, 128)) <= 0.5 * profile.count_macs(teacher, (9, 128))


def test_forward_shapes_and_stages():
    model = build_model(preset("har-student", 6, 100, 4))
    x = Tensor(np.random.default_rng(0).standard_normal((3, 6, 100)).astype(np.float32))
    logits, stages = model(x, return_stages=True)
    assert logits.shape == (3, 4)
    assert [s.shape[1:] for s in stages] == model.stage_shapes()
    truncated, _ = model.forward_stages(x, upto=1)
    assert len(truncated) == 2
    np.testing.assert_allclose(truncated[1].data, stages[1].data, rtol=1e-6)


def test_wrong_window_shape_names_the_expected_shape():
    model = build_model(preset("har-student", 6, 100, 4))
    with pytest.raises(ValueError, match=r"expected windows of shape \(B, 6, 100\).*got \(2, 9, 100\)"):
        model(Tensor(np.zeros((2, 9, 100), np.float32)))
    with pytest.raises(ValueError, match=r"\(B, 6, 100\).*got \(2, 6, 128\)"):
        model(Tensor(np.zeros((2, 6, 128), np.float32)))
    with pytest.raises(ValueError, match=r"got \(6, 100\)"):
        model(Tensor(np.zeros((6, 100), np.float32)))


def test_make_divisible():
    assert make_divisible(63) == 64 and make_divisible(64) == 64 and make_divisible(10) == 16 and make_divisible(4) == 8


def test_config_round_trip():
    cfg = preset("har-teacher", 6, 100, 4, head={"kind": "mlp", "hidden": 32})
    assert MobileNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope", 6, 100, 4)


@pytest.mark.parametrize("spec", [BlockSpec(5, 24, 8, 8, True, "hardswish", 1), BlockSpec(3, 16, 8, 12, True, "selu", 2)])
def test_bottleneck_with_se_directional_gradient(spec):
    block = Bottleneck(spec, spec.in_ch, spec.expand, spec.out_ch, np.random.default_rng(0))
    block.double()
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((3, spec.in_ch, 11)), requires_grad=True)
    r = rng.standard_normal(block(x).shape)
    directional_check(lambda: (block(x) * Tensor(r)).sum(), block.parameters() + [x])


def test_whole_small_mobilenet_directional_gradient():
    model = build_model(preset("har-student", 6, 40, 4), seed=3).double()
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((4, 6, 40)))
    y = np.array([0, 1, 2, 3])
    directional_check(lambda: F.cross_entropy(model(x), y), model.parameters(), n_directions=2)


def test_cost_and_latency_feed_the_model_its_own_dtype_and_device(monkeypatch):
    """count_macs and latency build their input on the model's array module and in its dtype (a
    NumPy input to a model on the GPU was an error; the GPU case itself runs in test_kernels_cuda)."""
    macs32 = profile.count_macs(build_model(preset("har-student", 6, 64, 4), seed=0), (6, 64))
    model = build_model(preset("har-student", 6, 64, 4), seed=0).double()
    seen = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, x, *a, **k: (seen.append(x.data.dtype), forward(self, x, *a, **k))[1])
    assert profile.count_macs(model, (6, 64)) == macs32
    profile.latency(model, (6, 64), repeats=2, warmup=1)
    assert len(seen) == 4 and set(seen) == {np.dtype(np.float64)}
