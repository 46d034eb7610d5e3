"""CUDA graphs: record the GPU work of a training step (or an eval forward) once, replay it per batch.

Why: at HAR sizes every kernel of a step is a few microseconds of GPU work, and each one costs tens
of microseconds of Python and CuPy on the host, so the GPU waits on the host. A CUDA graph is the
step's kernels recorded once (CuPy's stream capture) and launched again with one call: the host
cost of a step becomes that one call plus copying the batch in.

The rules a captured function lives by (``GraphedFunction`` enforces what it can, the code that
runs inside a step follows the rest; each place says ``capturing()``):

* **Static inputs.** The graph reads its inputs from device buffers allocated before capture; every
  call copies its arrays into them and replays. A graph is keyed by its inputs' shapes and dtypes.
* **Nothing crosses to the host inside it.** No ``.item()``, no ``float(array)``, no
  ``cupy.asarray(numpy_array)`` (CuPy raises on such a copy during capture). Constants are made on
  the device (``device_constant``), the loss is summed into a device accumulator read once per
  epoch (``train.TrainStep``), and a check that needs a value on the host (cross-entropy's label
  range) is skipped while capturing, the labels having been checked when the data was loaded.
* **Host numbers are frozen into it.** A Python scalar passed to a kernel is recorded with the
  kernel. What changes from step to step lives on the device: AdamW's step count and learning rate
  (``optim.AdamW`` keeps both as device scalars on a GPU, eager or graphed alike), and precise BN's
  momentum 1/(k+1) (``train.recalibrate_batchnorm``: one device scalar refilled before each batch).
* **Random draws happen outside it.** A dropout mask is drawn on the host before every replay, by
  the same generator and in the same order as an eager step would draw it, into a static buffer
  the graph reads (``dropout_mask``): graphed and eager training see the same numbers.
* **Memory of its own.** Everything allocated during capture comes from a memory pool that belongs
  to the graph, lives as long as it and serves nothing else, so a replay never writes over an
  array someone else holds.
* **Never stale.** Arrays allocated outside the graph and read or written by it (parameters,
  optimiser state) are baked in by address. Before every replay the addresses of ``watch()`` are
  compared with those at capture (a model's parameters and buffers, ``state_watch``; an
  optimiser's state); when one changed (a model moved with ``.to``, an optimiser whose state was
  loaded, a running statistic replaced) the graph is dropped and captured anew. Values may change
  freely in place: ``load_state_dict`` copies into the existing arrays.

``GraphedFunction`` is the mechanism, backend-neutral: ``capture`` is a function (``cupy_capture``
on a GPU; a test passes its own), so the bookkeeping is tested on any machine.
"""
from __future__ import annotations

import os
import traceback
import weakref
from collections import Counter

import numpy as np

from .backend import get_array_module

WARMUP = 2            # eager calls per input shape before capture (kernels compile, state is created)
_state = {"capturing": False, "draws": None}
stats = Counter()     # process-wide: "captures", "replays", "fallbacks" (what tests and benchmarks read)


def capturing() -> bool:
    """True while a graph is being recorded: nothing may be read from or copied to the host."""
    return _state["capturing"]


def enabled_by_default() -> bool:
    """Graphs are on unless ``TINYSML_CUDA_GRAPHS=0`` (eager is the reference; graphs are the fast path)."""
    return os.environ.get("TINYSML_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")


def device_constant(value, like):
    """A 0-d array holding ``value`` with the dtype and device of array ``like``. On the GPU it is
    filled by a kernel (the value travels as a kernel argument, no host copy), so it is legal while
    capturing; on the CPU it is ``numpy.asarray``, as before."""
    if isinstance(like, np.ndarray):
        return np.asarray(value, dtype=like.dtype)
    return get_array_module(like).full((), value, dtype=like.dtype)


