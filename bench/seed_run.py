"""One seed of the uci-har grid, timed run by run, on the CPU or the GPU: the teacher and the students
of docs/results.md's budget (teacher 50 epochs with its recipe; students 15 epochs, stage 2 epochs
per anchor), each run as ``tinysml compare`` runs it (``compare.run_job``).

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/seed_run.py --device cpu --out /tmp/seed-cpu
    python bench/seed_run.py --device cuda --out /tmp/seed-cuda          # on a GPU machine

Prints one line per run (seconds, test accuracy) and writes ``<out>/timings.json``. Run directories
go under ``--out``; an existing one resumes (delete it for a fresh timing). ``--cpu-times FILE``
puts a CPU timing file beside the GPU's and prints the speed-up per run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

VARIANTS = ["student alone", "KD (Hinton)", "SMLDist", "SMLDist, direct logits loss [ours]"]


def main(argv=None) -> int:
    from tinysml.compare import VARIANTS as ALL, run_job, slug
    from tinysml.distill.pipeline import SMLDistConfig
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dataset", default="uci-har")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-epochs", type=int, default=50)
    p.add_argument("--student-epochs", type=int, default=15)
    p.add_argument("--stage-epochs", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=list(ALL))
    p.add_argument("--threads", type=int, default=1, help="CPU kernel threads (the grid's one per job)")
    p.add_argument("--recipe", default="project", choices=["project", "released"],
                   help="released: the authors' budget (pipeline.RELEASED_RECIPE) with the epochs given here")
    p.add_argument("--out", required=True)
    p.add_argument("--cpu-times", help="a timings.json of the same runs on the CPU, to print speed-ups")
    p.add_argument("--verbose", action="store_true", help="every run's epoch lines")
    args = p.parse_args(argv)
    from tinysml.distill.pipeline import RELEASED_RECIPE
    recipe = dict(RELEASED_RECIPE) if args.recipe == "released" else dict(
        batch_size=64, teacher_label_smoothing=0.1, teacher_jitter=0.05, teacher_scale=0.1)
    recipe.update(teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs, stage_epochs=args.stage_epochs)
    base = SMLDistConfig(dataset=args.dataset, seed=args.seed, device=args.device, **recipe)
    rows = []

    def timed(name, config, run_dir, teacher):
        t0 = time.perf_counter()
        r = run_job(dataclasses.asdict(config), run_dir, teacher, not args.verbose, args.threads)
        seconds = time.perf_counter() - t0
        who = "teacher" if name == "teacher" else "student"
        rows.append({"run": name, "seconds": round(seconds, 2), "test_accuracy": r[who]["test"]["accuracy"]})
        print(f"{name:<40} {seconds:8.1f} s   test accuracy {r[who]['test']['accuracy']:.4f}", flush=True)

    teacher_dir = os.path.join(args.out, "teacher")
    timed("teacher", dataclasses.replace(base, method="none", student_epochs=0), teacher_dir, None)
    for name in args.variants:
        timed(name, dataclasses.replace(base, **ALL[name]), os.path.join(args.out, slug(name)),
              os.path.join(teacher_dir, "teacher.npz"))
    total = sum(r["seconds"] for r in rows)
    if args.device == "cuda":
        from tinysml import cuda_graph
        print(f"CUDA graphs: {dict(cuda_graph.stats)}")
    print(f"{'one seed, all runs':<40} {total:8.1f} s", flush=True)
    record = {"device": args.device, "threads": args.threads, "runs": rows, "total_seconds": round(total, 2),
              "argv": sys.argv[1:]}
    with open(os.path.join(args.out, "timings.json"), "w") as f:
        json.dump(record, f, indent=1)
    if args.cpu_times:
        cpu = {r["run"]: r["seconds"] for r in json.load(open(args.cpu_times))["runs"]}
        print("\nspeed-up over the CPU timing file")
        for r in rows:
            if r["run"] in cpu:
                print(f"{r['run']:<40} cpu {cpu[r['run']]:8.1f} s  {args.device} {r['seconds']:8.1f} s  "
                      f"{cpu[r['run']] / r['seconds']:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
