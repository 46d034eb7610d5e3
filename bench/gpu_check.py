"""GPU verification in one prepared command: everything the CuPy backend has to prove, in one slot.

    bash bench/gpu_check.sh                 # on an NVIDIA machine; evidence under $OUT (default ./gpu-check-out)
    python bench/gpu_check.py --dry-run     # anywhere: every step that does not need a GPU

Steps, each a subprocess with its own timeout (and all of them inside ``--budget`` seconds), so one
hang cannot eat the slot; a failed step is recorded and the rest still run:

  1. install   tinysml from this working tree without any network (pip --no-index --no-deps
               --no-build-isolation -e .; if the installed setuptools is too old for pyproject.toml,
               a shadow package tree on PYTHONPATH instead)
  2. versions  GPU, driver, CUDA runtime, CuPy, NumPy, Numba, torch (and whether it sees CUDA)
  3. tests     tests/test_cuda_graph.py (graphed training and evaluation against eager),
               tests/test_kernels_cuda.py, tests/test_kernels_cuda_fused.py and tests/test_backends.py
               (the CuPy case among them)
     graphs    bench/gpu_graphs.py: the training step and batch-1 inference, eager and as CUDA
               graphs, against torch CUDA eager and torch's captured step (issue 27's targets)
     units     bench/gpu_units.py: each unit of the network (stem, bottlenecks, head, loss, AdamW)
               as its own CUDA graph against torch's, device time per replay: where the replayed
               step's time goes (evidence only)
     dropout-probe  bench/gpu_dropout_probe.py: where a graphed step with dropout leaves the eager
               one, step by step, in variants that separate the suspects (evidence only)
     seed-run  bench/seed_run.py --device cuda: one uci-har seed (teacher + four students), timed
               against bench/seed_run_cpu.json (one CPU thread); needs hapt-raw.npz under
               $TINYSML_DATA (the device has no network: carry it), else skipped
  4. pipeline  the SMLDist pipeline on basicmotions, on the CPU and with --device cuda, same small
               budget; plus the CPU-trained student evaluated on both devices
  5. bench     bench/vs_torch.py --device cuda at the student's training batch and at a large
               batch: per-layer kernels, depthwise GB/s against the device's peak, a training step
               against torch CUDA
  6. profile   bench/step_profile.py --device cuda: where the training step's time goes, per
               Function, the optimiser and the rest (evidence only, no target)

Agreement (step 4), stated: the same checkpoint gives logits within 1e-3 on the CPU and the GPU
(float32, different summation order), and the two pipeline runs, whose training trajectories
may drift apart by rounding, reach test accuracies within 0.1 (4 of basicmotions' 40 windows).
Targets (step 5): depthwise kernels >= 50% of the device's memory bandwidth at the large batch; a
student training step <= 1.5x torch CUDA at the training batch.

``--five-seeds`` runs, instead of steps 3-6, issue 27's one target that does not fit beside them:
five uci-har seeds at once on the GPU (teacher, student alone, KD, SMLDist, ours: 25 runs,
``tinysml compare --device cuda`` with its default workers) in under 5 minutes, as the second call
of a GPU slot; it packs every run into ``$OUT/five-seeds.tar.gz`` (``tinysml compare --resume-from``
on another machine) and, given the first call's ``seed_run-cuda.txt`` (``--one-at-a-time``), checks
that seed 0's runs in the grid reach the test accuracies they reached one at a time.

Writes ``$OUT/summary.md`` (a table of steps and the figures), one log per step, the pipeline
results and the benchmark tables; caches and checkpoints stay in a temporary folder. Exit status:
0 all passed, 1 a step failed, 3 no GPU here (one line, nothing run; ``--dry-run`` runs anyway).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "vs_torch.py")
PROFILE = os.path.join(ROOT, "bench", "step_profile.py")
GRAPHS = os.path.join(ROOT, "bench", "gpu_graphs.py")
SEED_RUN = os.path.join(ROOT, "bench", "seed_run.py")
DROPOUT_PROBE = os.path.join(ROOT, "bench", "gpu_dropout_probe.py")
UNITS = os.path.join(ROOT, "bench", "gpu_units.py")
SEED_CPU = os.path.join(ROOT, "bench", "seed_run_cpu.json")     # the same seed's runs at one CPU thread
NO_GPU = 3
PIPELINE = ["--dataset", "basicmotions", "--teacher-epochs", "4", "--student-epochs", "4", "--stage-epochs", "1",
            "--batch-size", "16", "--seed", "0", "--quiet"]
LOGIT_TOL, ACCURACY_TOL = 1e-3, 0.1
FIVE_SEEDS_TARGET = 300.0                                     # seconds (issue 27: five seeds at once < 5 min)
GRID_VARIANTS = ["KD (Hinton)", "SMLDist", "SMLDist, direct logits loss [ours]"]   # + the student alone


def gpu_present() -> tuple[bool, str]:
    """(True, name) when an NVIDIA GPU answers; (False, why not) otherwise. Needs no tinysml."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi not found"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"nvidia-smi failed: {err}"
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return (True, gpus[0]) if out.returncode == 0 and gpus else (False, "nvidia-smi lists no GPU")