def dropout_mask(rng, shape, p: float, xp, dtype):
    """The inverted-dropout multiplier m / (1 - p), m ~ Bernoulli(1 - p), drawn on the host from
    ``rng`` (None: the global generator at draw time, which the training loop re-seeds per epoch).

    While capturing, the mask goes into a static device buffer that is refilled, by the same draw,
    before every replay; the buffer is what the graph reads."""
    if _state["capturing"]:
        buffer = xp.empty(shape, dtype=dtype)
        _state["draws"].append((buffer, rng, tuple(shape), p))
        return buffer
    return _draw(rng, shape, p, xp, dtype)


def _draw(rng, shape, p, xp, dtype):
    from .random import get_rng
    keep = (rng if rng is not None else get_rng()).random(shape) >= p
    return xp.asarray(keep, dtype=dtype) / np.dtype(dtype).type(1 - p)


def addresses(arrays) -> tuple:
    """Where each array's data lives (device pointers for CuPy, buffer addresses for NumPy)."""
    return tuple(a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0] for a in arrays)


class Recording:
    """One captured graph: its static inputs, its outputs (arrays in its own pool), the random
    draws to refill before each launch, and the addresses it was recorded against."""

    def __init__(self, launch, inputs, outputs, draws, watched, keep_alive=()):
        self.launch, self.inputs, self.outputs, self.draws = launch, inputs, outputs, draws
        self.watched, self.keep_alive = watched, keep_alive

    def run(self, arrays):
        for static, a in zip(self.inputs, arrays):
            static[...] = a
        for buffer, rng, shape, p in self.draws:                 # in the order the eager step draws
            buffer[...] = _draw(rng, shape, p, get_array_module(buffer), buffer.dtype)
        self.launch()
        return self.outputs


def cupy_capture(fn, static_inputs):
    """Record ``fn(*static_inputs)`` as a CUDA graph on a capture stream, every allocation from a
    fresh memory pool. Returns (launch, outputs, keep_alive): ``launch()`` replays on the current
    stream; ``outputs`` are what ``fn`` returned (arrays in the pool, rewritten by each replay)."""
    import cupy as cp
    pool = cp.cuda.MemoryPool()
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()                                 # static inputs written, state ready
    with cp.cuda.using_allocator(pool.malloc), stream:
        stream.begin_capture()
        try:
            outputs = fn(*static_inputs)
        except BaseException:
            try:
                stream.end_capture()
            except Exception:                                      # the capture was already invalidated
                pass
            raise
        graph = stream.end_capture()
    return (lambda: graph.launch(cp.cuda.get_current_stream())), outputs, (graph, pool, stream)


class GraphedFunction:
    """``fn(*arrays)`` run eagerly for the first ``warmup`` calls of each input signature, then
    captured and replayed (see the module docstring for the rules ``fn`` must keep).

    fn:       takes device arrays, returns an array, a tuple of arrays or None; its outputs are
              overwritten by the next call (copy what must be kept).
    watch:    () -> arrays read or written by ``fn`` that live outside it; a change of any address
              drops the graph and captures again.
    eligible: (arrays) -> bool; calls that are not run eagerly every time (e.g. an epoch's last,
              smaller batch), so that no graph is kept for a shape seen once per epoch.
    capture:  how a graph is recorded (None: this module's ``cupy_capture`` at the time of recording);
              a test may pass another.
    on_fallback: called with the reason when capture fails; the function then runs eagerly for good.
    """

    def __init__(self, fn, watch=lambda: (), eligible=lambda arrays: True, warmup: int = WARMUP,
                 capture=None, on_fallback=None):
        self.fn, self.watch, self.eligible, self.warmup, self.capture = fn, watch, eligible, warmup, capture
        self.on_fallback = on_fallback or (lambda reason: None)
        self.graphs: dict = {}
        self.calls = Counter()
        self.captures = 0
        self.replays = 0
        self.failed: str | None = None

    def __call__(self, *arrays):
        if self.failed is not None or not self.eligible(arrays):
            return self.fn(*arrays)
        key = tuple((a.shape, str(a.dtype)) for a in arrays)
        rec = self.graphs.get(key)
        if rec is not None and rec.watched != addresses(self.watch()):
            del self.graphs[key]                       # an array it was recorded against moved: never replay stale
            rec = None
        if rec is None:
            self.calls[key] += 1
            if self.calls[key] <= self.warmup:
                return self.fn(*arrays)
            rec = self._record(key, arrays)
            if rec is None:
                return self.fn(*arrays)
        self.replays += 1
        stats["replays"] += 1
        return rec.run(arrays)

    def _record(self, key, arrays):
        xp = get_array_module(arrays[0])
        static = [xp.empty(a.shape, dtype=a.dtype) for a in arrays]
        for s, a in zip(static, arrays):
            s[...] = a
        _state["capturing"], _state["draws"] = True, []
        try:
            launch, outputs, keep_alive = (self.capture or cupy_capture)(self.fn, static)
            draws = _state["draws"]
        except Exception as err:                        # a host sync, an unsupported call: run eagerly
            where = traceback.extract_tb(err.__traceback__)[-3:]
            self.failed = f"{type(err).__name__}: {err} (at " + " <- ".join(
                f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(where)) + ")"
        finally:
            _state["capturing"], _state["draws"] = False, None
        if self.failed is not None:
            stats["fallbacks"] += 1
            self.graphs.clear()
            self.on_fallback(self.failed)
            return None
        self.captures += 1
        stats["captures"] += 1
        rec = Recording(launch, static, outputs, draws, addresses(self.watch()), keep_alive)
        self.graphs[key] = rec
        return rec


