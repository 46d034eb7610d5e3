"""The deployment path against PyTorch eager and onnxruntime, side by side in one process, plus the
cold start of a whole deployment process and its peak memory.

    python bench/deploy_latency.py [--threads 2] [--repeats 300] [--rounds 3]

Model: ``har-student`` on (9, 128), linear head (the PyTorch twin supports it), batch norm folded
by tinysml.deploy. onnxruntime (extra ``onnx``) runs the graph ``tinysml export`` writes, at 1 and
at 2 intra-op threads; the ratio that counts is against its best. PyTorch runs with ``--threads``.
Each latency is the median of ``--repeats`` calls; the paths take turns for ``--rounds`` rounds and
each keeps its best round (the machine is shared; a neighbour's burst should not decide a ratio).
Every library in the process gets the same glibc allocator settings (``timing.TUNABLES``).

Cold start = the wall time of a whole new process, seen from outside: interpreter start, imports,
loading the checkpoint, one prediction, and interpreter exit (median of 5, after one run that warms
the OS file cache), in the three states a deployment meets: an **empty kernel cache** (every run its
own new ``NUMBA_CACHE_DIR``: a new container, a fresh install; the NumPy path answers while the
compiler runs behind, and the process exits without waiting for it), the cache filled by
**``tinysml warmup``** (an image build's step), and **NumPy only** (``TINYSML_BACKEND=numpy``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best_of_rounds, blas_kernels, median_ms, same_allocator_for_everyone, verdict  # noqa: E402

if __name__ == "__main__":
    same_allocator_for_everyone()

import numpy as np  # noqa: E402

COLD_TINYSML = """
import numpy as np
from tinysml.deploy import Predictor
Predictor.load({path!r}).predict_proba(np.zeros((1, 9, 128), np.float32))
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])   # peak RSS, kB
"""
UNTIL_COMPILED = """
import time
t0 = time.perf_counter()
from tinysml.deploy import Predictor
p = Predictor.load({path!r})
assert p.wait_compiled(), p.compile_error
print(time.perf_counter() - t0)
"""
COLD_ORT = """
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
ort.InferenceSession({path!r}, so, providers=["CPUExecutionProvider"]).run(
    ["probabilities"], {{"windows": np.zeros((1, 9, 128), np.float32)}})
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""