class Check:
    """Runs steps under one deadline, logs each to $OUT/NN-name.log, and collects the summary.
    Steps run in $OUT (only pip runs in the tree): the repository root on sys.path would shadow the
    installed package, whose tinysml.kernels lives in kernels/."""

    def __init__(self, out: str, work: str, budget: float, env: dict):
        self.out, self.work, self.deadline, self.env = out, work, time.monotonic() + budget, env
        self.rows, self.notes, self.failed = [], [], False

    def run(self, name: str, cmd: list, timeout: float, needs_gpu: bool = False, have_gpu: bool = True,
            required: bool = True, keep: str | None = None) -> str | None:
        """Run ``cmd``; returns its output, or None when it failed, timed out or could not run (which
        fails the check unless the step is not ``required``). ``keep``: a file name under $OUT that
        the output of a step that passed is written to, as evidence."""
        log = os.path.join(self.out, f"{len(self.rows) + 1:02d}-{name}.log")
        if needs_gpu and not have_gpu:
            self.rows.append((name, "skipped (needs a GPU)", 0.0, ""))
            return None
        left = self.deadline - time.monotonic()
        if left < 5:
            self.rows.append((name, "not run (budget spent)", 0.0, ""))
            self.failed = True
            return None
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT if cmd[-1] == "." else self.work, env=self.env, capture_output=True, text=True,
                                  timeout=min(timeout, left))
            text, status = proc.stdout + proc.stderr, "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        except subprocess.TimeoutExpired as err:
            text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            status = f"FAILED (timed out after {min(timeout, left):.0f} s)"
        with open(log, "w") as f:
            f.write(f"$ {' '.join(cmd)}\n{text}")
        self.rows.append((name, status if required or status == "passed" else f"{status}, optional",
                          time.monotonic() - t0, os.path.basename(log)))
        if status != "passed":
            self.failed |= required
            return None
        if keep:
            with open(os.path.join(self.out, keep), "w") as f:
                f.write(text)
        return text

    def verdict(self, name: str, ok: bool, detail: str) -> None:
        self.notes.append(f"- {'met' if ok else 'MISSED'}: {name}: {detail}")
        self.failed |= not ok

    def summary(self, header: list) -> str:
        lines = ["# tinysml GPU check", "", *header, "", "| step | status | seconds | log |", "|---|---|---|---|"]
        lines += [f"| {n} | {s} | {t:.0f} | {log} |" for n, s, t, log in self.rows]
        return "\n".join(lines + ["", "## Checks and targets", "", *(self.notes or ["(none ran)"]), ""])


