"""ONNX export of a deployable model (optional extra: ``pip install 'tinysml[onnx]'``).

    tinysml export runs/student.npz student.onnx          # or, from Python:
    from tinysml.onnx_export import to_onnx
    to_onnx("runs/student.npz", "student.onnx")

The graph is written from the folded deploy tree (``tinysml.deploy.fold_model``), so it holds the
same arithmetic as ``Predictor``: the training-time scaling, every convolution with its batch
norm folded in, squeeze-excite, the pooled head and the classifier head (linear, MLP, Hopfield or
mixture). Input ``windows`` (batch, channels, time) float32 with a free batch size; outputs
``logits`` and ``probabilities`` (batch, classes). Opset 17 (LayerNormalization, attribute axes).

``to_onnx(..., check_windows=...)`` runs the serialised graph with onnxruntime (when installed) and
compares it with ``Predictor`` before anything is written; ``tinysml export`` always does so.
"""
from __future__ import annotations

import math

import numpy as np

from . import io
from .architecture import LN_EPS
from .deploy import Predictor, load_deploy_tree

OPSET = 17


class _Graph:
    """A tiny builder: named initialisers and nodes, each node's output a fresh name."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, array, name="c") -> str:
        self.count += 1
        name = f"{name}_{self.count}"
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def op(self, op_type: str, *inputs: str, name: str = "t", **attrs) -> str:
        self.count += 1
        out = f"{name}_{self.count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def act(self, name: str, x: str) -> str:
        if name == "hardswish":
            return self.op("HardSwish", x)
        if name == "relu":
            return self.op("Relu", x)
        if name == "selu":
            return self.op("Selu", x, alpha=1.6732632423543772848170429916717, gamma=1.0507009873554804934193349852946)
        if name == "hardsigmoid":
            return self.op("HardSigmoid", x, alpha=1 / 6, beta=0.5)
        if name == "identity":
            return x
        raise ValueError(f"activation {name!r} has no ONNX export")

    def conv(self, x: str, w, b=None, stride=1, pad=0, group=1) -> str:
        inputs = [x, self.const(w, "w")] + ([self.const(b, "b")] if b is not None else [])
        return self.op("Conv", *inputs, strides=[stride], pads=[pad, pad], group=group, kernel_shape=[w.shape[2]])

    def linear(self, x: str, w, b) -> str:
        """x (B, I) @ w.T + b, w (O, I)."""
        return self.op("Gemm", x, self.const(w, "w"), self.const(b, "b"), transB=1)


def _trunk(g: _Graph, tree: dict, x: str) -> str:
    """The folded trunk: (B, C, L) windows -> (B, H) pooled features, as in Predictor.features."""
    sc = tree.get("scaler")
    if sc is not None:                                                     # training-time scaling
        x = g.op("Div", g.op("Sub", x, g.const(np.asarray(sc["shift"])[:, None], "shift")),
                 g.const(np.asarray(sc["scale"])[:, None], "scale"))
        if sc["low"] is not None or sc["high"] is not None:
            low = -np.inf if sc["low"] is None else sc["low"]
            high = np.inf if sc["high"] is None else sc["high"]
            x = g.op("Clip", x, g.const(np.float32(low), "low"), g.const(np.float32(high), "high"))
    for layer in tree["layers"]:
        if layer["op"] == "stem":
            x = g.act("hardswish", g.conv(x, layer["w"], layer["b"], stride=2, pad=1))
        elif layer["op"] == "block":
            E, K = layer["wd"].shape
            h = g.act(layer["act"], g.conv(x, layer["we"][:, :, None], layer["be"]))                 # expand
            h = g.conv(h, layer["wd"][:, None, :], layer["bd"], layer["stride"], (K - 1) // 2, group=E)  # depthwise
            if "se1" in layer:
                s = g.op("ReduceMean", h, axes=[2], keepdims=1)                                        # (B, E, 1)
                s = g.op("Relu", g.conv(s, layer["se1"][:, :, None]))
                h = g.op("Mul", h, g.act("hardsigmoid", g.conv(s, layer["se2"][:, :, None])))
            h = g.conv(g.act(layer["act"], h), layer["wp"][:, :, None], layer["bp"])                  # project
            x = g.op("Add", h, x) if layer["residual"] else h
        else:
            x = g.act("hardswish", g.conv(x, layer["w"][:, :, None], layer["b"]))
    return g.act("hardswish", g.op("ReduceMean", x, axes=[2], keepdims=0))     # (B, H)


def _head(g: _Graph, spec: dict, params: dict, h: str) -> str:
    """The classifier head on (B, H) features -> (B, K) logits, as deploy._head_logits."""
    kind = spec.get("kind", "linear")
    if kind == "linear":
        return g.linear(h, params["fc.weight"], params["fc.bias"])
    if kind == "mlp":
        z = g.act("hardswish", g.linear(h, params["fc1.weight"], params["fc1.bias"]))
        return g.linear(z, params["fc2.weight"], params["fc2.bias"])
    if kind == "hopfield":
        xi = g.op("LayerNormalization", h, g.const(params["norm.weight"], "ln_w"), g.const(params["norm.bias"], "ln_b"),
                  axis=-1, epsilon=spec.get("eps", LN_EPS))
        xi = g.op("MatMul", xi, g.const(params["query.weight"].T, "wq"))
        X, beta = params["patterns"], math.exp(float(params["log_beta"][0]))
        for _ in range(spec.get("steps", 1)):                               # xi <- softmax(beta xi X^T) X
            scores = g.op("MatMul", xi, g.const(beta * X.T, "beta_XT"))
            xi = g.op("MatMul", g.op("Softmax", scores, axis=-1), g.const(X, "X"))
        return g.linear(xi, params["out.weight"], params["out.bias"])
    if kind == "mixture":
        gate = np.exp(params["gate"] - params["gate"].max())
        alpha = gate / gate.sum()
        terms = []
        for i, member in enumerate(spec["heads"]):
            sub = {k[len(f"head{i}."):]: v for k, v in params.items() if k.startswith(f"head{i}.")}
            p = g.op("Softmax", _head(g, member, sub, h), axis=-1)
            terms.append(g.op("Mul", p, g.const(np.float32(alpha[i]), "alpha")))
        mix = g.op("Sum", *terms)
        return g.op("Log", g.op("Max", mix, g.const(np.float32(1e-12), "floor")))
    raise ValueError(f"head kind {kind!r} has no ONNX export")


def build(deploy_tree: dict):
    """The onnx.ModelProto of a deploy tree."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install 'tinysml[onnx]'") from err
    g = _Graph()
    cfg = deploy_tree["config"]
    logits = _head(g, cfg["head"], deploy_tree["classifier"], _trunk(g, deploy_tree, "windows"))
    g.nodes.append(g.helper.make_node("Identity", [logits], ["logits"]))
    g.nodes.append(g.helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    f32 = onnx.TensorProto.FLOAT
    graph = g.helper.make_graph(
        g.nodes, cfg.get("name", "tinysml"),
        [g.helper.make_tensor_value_info("windows", f32, ["batch", cfg["in_channels"], cfg["length"]])],
        [g.helper.make_tensor_value_info("logits", f32, ["batch", cfg["num_classes"]]),
         g.helper.make_tensor_value_info("probabilities", f32, ["batch", cfg["num_classes"]])],
        g.inits)
    model = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid("", OPSET)], producer_name="tinysml")
    model.ir_version = min(model.ir_version, 8)              # readable by older runtimes too
    names = deploy_tree.get("class_names")
    if names:
        g.helper.set_model_props(model, {"class_names": ",".join(names)})
    onnx.checker.check_model(model)
    return model