_eval_graphs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graphs_possible(array) -> bool:
    """Whether work on ``array`` can be recorded as a CUDA graph: a device array, not a NumPy one.
    (A test on the CPU replaces this and ``cupy_capture`` by stand-ins to run the bookkeeping.)"""
    return not isinstance(array, np.ndarray)


def wanted(array, graph: bool | None = None) -> bool:
    """Whether work on ``array`` is to be recorded as a CUDA graph: it lives on a GPU, and ``graph``
    says so (None: unless ``TINYSML_CUDA_GRAPHS=0``)."""
    return graphs_possible(array) and (enabled_by_default() if graph is None else bool(graph))


def state_watch(model):
    """() -> every array of ``model`` that a recorded forward reads or writes by address: its
    parameters' data and its buffers (batch norm's running statistics). The holders are found once
    and the arrays read from them at each call (a replay checks them), so a replaced array is seen."""
    holders = [(p, "data") for p in model.parameters()] + [
        (m, name) for _, m in model.named_modules() for name in getattr(m, "buffer_names", ())]
    return lambda: [getattr(holder, name) for holder, name in holders]


def eval_runner(model, key, fn, rows=None, graph=None, watch_also=()):
    """``fn(array) -> array(s)``, a no-grad forward of ``model`` for batches on its device (the eval
    forward; also precise BN's train-mode pass, train.recalibrate_batchnorm): on a GPU (and unless
    ``graph`` is False or ``TINYSML_CUDA_GRAPHS=0``) a ``GraphedFunction`` kept per model and ``key``
    (so validation captures once per run, not once per epoch), replaying batches of ``rows`` windows
    (None: any size); elsewhere ``fn`` itself. The graph is recorded against the model's parameters
    and buffers and the arrays ``watch_also``, and captured anew if any of them moves. The caller
    sets the model's mode and runs it under ``no_grad``, and copies each output before the next call.

    The graphs live as long as the model: the runner kept for it holds the caller's ``fn`` (which
    refers to the model) only during a call, so nothing it keeps refers to the model itself."""
    if not wanted(model.parameters()[0].data, graph):
        return fn
    graphs = _eval_graphs.setdefault(model, {})
    runner = graphs.get((key, rows))
    if runner is None:
        runner = graphs[(key, rows)] = GraphedFunction(
            None, eligible=lambda arrays: rows is None or len(arrays[0]) == rows)
        runner.state = state_watch(model)
    watch_also = list(watch_also)
    runner.watch = lambda: runner.state() + watch_also

    def run(*arrays):
        runner.fn = fn                                # the same computation; the caller's closure of now
        try:
            return runner(*arrays)
        finally:
            runner.fn = None
    run.graphed = runner
    return run