def install(check: Check, shadow_only: bool = False) -> bool:
    """pip install the working tree offline; else (or with ``shadow_only``) a shadow package tree on
    PYTHONPATH: tinysml/* and kernels/ (as tinysml.kernels) linked into one folder."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
           "--disable-pip-version-check", "-q", "-e", "."]
    if shadow_only or check.run("install-pip", cmd, 120, required=False) is None:
        shadow = os.path.join(check.work, "shadow")
        pkg = os.path.join(shadow, "tinysml")
        shutil.rmtree(shadow, ignore_errors=True)
        os.makedirs(pkg)
        for entry in os.listdir(os.path.join(ROOT, "tinysml")):           # tinysml/* plus kernels/ as tinysml.kernels
            os.symlink(os.path.join(ROOT, "tinysml", entry), os.path.join(pkg, entry))
        os.symlink(os.path.join(ROOT, "kernels"), os.path.join(pkg, "kernels"))
        check.env["PYTHONPATH"] = shadow + os.pathsep + check.env.get("PYTHONPATH", "")
        check.notes.append("- install: a shadow package tree on PYTHONPATH " +
                           ("(--shadow)" if shadow_only else "(pip could not install the tree: see its log)"))
    return check.run("import", [sys.executable, "-c", "import tinysml, tinysml.kernels.reference; "
                                                      "print(tinysml.__file__)"], 60) is not None


VERSIONS = r"""
import json, numpy, numba
info = {"numpy": numpy.__version__, "numba": numba.__version__}
try:
    import cupy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info.update(cupy=cupy.__version__, gpu=name, cuda_runtime=rt.runtimeGetVersion(), cuda_driver=rt.driverGetVersion(),
                compute_capability=f"{props['major']}.{props['minor']}", memory_gib=round(props["totalGlobalMem"] / 2**30, 1))
except Exception as err:
    info["cupy"] = f"unusable: {type(err).__name__}: {err}"
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, torch_sees_gpu=torch.cuda.is_available())
except Exception as err:
    info["torch"] = f"unusable: {type(err).__name__}: {err}"
print(json.dumps(info))
"""

COMPARE = r"""
import json, sys
import numpy as np
from tinysml import io, Tensor, no_grad
from tinysml.data import Scaler, load
path = sys.argv[1]
model, tree = io.load_model(path)
data = load("basicmotions")
X = Scaler.from_tree(tree["scaler"]).transform(data.test.X)
model.eval()
with no_grad():
    cpu = model(Tensor(X)).data
    model.to("cuda")
    import cupy
    gpu = cupy.asnumpy(model(Tensor(cupy.asarray(X))).data)
