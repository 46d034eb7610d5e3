"""The deployment path against PyTorch eager, side by side in one process, plus cold start and
peak memory of a deployment process.

    python bench/deploy_latency.py [--threads 2] [--repeats 300]

Model: ``har-student`` on (9, 128), linear head (the PyTorch twin supports it), batch norm folded
by tinysml.deploy. Cold start = a new Python process that imports tinysml.deploy, loads the
checkpoint and predicts once (Numba's cache warm, as after the first run of a deployment).
onnxruntime runs the graph ``tinysml export`` writes (extra ``onnx``), when installed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402

COLD = """
import time
t0 = time.perf_counter()
import numpy as np
from tinysml.deploy import Predictor
p = Predictor.load({path!r})
p.predict_proba(np.zeros((1, 9, 128), np.float32))
t1 = time.perf_counter()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]   # peak RSS, kB
print(t1 - t0, int(hwm) / 1024)
"""




def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=300)
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
    try:
        import onnxruntime as ort
        from tinysml.onnx_export import to_onnx
        to_onnx(path, onnx_path)                        # tinysml's own export: the same folded graph
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - optional peer
        sess = None
        print(f"(onnxruntime not compared: {type(err).__name__}: {str(err)[:80]})")
    predictors = {"tinysml.deploy (numba)": Predictor.load(path), "tinysml.deploy (numpy only)":
                  Predictor.load(path, use_numba=False)}
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal((batch, 9, 128)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            want = twin(xt).numpy()
        rows = []
        for name, p in predictors.items():
            assert np.allclose(p.logits(x), want, atol=1e-4), name
            rows.append((name, median_ms(lambda: p.predict_proba(x), args.repeats, warmup=10)))

        def torch_eager():
            with torch.no_grad():
                twin(xt)
        t_torch = median_ms(torch_eager, args.repeats)
        rows.append(("torch eager", t_torch))
        if sess is not None:
            assert np.allclose(sess.run(["logits"], {"windows": x})[0], want, atol=1e-4)
            rows.append(("onnxruntime (tinysml export)",
                         median_ms(lambda: sess.run(["probabilities"], {"windows": x}), args.repeats)))
        print(f"\nbatch-{batch} latency, har-student (9, 128), {args.threads} threads")
        print(f"{'path':<30}{'median ms':>10}{'vs torch':>10}")
        for name, ms in rows:
            print(f"{name:<30}{ms:>10.3f}{ms / t_torch:>10.2f}")
    print("\ncold start (new process: import, load, first prediction) and peak RSS, median of 3:")
    for label, backend in (("with numba (cache warm)", "numba"), ("numpy only", "numpy")):
        env = dict(os.environ, TINYSML_BACKEND=backend)
        subprocess.run([sys.executable, "-c", COLD.format(path=path)], capture_output=True, env=env)  # warm caches
        cold = [subprocess.run([sys.executable, "-c", COLD.format(path=path)], capture_output=True, text=True,
                               env=env).stdout.split() for _ in range(3)]
        print(f"  {label:<26}{np.median([float(c[0]) for c in cold]):.3f} s   "
              f"{np.median([float(c[1]) for c in cold]):.0f} MiB")


if __name__ == "__main__":
    main()
