"""The main job: the SMLDist pipeline on the built-in BasicMotions dataset, against the same
student trained alone, over three seeds.

    python examples/smldist_basicmotions.py [--seeds 0 1 2] [--out runs/smldist-basicmotions] [--workers N]
    python examples/smldist_basicmotions.py --write-readme     # also put the table into README.md

For each seed: train the teacher (1.06 M parameters), then distil the student (0.19 M, a quarter
of the teacher's multiply-adds): progressive stage distillation with the frequency-aware loss,
transplant of the teacher's memory head, memory + logits distillation; and train the same student
with plain cross-entropy under the same teacher's run. The runs go to a pool of processes (one per
core, one thread each), so both cores are busy and the numbers do not depend on how many ran at
once. Prints test accuracy, macro-F1, parameters and MACs as a markdown table: mean ± sample
standard deviation (n - 1) over the seeds. Every phase is checkpointed in --out: rerunning resumes.
BasicMotions is tiny (40 training windows) and saturated: this proves the pipeline, not the
method; see docs/results.md for UCI-HAR.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import time

import numpy as np

README_BEGIN, README_END = "<!-- main-job table: begin -->", "<!-- main-job table: end -->"
ROWS = (("teacher (`har-teacher`)", "smldist", "teacher"), ("student alone (`har-student`)", "alone", "student"),
        ("SMLDist student", "smldist", "student"))


def config(seed: int):
    from tinysml.distill.pipeline import SMLDistConfig
    return SMLDistConfig(dataset="basicmotions", seed=seed, val_fraction=0.25, batch_size=16,
                         teacher_epochs=40, student_epochs=40, stage_epochs=5)


def run_one(seed: int, kind: str, out: str) -> dict:
    """One run in a worker: "smldist" (trains the seed's teacher) or "alone" (reuses that teacher)."""
    import dataclasses
    from tinysml.distill.pipeline import run
    seed_dir = os.path.join(out, f"seed{seed}")
    if kind == "smldist":
        return run(config(seed), os.path.join(seed_dir, "smldist"), quiet=True)
    return run(dataclasses.replace(config(seed), method="none"), os.path.join(seed_dir, "alone"),
               teacher_checkpoint=os.path.join(seed_dir, "smldist", "teacher.npz"), quiet=True)


def mean_std(values) -> str:
    """'mean ± sample std' (n - 1; 0 for a single seed), three decimals."""
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def table(results: dict, seeds) -> str:
    """The markdown table of ``results[(seed, kind)]`` (results.json of each run), as README shows it."""
    lines = [f"| model (seeds {', '.join(map(str, seeds))}; mean ± sample std, n - 1) | test accuracy | macro-F1 "
             f"| parameters | MACs / window |", "|---|---|---|---|---|"]
    for name, kind, who in ROWS:
        tests = [results[(seed, kind)][who]["test"] for seed in seeds]
        cost = results[(seeds[0], kind)][who]
        lines.append(f"| {name} | {mean_std([t['accuracy'] for t in tests])} | "
                     f"{mean_std([t['macro_f1'] for t in tests])} | {cost['params']:,} | {cost['macs'] / 1e6:.2f} M |")
    return "\n".join(lines)


def write_readme(readme: str, text: str) -> None:
    """Replace the table between the main-job markers of README.md (atomically)."""
    from tinysml import io
    doc = open(readme).read()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{readme} has no {README_BEGIN} ... {README_END} block")
    doc = pattern.sub(lambda _: f"{README_BEGIN}\n{text}\n{README_END}", doc)
    io.write_atomic(readme, lambda f: f.write(doc.encode()))


def main(argv=None):
    from tqdm import tqdm
    from tinysml.parallel import process_pool
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/smldist-basicmotions")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--write-readme", action="store_true", help="put the table into README.md and its per-seed "
                                                                "numbers into docs/main_job.json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    workers = args.workers or min(os.cpu_count() or 1, 2 * len(args.seeds))
    print(f"SMLDist on basicmotions, seeds {args.seeds}: teacher + SMLDist student, then the student alone, per "
          f"seed; {2 * len(args.seeds)} runs on {workers} processes. A fresh machine first compiles the Numba "
          f"kernels (~1 min, cached for later runs).", flush=True)
    results = {}
    with process_pool(workers) as pool, tqdm(total=2 * len(args.seeds), unit="run", desc="runs") as bar:
        pending = {pool.submit(run_one, seed, "smldist", args.out): (seed, "smldist") for seed in args.seeds}
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                seed, kind = pending.pop(future)
                results[(seed, kind)] = r = future.result()
                if kind == "smldist":                                 # its teacher exists: the student alone may start
                    pending[pool.submit(run_one, seed, "alone", args.out)] = (seed, "alone")
                bar.write(f"seed {seed} {'SMLDist' if kind == 'smldist' else 'student alone'}: test accuracy "
                          f"{r['student']['test']['accuracy']:.3f} (teacher {r['teacher']['test']['accuracy']:.3f})")
                bar.update()
    text = table(results, args.seeds)
    print(f"\nBasicMotions test set ({time.perf_counter() - t0:.0f} s)\n\n{text}")
    if args.write_readme:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        write_readme(os.path.join(root, "README.md"), text)
        from tinysml import io
        io.write_json(os.path.join(root, "docs", "main_job.json"), {"seeds": args.seeds, "runs": [
            {"seed": seed, "kind": kind, **{who: results[(seed, kind)][who] for who in ("teacher", "student")}}
            for seed, kind in sorted(results)]})
        print("\nwrote README.md's main-job table and docs/main_job.json")


if __name__ == "__main__":
    main()
