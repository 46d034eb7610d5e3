"""The 1-D MobileNetV3: docs/algorithm.md's counts (section 2), stage anchors, shapes, input errors, gradients."""
import numpy as np
import pytest

import tinysml
from tinysml import Tensor, nn, profile
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


@pytest.fixture
def backend():
    """Set a backend for one test and put the previous one back."""
    previous = tinysml.get_backend()
    yield tinysml.set_backend
    tinysml.set_backend(previous)


def _with_running_statistics(model, seed):
    """Non-trivial running statistics, so eval-mode batch norm is not the identity."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean[...] = rng.standard_normal(m.num_features).astype(np.float32)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features).astype(np.float32)
    return model


@pytest.mark.parametrize("kind", ["numba", "numpy"])
@pytest.mark.parametrize("name", ["har-student", "har-teacher"])
def test_inference_path_gives_the_graph_paths_bits(backend, kind, name):
    """In eval mode under no_grad the network runs Module.infer (arrays, no graph). It must compute
    bitwise what the per-operation path computes in eval mode with a graph: logits and every stage,
    for a batch and for one window, in the batch-invariant form too, from a Tensor or an array."""
    backend(kind)
    model = _with_running_statistics(build_model(preset(name, 9, 40, 5), seed=1), seed=2).eval()
    x = np.random.default_rng(3).standard_normal((4, 9, 40)).astype(np.float32)
    for batch in (x, x[:1]):
        for invariant in (False, True):
            with tinysml.batch_invariant(invariant):
                logits, stages = model(Tensor(batch), return_stages=True)     # graph path
                assert logits.requires_grad
                with tinysml.no_grad():
                    fast, fast_stages = model(Tensor(batch), return_stages=True)
                    from_array = model(batch)
            assert fast._ctx is None and not fast.requires_grad
            np.testing.assert_array_equal(fast.data, logits.data)
            np.testing.assert_array_equal(from_array.data, logits.data)
            for a, b in zip(fast_stages, stages, strict=True):
                np.testing.assert_array_equal(a.data, b.data)


def test_inference_path_keeps_training_mode_where_a_layer_is_in_it():
    """A batch norm left in training mode inside an eval-mode network uses (and updates) batch
    statistics under no_grad, as the per-operation path does."""
    fast, slow = (_with_running_statistics(build_model(preset("har-student", 9, 40, 5), seed=1), seed=2).eval()
                  for _ in range(2))
    for m in (fast, slow):
        m.blocks[1].train()
        m.stem.train()
    x = Tensor(np.random.default_rng(3).standard_normal((4, 9, 40)).astype(np.float32))
    expected = slow(x).data
    with tinysml.no_grad():
        got = fast(x).data
    np.testing.assert_array_equal(got, expected)
    for (name, a), (_, b) in zip(fast.named_buffers(), slow.named_buffers()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_module_infer_falls_back_to_forward():
    """A module without its own infer runs its forward on the array."""
    norm = nn.LayerNorm(6)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(norm.infer(x), norm(Tensor(x)).data)


def test_module_to_casts_or_moves_and_refuses_none():
    """``to(dtype)`` casts floating state, ``to("cpu")`` keeps it; ``to(None)`` is refused (NumPy
    reads a None dtype as float64, which would cast a model whose device was forgotten)."""
    norm = nn.LayerNorm(6)
    assert norm.to(np.float64).weight.data.dtype == np.float64
    assert norm.to("cpu").weight.data.dtype == np.float64
    with pytest.raises(TypeError, match=r"^Module.to needs a device \('cpu' or 'cuda'\) or a dtype, got None$"):
        norm.to(None)


def test_a_table_row_reads_as_written():
    """'k exp in out SE act stride [A]': '-' for no SE, SELU or hsw, A for an anchor (only as 8th word)."""
    from tinysml.models.mobilenet import _rows
    assert _rows("""
        3  64 32 32  SE  SELU 1
        5 144 48 48  -   hsw  2  A
        7  96 48 64  SE  hsw  2  B
    """) == (BlockSpec(3, 64, 32, 32, True, "selu", 1, False), BlockSpec(5, 144, 48, 48, False, "hardswish", 2, True),
             BlockSpec(7, 96, 48, 64, True, "hardswish", 2, False))
    with pytest.raises(KeyError):
        _rows("3 64 32 32 SE relu 1")


@pytest.mark.parametrize("name, head_width", [("har-student", 256), ("har-teacher", 256),
                                              ("realworld-student", 512), ("realworld-teacher", 512)])
def test_a_preset_carries_its_head_width_and_name(name, head_width):
    cfg = preset(name, 6, 100, 4, width_mult=0.5)
    assert (cfg.name, cfg.head_width, cfg.in_channels, cfg.length, cfg.num_classes, cfg.width_mult) == \
        (name, head_width, 6, 100, 4, 0.5)


def test_the_default_seed_is_zero():
    cfg = preset("har-student", 6, 40, 4)
    from tinysml.models.mobilenet import MobileNetV3
    default, zero, one = build_model(cfg).state_dict(), build_model(cfg, seed=0).state_dict(), build_model(cfg, seed=1).state_dict()
    direct = MobileNetV3(cfg).state_dict()
    assert all(np.array_equal(default[k], zero[k]) and np.array_equal(direct[k], zero[k]) for k in zero)
    assert not all(np.array_equal(one[k], zero[k]) for k in zero)


def test_non_float_windows_are_refused_by_their_dtype():
    model = build_model(preset("har-student", 6, 40, 4))
    with pytest.raises(TypeError, match=r"^expected floating-point windows, got dtype int64$"):
        model.check_input(np.zeros((2, 6, 40), np.int64))


def test_an_eval_mode_model_under_autograd_gives_input_gradients():
    """Eval mode with gradients on (saliency, attacks): the graph path, so the input gets a gradient
    equal to a finite difference; under no_grad the same logits from the array path."""
    model = build_model(preset("har-student", 6, 40, 4), seed=2).double().eval()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 6, 40)), requires_grad=True)
    logits = model(x)
    logits.sum().backward()
    assert x.grad is not None and np.abs(x.grad).sum() > 0
    d = np.random.default_rng(1).standard_normal(x.shape)
    eps = 1e-6
    with tinysml.no_grad():
        up, down = model(Tensor(x.data + eps * d)).data.sum(), model(Tensor(x.data - eps * d)).data.sum()
        np.testing.assert_allclose(model(Tensor(x.data)).data, logits.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((x.grad * d).sum(), (up - down) / (2 * eps), rtol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_the_unfused_activation_path_gives_the_fused_paths_numbers(monkeypatch, train):
    """An activation listed as unfused (nn.ConvBNAct.unfused, FUSE_SKIP) runs batch norm, SE and the
    activation as separate steps: the same numbers as the fused kernels, in training and inference."""
    from tinysml.models import mobilenet
    cfg = preset("har-student", 6, 40, 4)
    x = np.random.default_rng(0).standard_normal((3, 6, 40))

    def run():
        model = build_model(cfg, seed=1).double()
        model.train(train)
        if train:
            out = model(Tensor(x))
            out.sum().backward()
            return out.data, model.blocks[1].se.parameters()[0].grad
        with tinysml.no_grad():
            return model(Tensor(x)).data, None

    fused = run()
    monkeypatch.setattr(nn.ConvBNAct, "unfused", ("selu", "hardswish"))
    monkeypatch.setattr(mobilenet, "FUSE_SKIP", ("selu", "hardswish"))
    unfused = run()
    np.testing.assert_allclose(unfused[0], fused[0], rtol=1e-10, atol=1e-12)
    if train:
        np.testing.assert_allclose(unfused[1], fused[1], rtol=1e-9, atol=1e-12)
