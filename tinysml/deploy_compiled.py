"""The compiled path of ``tinysml.deploy``: the packed form the fused kernel reads
(``kernels/cpu_network.py``), when to load or compile that kernel (now, on a background thread, or
never, decided without importing Numba), and compiling it.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import numpy as np


def pack(deploy_tree: dict):
    """The trunk of a deploy tree as the fused kernel's input (``kernels/cpu_network.py``):
    params (every folded weight in one float32 buffer, transposed for channels-last loops), plan (one int64 row per layer), scaling
    (shift (C,), scale (C,), low, high) and the work shape (N, V) a window needs."""
    from .kernels import cpu_network as net
    cfg, layers = deploy_tree["config"], deploy_tree["layers"]
    chunks, offset = [], 0

    def put(a):
        nonlocal offset
        a = np.ascontiguousarray(a, np.float32).ravel()
        chunks.append(a)
        offset += a.size
        return offset - a.size

    plan, N, V = [], 0, 1
    C, L = cfg["in_channels"], cfg["length"]
    for layer in layers:
        row = [0] * net.PLAN_WIDTH
        row[net.C_IN], row[net.L_IN] = C, L
        if layer["op"] == "stem":
            O, _, K = layer["w"].shape
            S, P = 2, 1
            Lout = (L + 2 * P - K) // S + 1
            row[net.OP], row[net.K], row[net.STRIDE], row[net.PAD] = net.OP_STEM, K, S, P
            row[net.ACT] = net.ACT_CODES["hardswish"]
            row[net.W1], row[net.B1] = put(layer["w"].transpose(2, 1, 0)), put(layer["b"])     # (K, C, O)
            N = max(N, C * (L + 2 * P), O * Lout)
        elif layer["op"] == "block":
            E, O, K, S = layer["we"].shape[0], layer["wp"].shape[0], layer["kernel"], layer["stride"]
            P = (K - 1) // 2
            Lout = (L + 2 * P - K) // S + 1
            row[net.OP], row[net.C_MID], row[net.K], row[net.STRIDE], row[net.PAD] = net.OP_BLOCK, E, K, S, P
            row[net.ACT], row[net.RESIDUAL] = net.ACT_CODES[layer["act"]], int(layer["residual"])
            row[net.W1], row[net.B1] = put(layer["we"].T), put(layer["be"])
            row[net.W2], row[net.B2] = put(layer["wd"].T), put(layer["bd"])
            row[net.W3], row[net.B3] = put(layer["wp"].T), put(layer["bp"])
            if "se1" in layer:
                row[net.SE_HIDDEN] = layer["se1"].shape[0]
                row[net.SE1], row[net.SE2] = put(layer["se1"]), put(layer["se2"].T)
                V = max(V, E + row[net.SE_HIDDEN])
            N = max(N, C * L, E * (L + 2 * P), E * Lout, O * Lout)
        else:                                                    # head: 1x1 conv, pooled
            O, Lout = layer["w"].shape[0], L
            row[net.OP], row[net.ACT] = net.OP_HEAD, net.ACT_CODES["hardswish"]
            row[net.W1], row[net.B1] = put(layer["w"].T), put(layer["b"])
            N = max(N, C * L, L * O)
        row[net.C_OUT], row[net.L_OUT] = O, Lout
        plan.append(row)
        C, L = O, Lout
    sc = deploy_tree.get("scaler")
    shift = np.zeros(cfg["in_channels"]) if sc is None else np.asarray(sc["shift"])
    scale = np.ones(cfg["in_channels"]) if sc is None else np.asarray(sc["scale"])
    low = -np.inf if sc is None or sc["low"] is None else sc["low"]
    high = np.inf if sc is None or sc["high"] is None else sc["high"]
    scaling = np.concatenate([shift, scale, [low, high]]).astype(np.float32)
    return np.concatenate(chunks), np.asarray(plan, np.int64), scaling, (N, V)


def work_buffers(network, plan, work_shape, batch: int) -> tuple:
    """The fused kernel's scratch and output for ``batch`` windows, all float32: work (B, 4, N) and
    vec (B, V) of ``pack``'s work shape, out (B, H) for the last layer's H channels."""
    N, V = work_shape
    return (np.empty((batch, 4, N), np.float32), np.empty((batch, V), np.float32),
            np.empty((batch, int(plan[-1, network.C_OUT])), np.float32))


COMPILE_MODES = ("background", "now", "never")
_warned: set = set()


def _when_to_compile(use_numba) -> str | None:
    """"now", "background" or None (NumPy only) for a Predictor, decided without importing Numba
    (kernels/cache_dir.py says whether its cache can be written at all)."""
    if use_numba is True:
        return "now"
    if use_numba is False or os.environ.get("TINYSML_BACKEND", "").lower() == "numpy":
        return None
    mode = os.environ.get("TINYSML_DEPLOY_COMPILE", "background").strip().lower()
    if mode not in COMPILE_MODES:
        raise ValueError(f"TINYSML_DEPLOY_COMPILE must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "never" or importlib.util.find_spec("numba") is None:
        return None
    from .kernels import cache_dir
    cache = cache_dir.choice()
    if not cache["writable"]:
        if "cache" not in _warned:
            _warned.add("cache")
            warnings.warn(f"tinysml.deploy: no writable place for Numba's kernel cache ({cache['how']}); "
                          "predicting with NumPy (run `tinysml warmup` where the cache can be written, "
                          "or set NUMBA_CACHE_DIR)", RuntimeWarning, stacklevel=_outside_tinysml(sys._getframe()))
        return None
    return "now" if mode == "now" else "background"   # cached or not: importing Numba alone is 0.4 s here


def _outside_tinysml(frame) -> int:
    """The ``stacklevel``, for a warning raised in ``frame``, of the nearest caller outside the
    tinysml package, so that it names the user's line whichever entry (``Predictor(...)``,
    ``Predictor.load``) led to it."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _network_kernel(use_numba):
    """The fused trunk kernel (``kernels/cpu_network.py``), or None when Numba is missing (an
    error instead with ``use_numba=True``)."""
    try:
        from .kernels import cpu_network
        return cpu_network
    except ImportError:
        if use_numba:
            raise
        return None


def compile_kernels(network, tree: dict) -> list:
    """Compile, or load from the cache, every kernel of the deployment path (``network`` is
    ``kernels/cpu_network.py``), by running each once on the buffers of the deploy tree ``tree``:
    the serial entry (batches under 4), the parallel one and the fused linear head. The compiled
    code depends on the arrays' types only, so one model warms them for all. Returns the names."""
    params, plan, scaling, work_shape = pack(tree)
    cfg = tree["config"]
    for B, run in ((1, network.network_forward), (4, network.network_forward_parallel)):
        x = np.zeros((B, cfg["in_channels"], cfg["length"]), np.float32)
        run(x, params, plan, scaling, *work_buffers(network, plan, work_shape, B))
    h, W, b = np.zeros((1, 4), np.float32), np.zeros((3, 4), np.float32), np.zeros(3, np.float32)
    network.linear_softmax(h, W, b, np.empty((1, 3), np.float32), np.empty((1, 3), np.float32))
    return ["network_forward", "network_forward_parallel", "linear_softmax"]
