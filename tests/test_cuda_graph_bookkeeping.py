"""tinysml/cuda_graph.py's bookkeeping on any machine: warm-up, keys, static inputs, what runs eagerly,
re-capture when a watched array moves, the fallback when capture fails, and dropout draws refilled
before every replay. A stand-in ``capture`` records a "graph" that reruns the function on the static
inputs and writes into the outputs it returned, as a replayed CUDA graph does."""
import numpy as np

from tinysml import cuda_graph as G
from tinysml.functions.activation import dropout
from tinysml.random import manual_seed
from tinysml.tensor import Tensor


def stand_in_capture(fn, static):
    """Record by running ``fn`` once; a "launch" reruns it on the static inputs and writes the result
    into the outputs of the recording, as a replayed CUDA graph writes into its own buffers."""
    G._state["capturing"] = False
    outputs = np.array(fn(*static))

    def launch():
        outputs[...] = fn(*static)
    return launch, outputs, ()


class Counted:
    def __init__(self):
        self.eager = 0

    def __call__(self, x):
        self.eager += 1
        return x * 2.0


def test_warm_up_then_capture_then_replays_read_each_new_input():
    fn = Counted()
    g = G.GraphedFunction(fn, warmup=2, capture=stand_in_capture)
    xs = [np.full((4, 3), float(i), np.float32) for i in range(6)]
    outs = [np.array(g(x)) for x in xs]
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, x * 2)
    assert g.captures == 1 and g.replays == 4 and fn.eager == 2 + 1 + 4   # 2 warm-up, 1 capture, 4 replays


def test_each_shape_has_its_own_graph_and_ineligible_calls_stay_eager():
    fn = Counted()
    g = G.GraphedFunction(fn, warmup=0, capture=stand_in_capture, eligible=lambda arrays: len(arrays[0]) == 4)
    for _ in range(3):
        g(np.ones((4, 3), np.float32))
        g(np.ones((4, 5), np.float32))
        np.testing.assert_array_equal(g(np.ones((3, 3), np.float32)), 2)   # an epoch's last, smaller batch
    assert g.captures == 2 and set(g.graphs) == {(((4, 3), "float32"),), (((4, 5), "float32"),)}
    assert g.replays == 6


def test_a_moved_watched_array_drops_the_graph_and_captures_again():
    state = {"w": np.ones(3, np.float32)}
    g = G.GraphedFunction(lambda x: x + state["w"], watch=lambda: [state["w"]], warmup=0, capture=stand_in_capture)
    x = np.zeros(3, np.float32)
    g(x), g(x)
    assert g.captures == 1
    state["w"][...] = 5                               # changed in place: the same graph, new values
    np.testing.assert_array_equal(g(x), 5)
    assert g.captures == 1
    state["w"] = np.full(3, 7, np.float32)            # replaced (a model moved, a state loaded): recapture
    np.testing.assert_array_equal(g(x), 7)
    assert g.captures == 2


def test_a_failed_capture_falls_back_to_eager_for_good_and_says_why():
    reasons = []

    def broken(fn, static):
        raise RuntimeError("a host sync inside the step")
    fn = Counted()
    g = G.GraphedFunction(fn, warmup=1, capture=broken, on_fallback=reasons.append)
    for _ in range(4):
        np.testing.assert_array_equal(g(np.ones(2, np.float32)), 2)
    assert len(reasons) == 1 and reasons[0].startswith("RuntimeError: a host sync inside the step (at ")
    assert "broken" in reasons[0] and g.failed == reasons[0]
    assert fn.eager == 4 and g.captures == 0 and not G.capturing()


def test_dropout_masks_are_drawn_outside_the_graph_with_the_eager_numbers():
    """While capturing, a dropout mask is a static buffer; before every replay the recording refills
    each buffer, in the order of capture, with the draw an eager step makes from the same generator."""
    shapes = [((8, 16), 0.5), ((4, 4), 0.25)]
    manual_seed(7)
    eager = [[G.dropout_mask(None, shape, p, np, np.float32) for shape, p in shapes] for _ in range(3)]

    manual_seed(7)
    G._state["capturing"], G._state["draws"] = True, []
    buffers = [G.dropout_mask(None, shape, p, np, np.float32) for shape, p in shapes]
    draws = G._state["draws"]
    G._state["capturing"], G._state["draws"] = False, None
    seen = []
    rec = G.Recording(lambda: seen.append([b.copy() for b in buffers]), [], None, draws, ())
    for _ in range(3):
        rec.run(())
    for a, b in zip(eager, seen):
        for m, n in zip(a, b):
            np.testing.assert_array_equal(m, n)
    assert {float(v) for v in np.unique(seen[0][0])} == {0.0, 2.0}
    assert not G.capturing()


