"""A PyTorch twin of a tinysml MobileNetV3, with identical weights: the test oracle and the
benchmark peer (``pip install 'tinysml[torch]'``). Not used by tinysml itself.

The twin's state-dict names equal tinysml's, so weights copy one to one.
"""
from __future__ import annotations

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the PyTorch twin needs torch: pip install 'tinysml[torch]'") from err
    return torch


def _act(name):
    nn = _torch().nn
    return {"selu": nn.SELU, "hardswish": nn.Hardswish, "relu": nn.ReLU, "relu6": nn.ReLU6,
            "hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[name]()


def build_torch_twin(model):
    """A torch.nn.Module computing the same function as ``model`` (a MobileNetV3), weights copied."""
    torch = _torch()
    nn = torch.nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc1 = nn.Linear(c, c // 4, bias=False)
            self.fc2 = nn.Linear(c // 4, c, bias=False)

        def forward(self, x):
            s = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(x.mean(2)))))
            return x * s[:, :, None]

    class Bottleneck(nn.Module):
        def __init__(self, block):
            super().__init__()
            e, dw, p = block.expand[0], block.depthwise[0], block.project[0]
            self.expand = nn.Sequential(nn.Conv1d(e.in_channels, e.out_channels, 1, bias=False),
                                        nn.BatchNorm1d(e.out_channels), _act(block.expand[2].name))
            self.depthwise = nn.Sequential(nn.Conv1d(dw.in_channels, dw.out_channels, dw.kernel_size, dw.stride,
                                                     dw.padding, dw.dilation, dw.groups, bias=False),
                                           nn.BatchNorm1d(dw.out_channels))
            self.se = SE(dw.out_channels) if block.se is not None else None
            self.act = _act(block.act.name)
            self.project = nn.Sequential(nn.Conv1d(p.in_channels, p.out_channels, 1, bias=False),
                                         nn.BatchNorm1d(p.out_channels))
            self.residual = block.residual

        def forward(self, x):
            h = self.depthwise(self.expand(x))
            if self.se is not None:
                h = self.se(h)
            h = self.project(self.act(h))
            return h + x if self.residual else h

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            s = model.stem[0]
            self.stem = nn.Sequential(nn.Conv1d(s.in_channels, s.out_channels, 3, 2, 1, bias=False),
                                      nn.BatchNorm1d(s.out_channels), nn.Hardswish())
            self.blocks = nn.Sequential(*[Bottleneck(b) for b in model.blocks])
            h = model.head_conv[0]
            self.head_conv = nn.Sequential(nn.Conv1d(h.in_channels, h.out_channels, 1, bias=False),
                                           nn.BatchNorm1d(h.out_channels), nn.Hardswish())
            fc = model.classifier.fc
            self.classifier = nn.Sequential()
            self.classifier.fc = nn.Linear(fc.in_features, fc.out_features)

        def forward(self, x):
            h = nn.functional.hardswish(self.head_conv(self.blocks(self.stem(x))).mean(2))
            return self.classifier.fc(h)

    if type(model.classifier).__name__ != "LinearHead":
        raise NotImplementedError("the torch twin supports the linear classifier head")
    net = Net()
    load_into_torch(net, model)
    return net


def load_into_torch(net, module) -> None:
    """Copy a tinysml module's state into a torch module with the same names (conv weights of
    depthwise layers are stored (C, 1, K) on both sides)."""
    torch = _torch()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in module.state_dict().items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"torch twin mismatch: missing {missing}, unexpected {unexpected}")