def to_onnx(checkpoint: str, out: str, check_windows: np.ndarray | None = None) -> float | None:
    """Write ``out`` (.onnx) from a model or deploy checkpoint, checked against its own config first
    (``write_onnx`` says what the check windows do)."""
    return write_onnx(load_deploy_tree(checkpoint), out, check_windows)


def write_onnx(tree: dict, out: str, check_windows: np.ndarray | None = None,
               predictor: Predictor | None = None) -> float | None:
    """Write ``out`` (.onnx) from a checked deploy tree (``deploy.load_deploy_tree``).

    With ``check_windows`` and onnxruntime installed, the serialised graph is run on them and
    compared with ``predictor`` (default: the tree's NumPy Predictor) *before* the file is written;
    returns the largest logit difference. The file is written atomically (``io.write_atomic``), so a
    failure leaves no ``.onnx`` behind.
    """
    data = build(tree).SerializeToString()
    diff = None
    if check_windows is not None:
        try:
            diff = compare(data, predictor or Predictor(tree, use_numba=False, _checked=True), check_windows)
        except ImportError:
            diff = None
    io.write_atomic(out, lambda f: f.write(data))
    return diff


def compare(model, predictor: Predictor, windows: np.ndarray, atol: float = 1e-4) -> float:
    """Run an ONNX model (a path or its bytes) with onnxruntime and compare its logits with the
    predictor's; returns the largest difference, raises ValueError above ``atol`` (relative to the
    largest logit) and ImportError without onnxruntime."""
    import onnxruntime as ort
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"windows": np.asarray(windows, np.float32)})[0]
    want = predictor.logits(windows)
    diff = float(np.abs(got - want).max())
    if not diff <= atol * max(1.0, float(np.abs(want).max())):
        raise ValueError(f"onnxruntime's logits differ from tinysml.deploy's by {diff:.3g}; the ONNX file was not kept")
    return diff


def check(onnx_path: str, checkpoint: str, windows: np.ndarray, atol: float = 1e-4) -> float:
    """Compare a written .onnx file with ``Predictor`` on the checkpoint it came from (``compare``)."""
    return compare(onnx_path, Predictor.load(checkpoint, use_numba=False), windows, atol)
