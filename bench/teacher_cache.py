"""What the teacher-output cache saves: one student run of the uci-har grid, with and without it.

    python bench/teacher_cache.py --teacher runs/uci-har-grid/seed0/teacher/teacher.npz [--variant 'KD (Hinton)']

Runs the grid's job for one variant twice in this process (one kernel thread, as the grid runs
it), first with the cache (built beside the teacher if missing, its build timed on its own) and
then with the teacher run on every batch, each into a fresh run directory, and prints the wall
times and their ratio; the two runs' results must be identical (the cache is batch-invariant).
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from tinysml import io
    from tinysml.compare import VARIANTS, run_job
    from tinysml.distill.pipeline import SMLDistConfig
    from tinysml.distill.teacher_cache import teacher_outputs
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="a grid's teacher checkpoint (its config.json beside it)")
    p.add_argument("--variant", default="KD (Hinton)", choices=list(VARIANTS))
    args = p.parse_args(argv)
    base = json.load(open(os.path.join(os.path.dirname(args.teacher), "config.json")))
    config = dataclasses.asdict(dataclasses.replace(SMLDistConfig(**base), student_epochs=15,
                                                    **VARIANTS[args.variant]))
    if not any(os.scandir(os.path.join(os.path.dirname(args.teacher), "teacher-outputs"))
               if os.path.isdir(os.path.join(os.path.dirname(args.teacher), "teacher-outputs")) else []):
        from tinysml.data import load
        from tinysml.data.prepare import prepare
        cfg = SMLDistConfig(**config)
        data = prepare(load(cfg.dataset), cfg.val_fraction, cfg.seed, cfg.scaling)
        teacher, _ = io.load_model(args.teacher)
        t0 = time.perf_counter()
        teacher_outputs(teacher, data.train[0], os.path.join(os.path.dirname(args.teacher), "teacher-outputs"))
        print(f"building the cache: {time.perf_counter() - t0:.1f} s")
    times, results = {}, {}
    for cached in (True, False):
        out = tempfile.mkdtemp(prefix="tinysml-cache-bench-")
        t0 = time.perf_counter()
        r = run_job({**config, "teacher_cache": cached}, out, args.teacher, quiet=True, threads=1)
        times[cached] = time.perf_counter() - t0
        results[cached] = {k: r[k] for k in ("student", "history")}
        shutil.rmtree(out)
    print(f"{args.variant}, seed {config['seed']}, {config['student_epochs']} epochs, 1 thread: "
          f"with the cache {times[True]:.1f} s, teacher run per batch {times[False]:.1f} s, "
          f"ratio {times[True] / times[False]:.2f}; identical results: {results[True] == results[False]}")


if __name__ == "__main__":
    main()