print(json.dumps({"max_logit_difference": float(np.abs(cpu - gpu).max()),
                  "same_predictions": bool((cpu.argmax(1) == gpu.argmax(1)).all())}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out", help="evidence folder ($OUT)")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all steps together")
    parser.add_argument("--dry-run", action="store_true", help="without a GPU: run every step that does not need one")
    parser.add_argument("--large-batch", type=int, default=8192)
    parser.add_argument("--shadow", action="store_true", help="skip pip: put a shadow package tree on PYTHONPATH")
    parser.add_argument("--five-seeds", action="store_true",
                        help="instead of the checks: five uci-har seeds at once on the GPU (a slot's second call)")
    parser.add_argument("--one-at-a-time", metavar="SEED_RUN_TXT",
                        help="with --five-seeds: an earlier check's seed_run-cuda.txt, whose accuracies seed 0 must equal")
    parser.add_argument("--no-seed-run", dest="seed_run", action="store_false",
                        help="skip the timed uci-har seed (bench/seed_run.py; needs hapt-raw.npz under $TINYSML_DATA)")
    args = parser.parse_args(argv)
    have_gpu, what = gpu_present()
    if not have_gpu and not args.dry_run:
        print(f"gpu_check: no NVIDIA GPU here ({what}); nothing verified (exit {NO_GPU}; --dry-run runs the CPU steps)")
        return NO_GPU
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tinysml-gpu-check-")       # caches, runs, shadow tree: not evidence
    env = dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", os.path.join(work, "numba-cache")),
               TINYSML_DATA=os.environ.get("TINYSML_DATA", os.path.join(work, "data")), PYTHONUNBUFFERED="1")
    check = Check(out, work, args.budget, env)
    gpu_only = {"needs_gpu": True, "have_gpu": have_gpu}
    header = [f"GPU: {what}" if have_gpu else f"dry run without a GPU ({what}): GPU steps are marked skipped",
              f"started {time.strftime('%Y-%m-%d %H:%M:%S')}, working tree {ROOT}"]

    installed = install(check, args.shadow)
    if installed and args.five_seeds:
        five_seeds(check, out, args.one_at_a_time, gpu_only)
    elif installed:
        versions = check.run("versions", [sys.executable, "-c", VERSIONS], 60)
        if versions:
            header.append("versions: " + ", ".join(f"{k} {v}" for k, v in json.loads(versions.splitlines()[-1]).items()))
        check.run("tests", [sys.executable, "-m", "pytest", "-q", "-rs", "-s", "-p", "no:cacheprovider",
                            os.path.join(ROOT, "tests", "test_cuda_graph.py"),
                            os.path.join(ROOT, "tests", "test_kernels_cuda.py"),
                            os.path.join(ROOT, "tests", "test_kernels_cuda_fused.py"),
                            os.path.join(ROOT, "tests", "test_backends.py")], 300)
        text = check.run("graphs", [sys.executable, GRAPHS, "--batch", "64"], 150, keep="gpu_graphs-batch-64.txt",
                         **gpu_only)
        if text:
            _target_verdicts(check, text, "graphs")
        check.run("units", [sys.executable, UNITS, "--batch", "64"], 120, required=False,
                  keep="gpu_units-batch-64.txt", **gpu_only)
        check.run("dropout-probe", [sys.executable, DROPOUT_PROBE, "--device", "cuda"], 90, required=False,
                  keep="dropout_probe.txt", **gpu_only)
        if args.seed_run and os.path.exists(os.path.join(env["TINYSML_DATA"], "hapt-raw.npz")):
            cpu_times = ["--cpu-times", SEED_CPU] if os.path.exists(SEED_CPU) else []
            text = check.run("seed-run", [sys.executable, SEED_RUN, "--device", "cuda", "--out",
                                          os.path.join(work, "seed-cuda"), *cpu_times], 240,
                             keep="seed_run-cuda.txt", **gpu_only)
            if text:
                _seed_verdicts(check, text)
        elif args.seed_run:
            check.rows.append(("seed-run", "skipped (no uci-har recordings under $TINYSML_DATA)", 0.0, ""))
        cli = [sys.executable, "-m", "tinysml.cli", "distill"]
        cpu_dir, gpu_dir = os.path.join(work, "run-cpu"), os.path.join(work, "run-cuda")
        if check.run("pipeline-cpu", cli + PIPELINE + ["--out", cpu_dir, "--device", "cpu"], 150):
            shutil.copy(os.path.join(cpu_dir, "results.json"), os.path.join(out, "results-cpu.json"))
            same = check.run("same-weights-cpu-vs-gpu", [sys.executable, "-c", COMPARE,
                                                         os.path.join(cpu_dir, "student.npz")], 60, **gpu_only)
            if same:
                r = json.loads(same.splitlines()[-1])
                check.verdict("one checkpoint on CPU and GPU", r["max_logit_difference"] <= LOGIT_TOL and
                              r["same_predictions"], f"max |logit difference| {r['max_logit_difference']:.2e} "
                              f"(tolerance {LOGIT_TOL}), same predictions: {r['same_predictions']}")
        if check.run("pipeline-cuda", cli + PIPELINE + ["--out", gpu_dir, "--device", "cuda"], 150, **gpu_only):
            a, b = (json.load(open(os.path.join(d, "results.json"))) for d in (cpu_dir, gpu_dir))
            shutil.copy(os.path.join(gpu_dir, "results.json"), os.path.join(out, "results-cuda.json"))
            for who in ("teacher", "student"):
                da, db = a[who]["test"]["accuracy"], b[who]["test"]["accuracy"]
                check.verdict(f"pipeline {who}, CPU vs --device cuda", abs(da - db) <= ACCURACY_TOL,
                              f"test accuracy {da:.3f} vs {db:.3f} (tolerance {ACCURACY_TOL})")
        for batch in (64, args.large_batch):
            text = check.run(f"bench-batch-{batch}", [sys.executable, BENCH, "--device", "cuda",
                                                      "--batch", str(batch), "--repeats", "20"], 120,
                             keep=f"vs_torch-batch-{batch}.txt", **gpu_only)
            if text:
                _bench_verdicts(check, text, batch, args.large_batch)
        check.run("profile-cuda", [sys.executable, PROFILE, "--device", "cuda", "--batch", "64"], 90,
                  required=False, keep="step_profile-batch-64.txt", **gpu_only)
        if not have_gpu:                        # the benchmark script and its parsing, on the CPU
            text = check.run("bench-cpu-dry-run", [sys.executable, BENCH, "--batch", "16",
                                                   "--repeats", "3"], 120)
            step = _training_step(text or "")
            check.verdict("dry run: bench/vs_torch.py ran on the CPU and its table parsed", step is not None,
                          "no training-step row found" if step is None else
                          f"training step {step[0]:.1f} ms vs torch CPU {step[1]:.1f} ms (no GPU target applies)")
    shutil.rmtree(work, ignore_errors=True)
    summary = check.summary(header)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    return 1 if check.failed else 0