def test_dropout_in_a_network_draws_the_eager_numbers_when_not_capturing():
    manual_seed(3)
    a = dropout(Tensor(np.ones((5, 7), np.float32)), 0.4).data
    manual_seed(3)
    keep = np.random.default_rng(3).random((5, 7)) >= 0.4
    np.testing.assert_array_equal(a, keep.astype(np.float32) / np.float32(0.6))


def test_device_constant_on_the_cpu_is_the_numpy_scalar_of_before():
    like = np.zeros(3, np.float32)
    c = G.device_constant(0.1, like)
    assert c.dtype == np.float32 and c.shape == () and c == np.float32(0.1)


def deferred_capture(fn, static):
    """A stand-in for a function whose work is its side effects (it returns None): recording runs
    nothing, as a CUDA capture runs no kernel, and every launch runs ``fn`` on the static inputs."""
    return (lambda: fn(*static)), None, ()


def _precise_bn_model():
    from tinysml.models import build_model, preset
    return build_model(preset("har-student", 6, 32, 4, head={"kind": "linear", "dropout": 0.3}), seed=0)


def test_precise_bn_replayed_gives_the_eager_statistics_and_is_captured_once(monkeypatch):
    """train.recalibrate_batchnorm with its graph (the stand-ins make NumPy arrays "graphable"): the
    full batches are replayed with the momentum read from one device scalar refilled per batch, the
    last, smaller batch runs eagerly, and the statistics are those of the eager pass bit for bit.
    The graph is kept across epochs, and captured anew when a running statistic is replaced."""
    from tinysml.nn import BatchNorm1d, Dropout
    from tinysml.train import recalibrate_batchnorm
    monkeypatch.setattr(G, "graphs_possible", lambda array: True)
    monkeypatch.setattr(G, "cupy_capture", deferred_capture)
    X = np.random.default_rng(0).standard_normal((7 * 16 + 5, 6, 32)).astype(np.float32) * 2 + 1
    eager, graphed = _precise_bn_model(), _precise_bn_model()
    eager.eval()
    graphed.eval()
    before = dict(G.stats)
    for _ in range(2):                                             # two epochs' passes
        recalibrate_batchnorm(eager, X, batch_size=16, cuda_graph=False)
        recalibrate_batchnorm(graphed, X, batch_size=16, cuda_graph=True)
    made = {k: G.stats[k] - before.get(k, 0) for k in ("captures", "replays")}
    assert made == {"captures": 1, "replays": 5 + 7}, made          # 2 warm-up, capture + replay, 4 + 7 replays
    a, b = eager.state_dict(), graphed.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.allclose(a[k], 0) for k in a if k.endswith("running_mean"))
    bns = [m for _, m in graphed.named_modules() if isinstance(m, BatchNorm1d)]
    assert all(m.momentum == 0.1 for m in bns)                      # restored, modes too
    assert not graphed.training and all(not m.training for _, m in graphed.named_modules() if isinstance(m, Dropout))
    bns[0].running_mean = bns[0].running_mean.copy()                # replaced: never replay the old address
    recalibrate_batchnorm(graphed, X, batch_size=16, cuda_graph=True)
    assert G.stats["captures"] - before.get("captures", 0) == 2


def test_precise_bn_without_a_graph_never_touches_the_graph_machinery(monkeypatch):
    from tinysml.train import recalibrate_batchnorm

    def refuse(*args, **kwargs):
        raise AssertionError("no graph on the CPU")
    monkeypatch.setattr(G, "cupy_capture", refuse)
    model = _precise_bn_model()
    X = np.random.default_rng(1).standard_normal((40, 6, 32)).astype(np.float32)
    before = dict(G.stats)
    recalibrate_batchnorm(model, X, batch_size=16)
    assert dict(G.stats) == before and model.training


def test_a_models_graphs_go_with_the_model(monkeypatch):
    """eval_runner keeps its graphs per model in a weak dictionary; the runner holds the caller's
    forward (which refers to the model) only during a call, so a model that is dropped is collected,
    its graphs with it (a grid process trains many models in turn on one GPU)."""
    import gc
    import weakref
    from tinysml.tensor import no_grad
    monkeypatch.setattr(G, "graphs_possible", lambda array: True)
    monkeypatch.setattr(G, "cupy_capture", stand_in_capture)
    model = _precise_bn_model().eval()
    X = np.random.default_rng(2).standard_normal((40, 6, 32)).astype(np.float32)

    def forward(x):
        return model(Tensor(x)).data
    with no_grad():
        run = G.eval_runner(model, "test", forward, rows=8, graph=True)
        graphed = [np.array(run(X[s:s + 8])) for s in range(0, 40, 8)]    # 2 warm-up, a capture, replays
        eager = [forward(X[s:s + 8]) for s in range(0, 40, 8)]
    for a, b in zip(eager, graphed):
        np.testing.assert_array_equal(a, b)
    assert run.graphed.captures == 1 and run.graphed.replays == 3 and run.graphed.fn is None
    assert model in G._eval_graphs
    gone = weakref.ref(model)
    del model, run, forward
    gc.collect()
    assert gone() is None
