"""Forward and backward against PyTorch in float32 (skipped when torch is not installed)."""
import numpy as np
import pytest

from tinysml import Tensor
from tinysml import functions as F
from tinysml.models import BlockSpec, build_model, preset
from tinysml.models.mobilenet import Bottleneck
from tinysml.torch_twin import build_torch_twin, load_into_torch

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
R = np.random.default_rng(7)


def close(ours, theirs, rtol=1e-5):
    """Relative agreement of float32 results: elementwise rtol, with an absolute floor of rtol times
    the largest magnitude (sums of many float32 terms cancel)."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * max(1.0, float(np.abs(theirs).max())))


def run_both(fn_ours, fn_torch, *arrays):
    """Forward both, backward a random projection, return the (ours, torch) outputs and gradients."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yo, yt = fn_ours(*ours), fn_torch(*theirs)
    r = R.standard_normal(yo.shape).astype(np.float32)
    (yo * Tensor(r)).sum().backward()
    (yt * torch.from_numpy(r)).sum().backward()
    close(yo.data, yt)
    for o, t in zip(ours, theirs):
        close(o.grad, t.grad)


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("B, C, O, L, K, stride, padding, dilation, groups", [
    (4, 6, 16, 128, 3, 2, 1, 1, 1),     # the stem
    (1, 6, 8, 37, 5, 1, 2, 1, 1),       # batch 1, odd length
    (3, 8, 12, 50, 3, 1, 2, 2, 4),      # grouped, dilated
    (2, 5, 7, 21, 7, 2, 0, 1, 1),       # no padding
])
def test_conv1d(B, C, O, L, K, stride, padding, dilation, groups):
    run_both(lambda x, w, b: F.conv1d(x, w, b, stride, padding, dilation, groups),
             lambda x, w, b: torch.nn.functional.conv1d(x, w, b, stride, padding, dilation, groups),
             f32(B, C, L), f32(O, C // groups, K), f32(O))


@pytest.mark.parametrize("B, C, L, K, stride, dilation", [
    (4, 32, 64, 3, 1, 1), (1, 16, 33, 5, 2, 1), (3, 24, 40, 9, 1, 1), (2, 8, 31, 7, 2, 2), (2, 8, 16, 1, 1, 1)])
def test_depthwise_conv1d(B, C, L, K, stride, dilation):
    pad = dilation * (K - 1) // 2
    run_both(lambda x, w, b: F.dw_conv1d(x, w, b, stride, pad, dilation),
             lambda x, w, b: torch.nn.functional.conv1d(x, w[:, None, :], b, stride, pad, dilation, groups=C),
             f32(B, C, L), f32(C, K), f32(C))


@pytest.mark.parametrize("B, C, O, L", [(4, 32, 96, 64), (1, 7, 5, 13)])
def test_pointwise_conv1d(B, C, O, L):
    run_both(F.pw_conv1d, lambda x, w, b: torch.nn.functional.conv1d(x, w[:, :, None], b), f32(B, C, L), f32(O, C), f32(O))


def test_batch_norm_train_eval_and_running_stats():
    x, g, b = f32(8, 6, 20) * 3 + 1, f32(6), f32(6)
    rm, rv = np.zeros(6, np.float32), np.ones(6, np.float32)
    trm, trv = torch.zeros(6), torch.ones(6)
    run_both(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, training=True),
             lambda x, g, b: torch.nn.functional.batch_norm(x, trm, trv, g, b, training=True), x, g, b)
    close(rm, trm)
    close(rv, trv)
    run_both(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, training=False),
             lambda x, g, b: torch.nn.functional.batch_norm(x, trm, trv, g, b, training=False), x, g, b)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardswish", "hardsigmoid", "selu", "sigmoid"])
def test_activations(name):
    tf = {"relu": torch.relu, "relu6": torch.nn.functional.relu6, "hardswish": torch.nn.functional.hardswish,
          "hardsigmoid": torch.nn.functional.hardsigmoid, "selu": torch.selu, "sigmoid": torch.sigmoid}[name]
    run_both(lambda x: F.activation(x, name), tf, f32(4, 8, 33) * 4)


def test_softmax_losses_and_layernorm():
    z, labels = f32(6, 5), np.array([0, 4, 2, 2, 1, 3])
    run_both(lambda z: F.log_softmax(z, 1), lambda z: torch.log_softmax(z, 1), z)
    run_both(lambda z: F.cross_entropy(z, labels, 0.1),
             lambda z: torch.nn.functional.cross_entropy(z, torch.from_numpy(labels), label_smoothing=0.1), z)
    run_both(lambda x, g, b: F.layer_norm(x, g, b),
             lambda x, g, b: torch.nn.functional.layer_norm(x, (8,), g, b), f32(5, 8), f32(8), f32(8))
    run_both(lambda x: F.interpolate_linear(x, 13),
             lambda x: torch.nn.functional.interpolate(x, size=13, mode="linear", align_corners=False), f32(2, 3, 20))


@pytest.mark.parametrize("spec", [BlockSpec(5, 48, 16, 16, True, "hardswish", 1),
                                  BlockSpec(3, 64, 16, 24, True, "selu", 2),
                                  BlockSpec(9, 32, 24, 24, False, "selu", 1)])
def test_bottleneck(spec):
    block = Bottleneck(spec, spec.in_ch, spec.expand, spec.out_ch, np.random.default_rng(0))
    twin = build_torch_twin(build_model(preset("har-student", 6, 64, 4)))._modules["blocks"][0].__class__(block)
    load_into_torch(twin, block)
    x = f32(4, spec.in_ch, 32)
    xo = Tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo, yt = block(xo), twin(xt)
    r = f32(*yo.shape)
    (yo * Tensor(r)).sum().backward()
    (yt * torch.from_numpy(r)).sum().backward()
    close(yo.data, yt)
    close(xo.grad, xt.grad)
    tparams = dict(twin.named_parameters())
    for (name, p) in block.named_parameters():
        close(p.grad, tparams[name].grad)


@pytest.mark.parametrize("name", ["har-student", "har-teacher"])
def test_whole_network_train_and_eval(name):
    model = build_model(preset(name, 6, 100, 4), seed=1)
    twin = build_torch_twin(model)
    x = f32(8, 6, 100)
    logits = model(Tensor(x))
    close(logits.data, twin(torch.from_numpy(x)), rtol=1e-4)
    model.eval(); twin.eval()
    close(model(Tensor(x)).data, twin(torch.from_numpy(x)), rtol=1e-4)