SEED0_ACCURACIES = r"""
import json, sys
from tinysml.compare import collect
found = collect(sys.argv[1], [0], sys.argv[2:])
print(json.dumps({name: by_seed[0]["teacher" if name == "teacher" else "student"]["test"]["accuracy"]
                  for name, by_seed in found.items()}))
"""


def five_seeds(check: Check, out: str, one_at_a_time: str | None, gpu_only: dict) -> None:
    """Five uci-har seeds of the grid at once on one GPU, timed as a whole process against
    FIVE_SEEDS_TARGET; the runs packed into $OUT; seed 0 against the runs made one at a time."""
    if not os.path.exists(os.path.join(check.env["TINYSML_DATA"], "hapt-raw.npz")):
        check.rows.append(("five-seeds", "skipped (no uci-har recordings under $TINYSML_DATA)", 0.0, ""))
        check.failed = True
        return
    grid = os.path.join(check.work, "grid")
    variants = ["student alone", *GRID_VARIANTS]
    text = check.run("five-seeds", [sys.executable, "-m", "tinysml.cli", "compare", "--dataset", "uci-har",
                                    "--seeds", "0", "1", "2", "3", "4", "--device", "cuda", "--variants", *GRID_VARIANTS,
                                    "--out", grid, "--doc", os.path.join(out, "five_seeds.md"),
                                    "--archive", os.path.join(out, "five-seeds.tar.gz")], 570, **gpu_only)
    if text is None:
        return
    seconds = check.rows[-1][2]
    check.verdict("five uci-har seeds at once (25 runs) on the GPU < 5 min", seconds < FIVE_SEEDS_TARGET,
                  f"{seconds:.1f} s (target < {FIVE_SEEDS_TARGET:.0f} s)")
    if one_at_a_time:
        grid_text = check.run("seed-0-accuracies", [sys.executable, "-c", SEED0_ACCURACIES, grid, *variants], 60)
        if grid_text:
            _same_as_one_at_a_time(check, json.loads(grid_text.splitlines()[-1]), open(one_at_a_time).read())