def whole_process(code: str, env, runs: int = 5):
    """(median wall seconds, median peak MiB) of ``python -c code`` as a whole process. ``env``: a
    dict, or a function giving each run its own (a fresh, empty kernel cache per run)."""
    env_for = env if callable(env) else (lambda: env)
    subprocess.run([sys.executable, "-c", code], capture_output=True, env=env_for(), check=True)   # warm the OS's caches
    walls, peaks = [], []
    for _ in range(runs):
        run_env = env_for()
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env, check=True)
        walls.append(time.perf_counter() - t0)
        peaks.append(int(out.stdout.split()[-1]) / 1024)
    return float(np.median(walls)), float(np.median(peaks))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="PyTorch's threads (and the Numba pool's)")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds over all paths; each path's figure is its best round's median")
    args = ap.parse_args(argv)
    import torch
    from tinysml import io
    from tinysml.deploy import Predictor
    from tinysml.models import build_model, preset
    from tinysml.torch_twin import build_torch_twin
    torch.set_num_threads(args.threads)
    model = build_model(preset("har-student", 9, 128, 6), seed=0)
    twin = build_torch_twin(model).eval()
    path = os.path.join(tempfile.mkdtemp(), "student.npz")
    io.save_model(path, model)
    onnx_path = path.replace(".npz", ".onnx")
    sessions = {}
    try:
        import onnxruntime as ort
        from tinysml.onnx_export import to_onnx
        to_onnx(path, onnx_path)                        # tinysml's own export: the same folded graph
        for threads in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sessions[threads] = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - optional peer
        print(f"(onnxruntime not compared: {type(err).__name__}: {str(err)[:80]})")
    predictors = {"tinysml.deploy (numba)": Predictor.load(path, use_numba=True), "tinysml.deploy (numpy only)":
                  Predictor.load(path, use_numba=False)}
    print(f"har-student (9, 128), linear head; torch and the Numba pool at {args.threads} threads; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}")
    print(blas_kernels())
    targets = []
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal((batch, 9, 128)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            want = twin(xt).numpy()
        paths = {}
        for name, p in predictors.items():
            assert np.allclose(p.logits(x), want, atol=1e-4), name
            paths[name] = lambda p=p: p.predict_proba(x)

        def torch_eager():
            with torch.no_grad():
                twin(xt)
        paths["torch eager"] = torch_eager
        for threads, sess in sessions.items():
            assert np.allclose(sess.run(["logits"], {"windows": x})[0], want, atol=1e-4)
            paths[f"onnxruntime, {threads} thread{'s' if threads > 1 else ''}"] = (
                lambda sess=sess: sess.run(["probabilities"], {"windows": x}))
        rows = best_of_rounds({name: (lambda fn=fn: median_ms(fn, args.repeats, warmup=10))
                               for name, fn in paths.items()}, args.rounds)
        ort_best = min((ms for name, ms in rows.items() if name.startswith("onnxruntime")), default=float("nan"))
        print(f"\nbatch-{batch} latency (median of {args.repeats} calls, best of {args.rounds} alternating rounds)")
        print(f"{'path':<30}{'median ms':>10}{'vs torch':>10}{'vs ort best':>13}")
        for name, ms in rows.items():
            print(f"{name:<30}{ms:>10.3f}{ms / rows['torch eager']:>10.2f}{ms / ort_best:>13.2f}")
        ratio = rows["tinysml.deploy (numba)"] / ort_best
        targets.append((f"deploy batch {batch} <= 0.7x onnxruntime (best of 1, 2 threads)", f"{ratio:.2f}x",
                        verdict(ratio <= 0.7)))

    print("\ncold start, whole process (start, import, load, one prediction, exit; median of 5) and peak RSS:")
    cold, caches = {}, tempfile.mkdtemp(prefix="tinysml-cold-")
    warm = os.path.join(caches, "warm")
    subprocess.run([sys.executable, "-m", "tinysml.cli", "warmup"], check=True, capture_output=True,
                   env=dict(os.environ, NUMBA_CACHE_DIR=warm))                    # as an image build would
    fresh = iter(range(10**6))
    cases = {"tinysml, empty kernel cache": lambda: dict(os.environ, NUMBA_CACHE_DIR=os.path.join(caches, f"empty{next(fresh)}")),
             "tinysml, after tinysml warmup": dict(os.environ, NUMBA_CACHE_DIR=warm),
             "tinysml, numpy only": dict(os.environ, TINYSML_BACKEND="numpy")}
    for label, env in cases.items():
        cold[label] = whole_process(COLD_TINYSML.format(path=path), env)
    if sessions:
        cold["onnxruntime, 1 thread"] = whole_process(COLD_ORT.format(path=onnx_path), dict(os.environ))
    for label, (wall, mib) in cold.items():
        print(f"  {label:<32}{wall:.3f} s   {mib:.0f} MiB")
    print("until the compiled path answers (a new process, from the start of Predictor.load):")
    for label, cache in (("after tinysml warmup", warm), ("empty kernel cache", os.path.join(caches, "empty-once"))):
        out = subprocess.run([sys.executable, "-c", UNTIL_COMPILED.format(path=path)], capture_output=True, text=True,
                             env=dict(os.environ, NUMBA_CACHE_DIR=cache), check=True)
        print(f"  {label:<32}{float(out.stdout.split()[-1]):.2f} s (NumPy answers until then)")
    wall = cold["tinysml, empty kernel cache"][0]
    targets.append(("cold start with an empty kernel cache <= 0.5 s (whole process)", f"{wall:.3f} s",
                    verdict(wall <= 0.5)))
    wall = cold["tinysml, after tinysml warmup"][0]
    targets.append(("cold start after tinysml warmup < 0.5 s (whole process)", f"{wall:.3f} s", verdict(wall < 0.5)))
    print("\ntargets")
    for name, value, status in targets:
        print(f"  {status:<7}{name}: {value}")


if __name__ == "__main__":
    main()
