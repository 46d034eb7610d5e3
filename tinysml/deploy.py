"""Embeddable inference: a trained MobileNetV3 as a handful of NumPy operations.

    from tinysml.deploy import Predictor
    predictor = Predictor.load("student.npz")          # a model or an exported checkpoint
    probs = predictor.predict_proba(windows)           # (B, C, L) raw sensor windows -> (B, K)

No graph and no training code: importing this module loads NumPy and the checkpoint reader only
(neither the autograd nor SciPy). At load time every batch norm is folded into the convolution
before it (w' = w gamma / sqrt(var + eps), b' = beta - mean gamma / sqrt(var + eps)) and the
training-time scaling stored in the checkpoint is applied to every input. With Numba installed the
whole trunk (scaling, stem, every bottleneck, the pooled head conv) runs as one compiled call over
buffers planned once per batch size (``kernels/cpu_network.py``); without it, or with
``TINYSML_BACKEND=numpy``, the same arithmetic runs layer by layer in NumPy (the fastest cold start).

A first answer never waits for Numba. The NumPy path answers at once while a background thread
imports Numba and loads the compiled kernels from its cache (about half a second here) or, when
they are not cached (a new container, a fresh install), compiles them (15-35 s here); the compiled
path takes over when they are ready (``Predictor.backend``, ``wait_compiled``), and the cache then
serves every later process. ``tinysml warmup`` compiles them ahead of time (an image build, an
install step). ``TINYSML_DEPLOY_COMPILE=now`` loads or compiles before the first answer instead
(as ``use_numba=True`` does), ``never`` keeps NumPy. The two paths compute the same
float32 arithmetic in different orders (the compiled one also vectorises exp for SELU): their
probabilities agree to about 1e-6 and their predicted classes wherever the top two are not within
about 1e-4 of each other (``tests/test_deploy.py`` holds them to that). Where no cache can be
written at all, the NumPy path answers and a warning says why (``kernels/cache_dir.py``). The
compiled path's pieces (the packed weights, when to compile, compiling) are in ``deploy_compiled.py``.

``StreamingRecognizer`` (``tinysml/streaming.py``, importable from here) wraps a Predictor for
live sensor streams: feed samples in chunks of any size; it classifies a window every ``hop``
samples and smooths the decisions.
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

from . import architecture, io
from .deploy_compiled import _network_kernel, _when_to_compile, compile_kernels, pack, work_buffers
from .kernels import reference

MAX_CHUNK = 256        # windows per compiled call: larger batches run in chunks, so work buffers stay bounded
# pretrained models shipped in the package (tinysml/pretrained/README.md says how each was made)
PRETRAINED = {"uci-har-student": "uci-har-student.deploy.npz"}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


# --------------------------------------------------------------------------- elementwise, in place
def _act(name, x):
    if name == "hardswish":
        x *= np.clip(x + 3, 0, 6) / 6
    elif name == "selu":
        neg = x <= 0
        x[neg] = SELU_ALPHA * np.expm1(x[neg])
        x *= SELU_SCALE
    elif name == "relu":
        np.maximum(x, 0, out=x)
    elif name == "hardsigmoid":
        x += 3
        np.clip(x, 0, 6, out=x)
        x /= 6
    elif name != "identity":
        raise ValueError(f"unknown activation {name!r}")
    return x


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _fold(state, conv, bn, eps):
    """Fold BN ``bn`` into the bias-free conv ``conv``: returns (w (O, C/G, K), b (O,))."""
    w = state[f"{conv}.weight"].astype(np.float32)
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + eps)
    b = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    return (w * scale[:, None, None]).astype(np.float32), b.astype(np.float32)


def fold_model(tree: dict, where: str = "checkpoint") -> dict:
    """The deployable form of a model checkpoint tree: folded weights, the config, scaling, classes.
    The tree is checked against its own config first (``architecture.check_model_tree``)."""
    architecture.check_model_tree(tree, where)
    cfg, state = tree["config"], tree["state"]
    eps = cfg.get("bn_eps", architecture.BN_EPS)
    _fold_bn = lambda conv, bn: _fold(state, conv, bn, eps)  # noqa: E731
    layers = []
    w, b = _fold_bn("stem.0", "stem.1")
    layers.append({"op": "stem", "w": w, "b": b})
    for i, spec in enumerate(cfg["blocks"]):
        p = f"blocks.{i}"
        we, be = _fold_bn(f"{p}.expand.0", f"{p}.expand.1")
        wd, bd = _fold_bn(f"{p}.depthwise.0", f"{p}.depthwise.1")
        wp, bp = _fold_bn(f"{p}.project.0", f"{p}.project.1")
        block = {"op": "block", "we": we[:, :, 0], "be": be, "wd": wd[:, 0, :], "bd": bd, "wp": wp[:, :, 0], "bp": bp,
                 "act": spec["act"], "stride": spec["stride"], "kernel": spec["kernel"],
                 "residual": bool(spec["stride"] == 1 and we.shape[1] == wp.shape[0])}
        if spec["se"]:
            block["se1"], block["se2"] = state[f"{p}.se.fc1.weight"], state[f"{p}.se.fc2.weight"]
        layers.append(block)
    wh, bh = _fold_bn("head_conv.0", "head_conv.1")
    layers.append({"op": "head", "w": wh[:, :, 0], "b": bh})
    classifier = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    return {"kind": "deploy", "config": cfg, "layers": layers, "classifier": classifier,
            "scaler": tree.get("scaler"), "class_names": tree.get("class_names"),
            **{k: tree[k] for k in ("dataset", "data_path") if tree.get(k) is not None}}


# --------------------------------------------------------------------------- classifier heads
def _head_logits(spec: dict, params: dict, h: np.ndarray) -> np.ndarray:
    kind = spec.get("kind", "linear")
    if kind == "linear":
        return h @ params["fc.weight"].T + params["fc.bias"]
    if kind == "mlp":
        z = h @ params["fc1.weight"].T + params["fc1.bias"]
        return _act("hardswish", z) @ params["fc2.weight"].T + params["fc2.bias"]
    if kind == "hopfield":
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        xi = ((h - mu) / np.sqrt(var + spec.get("eps", architecture.LN_EPS)) * params["norm.weight"] + params["norm.bias"]) @ params["query.weight"].T
        X, beta = params["patterns"], math.exp(float(params["log_beta"][0]))
        for _ in range(spec.get("steps", 1)):
            xi = _softmax(beta * (xi @ X.T)) @ X
        return xi @ params["out.weight"].T + params["out.bias"]
    if kind == "mixture":
        alpha = _softmax(params["gate"])
        mix = 0
        for i, member in enumerate(spec["heads"]):
            sub = {k[len(f"head{i}."):]: v for k, v in params.items() if k.startswith(f"head{i}.")}
            mix = mix + alpha[i] * _softmax(_head_logits(member, sub, h))
        return np.log(np.maximum(mix, 1e-12))
    raise ValueError(f"unknown head kind {kind!r} in checkpoint")


# --------------------------------------------------------------------------- the predictor
class Predictor:
    """Class probabilities for raw (B, C, L) windows from one checkpoint file."""

    def __init__(self, deploy_tree: dict, use_numba: bool | None = None, _checked: bool = False):
        if not _checked:                        # load() has checked it already (load_deploy_tree)
            architecture.check_deploy(deploy_tree, "deploy tree")
        self.tree = deploy_tree
        cfg = deploy_tree["config"]
        self.channels, self.length, self.num_classes = cfg["in_channels"], cfg["length"], cfg["num_classes"]
        self.head_spec = cfg["head"]
        self.layers = deploy_tree["layers"]
        self.classifier = deploy_tree["classifier"]
        self.class_names = deploy_tree.get("class_names") or [str(k) for k in range(self.num_classes)]
        sc = deploy_tree.get("scaler")
        self.scaler = None if sc is None else (np.asarray(sc["shift"], np.float32)[:, None],
                                               np.asarray(sc["scale"], np.float32)[:, None], sc["low"], sc["high"])
        self.network = None                     # the compiled trunk (kernels/cpu_network.py); None: NumPy layer by layer
        self.fused_head = None                  # a linear head with Numba: (W, b) for the kernel's linear_softmax
        self.compiling = None                   # the thread compiling the kernel, while it runs
        self.compile_error = None
        when = _when_to_compile(use_numba)
        if when == "now":
            self._attach(_network_kernel(use_numba))
        elif when == "background":
            self.compiling = threading.Thread(target=self._compile, name="tinysml-compile", daemon=True)
            self.compiling.start()

    # ----------------------------------------------------------------- the compiled path
    def _attach(self, network) -> None:
        """Switch to the compiled path. ``network`` is assigned after everything it reads and the
        fused head last, so a call running on another thread sees either path whole."""
        if network is None:
            return
        self.params, self.plan, self.scaling, self.work_shape = pack(self.tree)
        self.buffers = {}                   # batch size -> (work, vec, out); at most 2 sizes of <= MAX_CHUNK
        self.network = network
        if self.head_spec.get("kind", "linear") == "linear":
            self.fused_head = (np.ascontiguousarray(self.classifier["fc.weight"], np.float32),
                               np.ascontiguousarray(self.classifier["fc.bias"], np.float32))

    def _compile(self) -> None:
        """On the background thread: import Numba, compile (or load from the cache) every kernel
        this model calls, on buffers of its own, then switch. A failure leaves the NumPy path."""
        try:
            network = _network_kernel(None)
            if network is not None:
                compile_kernels(network, self.tree)
                self._attach(network)
        except Exception as err:  # noqa: BLE001 - the NumPy path keeps answering; the reason is kept
            self.compile_error = err
        finally:
            self.compiling = None

    @property
    def backend(self) -> str:
        """"numba" once the compiled path answers, else "numpy"."""
        return "numpy" if self.network is None else "numba"

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Wait for a background compile (if any) to finish; True when the compiled path answers."""
        thread = self.compiling
        if thread is not None:
            thread.join(timeout)
        return self.network is not None

    @classmethod
    def load(cls, path, use_numba: bool | None = None) -> "Predictor":
        """Read a model checkpoint (folded now) or an exported one (``tinysml export``); either is
        checked against its own config first (``load_deploy_tree``).

        use_numba: True, the compiled path or an error (loaded or compiled before this returns);
        False, NumPy only; None (default), NumPy answers at once while a background thread loads or
        compiles the kernels, and the compiled path takes over when they are ready
        (``TINYSML_DEPLOY_COMPILE``: ``background``, ``now`` or ``never``)."""
        return cls(load_deploy_tree(path), use_numba, _checked=True)

    # ----------------------------------------------------------------- input checks
    def check(self, windows, nan_policy: str = "raise") -> np.ndarray:
        """Validate (B, C, L) windows; returns float32. nan_policy "raise" rejects NaN/inf windows,
        "zero" replaces non-finite values by 0 (a masked sample)."""
        x = np.asarray(windows)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.channels, self.length):
            raise ValueError(f"expected windows of shape (B, {self.channels}, {self.length}) = (batch, channels, "
                             f"time steps), got {x.shape}")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"expected numeric windows, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)                      # no copy when already so
        if not np.isfinite(x).all():
            bad = ~np.isfinite(x)
            if nan_policy == "raise":
                rows = sorted(set(np.nonzero(bad)[0].tolist()))[:5]
                raise ValueError(f"windows {rows} contain NaN or inf; clean them or pass nan_policy='zero'")
            if nan_policy != "zero":
                raise ValueError(f"nan_policy must be 'raise' or 'zero', got {nan_policy!r}")
            x = np.where(bad, np.float32(0), x)
        return x

    # ----------------------------------------------------------------- forward
    def features(self, windows, nan_policy: str = "raise") -> np.ndarray:
        """(B, H) pooled features of the trunk (what the classifier head reads)."""
        x = self.check(windows, nan_policy)                               # (B, C, L)
        if x.shape[0] == 0:                                                # an empty batch: an empty answer
            return np.zeros((0, self.layers[-1]["w"].shape[0]), np.float32)
        if self.network is not None and len(x) <= MAX_CHUNK:               # one compiled call
            return self._network_features(x)
        if self.network is not None:                                       # one per chunk
            return np.concatenate([self._network_features(x[i:i + MAX_CHUNK]) for i in range(0, len(x), MAX_CHUNK)])
        if self.scaler is not None:
            shift, scale, low, high = self.scaler
            x = (x - shift) / scale
            if low is not None or high is not None:
                np.clip(x, low, high, out=x)
        for layer in self.layers:
            if layer["op"] == "stem":
                x = _act("hardswish", reference.conv1d_fwd(x, layer["w"], layer["b"], 2, 1, 1, 1))
            elif layer["op"] == "block":
                x = self._block(layer, x)
            else:
                x = _act("hardswish", np.matmul(layer["w"], x) + layer["b"][:, None])   # (B, H, L)
        return _act("hardswish", x.mean(axis=2))                          # (B, H)

    def _network_features(self, x) -> np.ndarray:
        """The fused kernel on (B <= MAX_CHUNK, C, L): buffers of the two latest batch sizes are kept."""
        B = x.shape[0]
        if B not in self.buffers:
            if len(self.buffers) >= 2:
                self.buffers.pop(next(iter(self.buffers)))
            self.buffers[B] = work_buffers(self.network, self.plan, self.work_shape, B)
        work, vec, out = self.buffers[B]
        run = self.network.network_forward_parallel if B >= 4 else self.network.network_forward
        run(x, self.params, self.plan, self.scaling, work, vec, out)
        return out.copy()

    def logits(self, windows, nan_policy: str = "raise") -> np.ndarray:
        """(B, K) class scores (log-probabilities up to a constant). Never silently wrong: scores
        that overflowed (finite but absurd weights) raise instead of becoming class 0."""
        return self._scores(windows, nan_policy)[0]

    def _scores(self, windows, nan_policy):
        """(logits, probabilities or None): a linear head with Numba computes both in one call."""
        h = self.features(windows, nan_policy)                            # (B, H)
        if self.fused_head is not None and len(h):
            z = np.empty((len(h), self.num_classes), np.float32)
            p = np.empty_like(z)
            finite = self.network.linear_softmax(h, *self.fused_head, z, p) == 0
        else:
            z, p = _head_logits(self.head_spec, self.classifier, h), None
            finite = np.isfinite(z).all()
        if not finite:
            rows = sorted(set(np.nonzero(~np.isfinite(z))[0].tolist()))[:5]
            raise FloatingPointError(f"the model produced NaN or infinite scores for windows {rows}: its weights "
                                     f"overflow float32 arithmetic on these inputs; the checkpoint is unusable")
        return z, p

    def _block(self, layer, x):
        h = _act(layer["act"], np.matmul(layer["we"], x) + layer["be"][:, None])        # expand (B, E, L)
        h = reference.dw_conv1d_fwd(h, layer["wd"], layer["bd"], layer["stride"], (layer["kernel"] - 1) // 2, 1)
        if "se1" in layer:
            s = np.maximum(h.mean(axis=2) @ layer["se1"].T, 0) @ layer["se2"].T           # (B, E)
            h *= _act("hardsigmoid", s)[:, :, None]
        h = np.matmul(layer["wp"], _act(layer["act"], h)) + layer["bp"][:, None]         # project (B, O, L')
        return h + x if layer["residual"] else h

    def predict_proba(self, windows, nan_policy: str = "raise") -> np.ndarray:
        """(B, K) class probabilities."""
        z, p = self._scores(windows, nan_policy)
        return _softmax(z) if p is None else p

    def predict(self, windows, nan_policy: str = "raise") -> np.ndarray:
        """(B,) class indices."""
        return self.logits(windows, nan_policy).argmax(axis=1)


def warmup() -> dict:
    """Compile and cache every kernel of the deployment path now (``tinysml warmup``), so that a
    later process starts on the compiled path. Returns where the cache is and how long it took."""
    import time
    from .kernels import cache_dir
    cache = cache_dir.choice()
    if not cache["writable"]:
        raise RuntimeError(f"no writable place for Numba's kernel cache: {cache['how']}")
    t0 = time.perf_counter()
    names = compile_kernels(_network_kernel(True), load_deploy_tree("uci-har-student"))
    return {"cache": cache_dir.kernel_folder(cache["dir"]), "how": cache["how"], "kernels": names,
            "seconds": time.perf_counter() - t0}


def pretrained_path(name: str) -> str:
    """The file of a pretrained model shipped with tinysml (``PRETRAINED``)."""
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained model {name!r}; shipped: {', '.join(sorted(PRETRAINED))}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", PRETRAINED[name])


def load_deploy_tree(path) -> dict:
    """The checked deploy tree of a model or deploy checkpoint (a path, or the name of a shipped
    pretrained model): a model is checked against its config and folded; a deploy file is checked
    against its config. Anything else is refused."""
    if isinstance(path, str) and path in PRETRAINED and not os.path.exists(path):
        path = pretrained_path(path)
    tree = io.load(path)
    kind = tree.get("kind")
    try:
        if kind == "model":
            return fold_model(tree, where=repr(str(path)))
        if kind == "deploy":
            architecture.check_deploy(tree, where=repr(str(path)))
            return tree
    except architecture.ArchitectureError as err:
        raise io.CheckpointError(str(err)) from err
    raise io.CheckpointError(f"{str(path)!r} holds a {kind!r} checkpoint; expected a model or deploy checkpoint")


def export(checkpoint: str, out: str) -> None:
    """Write the deployable checkpoint (folded weights, config, scaling, class names) of a model
    checkpoint, checked before anything is written."""
    tree = load_deploy_tree(checkpoint)
    io.save(out, tree)


# The streaming recognizer lives in tinysml/streaming.py; importable from here as before.
from .streaming import Decision, StreamingRecognizer  # noqa: E402,F401