def _same_as_one_at_a_time(check: Check, grid: dict, seed_run_text: str) -> None:
    """Seed 0's test accuracies in the grid against bench/seed_run.py's lines for the same runs
    (``<name>  <seconds> s   test accuracy <a>``): equal to the printed four decimals."""
    alone = {m.group(1).strip(): float(m.group(2)) for m in
             re.finditer(r"^(\S.*?)\s+[\d.]+ s\s+test accuracy ([\d.]+)$", seed_run_text, re.M)}
    for name in ["teacher", "student alone", *GRID_VARIANTS]:
        if name not in alone or name not in grid:
            check.verdict(f"seed 0, {name}: the grid as one at a time", False,
                          "missing from " + ("the grid" if name in alone else "the one-at-a-time output"))
            continue
        check.verdict(f"seed 0, {name}: the grid as one at a time", f"{grid[name]:.4f}" == f"{alone[name]:.4f}",
                      f"test accuracy {grid[name]:.4f} in the grid, {alone[name]:.4f} alone")


def _bench_verdicts(check: Check, text: str, batch: int, large: int) -> None:
    """The targets, read from bench/vs_torch.py's output."""
    bw = re.search(r"depthwise kernels: best (\d+) GB/s = (\d+)% of the device's (\d+) GB/s", text)
    step = _training_step(text)
    if batch == large:
        check.verdict(f"depthwise bandwidth at batch {batch}", bool(bw) and int(bw.group(2)) >= 50,
                      f"{bw.group(1)} GB/s = {bw.group(2)}% of {bw.group(3)} GB/s (target >= 50%)" if bw else
                      "no bandwidth line in the output")
    else:
        check.verdict(f"training step at batch {batch} vs torch CUDA", bool(step) and step[2] <= 1.5,
                      f"{step[0]:.2f} ms vs {step[1]:.2f} ms = {step[2]:.2f}x (target <= 1.5x)" if step else
                      "no training-step row in the output")


def _target_verdicts(check: Check, text: str, source: str) -> None:
    """Every 'met'/'MISSED' line under a 'targets' heading of a benchmark's output."""
    lines = text.split("\ntargets\n", 1)[1].splitlines() if "\ntargets\n" in text else []
    found = [re.match(r"\s+(met|MISSED)\s+(.+?): ([\d.]+x)", line) for line in lines]
    found = [m for m in found if m]
    if not found:
        check.verdict(f"{source}: targets", False, "no targets in the output")
    for m in found:
        check.verdict(m.group(2), m.group(1) == "met", m.group(3))


SEED_TOTAL_S, SEED_SPEEDUP = 120.0, 10.0


def _seed_verdicts(check: Check, text: str) -> None:
    """bench/seed_run.py's lines: one seed under SEED_TOTAL_S, every run SEED_SPEEDUP times the CPU's."""
    total = re.search(r"one seed, all runs\s+([\d.]+) s", text)
    check.verdict(f"one uci-har seed (teacher + 4 students) on the GPU < {SEED_TOTAL_S:.0f} s", bool(total) and
                  float(total.group(1)) < SEED_TOTAL_S, f"{total.group(1)} s" if total else "no total in the output")
    for m in re.finditer(r"^(.+?)\s+cpu\s+([\d.]+) s\s+cuda\s+([\d.]+) s\s+([\d.]+)x$", text, re.M):
        check.verdict(f"{m.group(1).strip()}: GPU >= {SEED_SPEEDUP:.0f}x one CPU thread",
                      float(m.group(4)) >= SEED_SPEEDUP, f"{m.group(2)} s -> {m.group(3)} s = {m.group(4)}x")


def _training_step(text: str):
    """(tinysml ms, torch ms, ratio) of bench/vs_torch.py's training-step row, or None."""
    m = re.search(r"training step, batch \d+ \(fwd\+bwd\+AdamW\)\s+([\d.]+)\s+([\d.]+|nan)\s+([\d.]+|nan)", text)
    return None if m is None else tuple(float(v) for v in m.groups())


if __name__ == "__main__":
    sys.exit(main())
