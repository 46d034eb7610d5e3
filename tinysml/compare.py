"""The full comparison: teacher, student alone, KD, FitNets, AT, SMLDist and its ablations, over
seeds, on one dataset; writes the results table, a confusion matrix and training curves.

    tinysml compare --dataset uci-har --seeds 0 1 2 --out runs/compare --doc docs/results.md
    python examples/compare.py ...                     # the same

The grid's runs are independent jobs on a ``concurrent.futures.Executor``: by default a local pool
of processes (one per core, one thread each: ``tinysml.parallel``), or a dask.distributed cluster
with ``--scheduler tcp://host:port``. A seed's teacher is trained first (its own run directory);
its student runs start as soon as it is done. A run that fails is reported and the others go on;
every finished run stays on disk, so rerunning the command resumes the rest. Each job runs its
kernels on ``--threads`` threads wherever it lands, so results do not depend on the executor.

The defaults are the budget and teacher recipe of docs/results.md (teacher 50 epochs with label
smoothing 0.1, jitter 0.05 and gain 0.1; students 15 epochs). Every run is resumable (rerun the same
command after a kill). Models are selected on a validation split carved from the training subjects;
the test subjects are only evaluated, never selected on.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex

import numpy as np

from . import io, records
from .arguments import COUNT, COUNT0, NONNEG, SMOOTHING
from .records import slug
from .distill.pipeline import SMLDistConfig, run

VARIANTS = {                       # name -> config overrides
    "student alone": {"method": "none"},
    "KD (Hinton)": {"method": "kd"},
    "FitNets": {"method": "fitnet"},
    "AT": {"method": "at"},
    "SMLDist": {"method": "smldist"},
    "SMLDist + head search": {"method": "smldist", "search": True},
    "SMLDist, direct logits loss [ours]": {"method": "smldist", "logits_form": "direct"},
    "SMLDist, no frequency term": {"method": "smldist", "gamma": 0.0},
    "SMLDist, no memory loss": {"method": "smldist", "mu": 0.0},
    "SMLDist, no stage phase": {"method": "smldist", "use_stage": False},
}


TEACHER_RECIPE = ("teacher_label_smoothing", "teacher_jitter", "teacher_scale")   # SMLDistConfig fields
# the grid's budget (the options below; docs/results.md's): what --recipe project means
PROJECT_BUDGET = {"teacher_epochs": 50, "student_epochs": 15, "stage_epochs": 2, "batch_size": 64,
                  "teacher_label_smoothing": 0.1, "teacher_jitter": 0.05, "teacher_scale": 0.1}


def budget(args) -> dict:
    """The SMLDistConfig values every run of the grid shares: the recipe's (``--recipe project``:
    PROJECT_BUDGET, the rest SMLDistConfig's defaults; ``released``: the authors' code,
    ``pipeline.RELEASED_RECIPE``), then every budget option given on the command line."""
    from .distill.pipeline import RELEASED_RECIPE
    recipe = getattr(args, "recipe", "project")
    values = dict(RELEASED_RECIPE) if recipe == "released" else dict(PROJECT_BUDGET)
    values["min_steps_per_epoch"] = getattr(args, "min_steps_per_epoch", 0) or values.get("min_steps_per_epoch", 0)
    for key in PROJECT_BUDGET:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return values


def run_job(config: dict, run_dir: str, teacher_checkpoint: str | None, quiet: bool, threads: int) -> dict:
    """One run of the grid, as a pure job (a config in, the run's results out) for any executor.
    Its kernels run on ``threads`` threads, whatever process or thread it lands in."""
    try:
        from .kernels import cpu_runtime
    except ImportError:                   # no Numba: the NumPy backend has no thread setting of its own
        cpu_runtime = None
    before = cpu_runtime.max_threads() if cpu_runtime else None
    if cpu_runtime:
        cpu_runtime.set_max_threads(threads)
    try:
        return run(SMLDistConfig(**config), run_dir, teacher_checkpoint=teacher_checkpoint, quiet=quiet)
    finally:
        if cpu_runtime:
            cpu_runtime.set_max_threads(before)


def run_all(args, executor=None):
    """Every run of the grid (seeds x variants) on ``executor`` (default: a local process pool);
    returns {name: [results per seed]}. Failed runs are reported after the others finished, in one
    RuntimeError.

    Seeds finish in order: at most ``workers`` jobs are handed to the executor at a time, and a
    finished teacher's students go before the next seed's teacher. A grid stopped after k hours
    therefore leaves whole seeds (every record of a seed, so its teacher is never needed again)
    rather than many teachers and few students. With an external executor and no ``--workers``,
    every ready job is handed over at once (the executor queues them)."""
    import concurrent.futures as cf
    from tqdm import tqdm
    from .parallel import process_pool
    variants = {name: VARIANTS[name] for name in VARIANTS if name in args.variants or name == "student alone"}
    own = executor is None
    device = getattr(args, "device", "cpu")
    capacity = args.workers or (default_workers(device) if own else None)
    executor = executor or process_pool(args.workers or default_workers(device))
    job = {"quiet": not args.verbose, "threads": args.threads}
    pending, done_runs, failures = {}, {}, []
    records_dir = getattr(args, "records", None)
    if records_dir:                     # runs with a committed record are finished: not run again
        for name, by_seed in records.load(records_dir, args.seeds, list(variants)).items():
            done_runs.update({(name, seed): r for seed, r in by_seed.items()})
    bases, teachers, students = {}, [], []   # students: (variant, seed, config, teacher checkpoint), ready to run
    for seed in args.seeds:
        bases[seed] = SMLDistConfig(dataset=args.dataset, seed=seed, device=device, **budget(args))
        if all((name, seed) in done_runs for name in variants):
            continue                    # every student of this seed has its record: no teacher needed
        teacher = dataclasses.replace(bases[seed], method="none", student_epochs=0)
        teachers.append(("teacher", seed, dataclasses.asdict(teacher), None))

    def hand_over():
        while (students or teachers) and (capacity is None or len(pending) < capacity):
            name, seed, config, ckpt = (students or teachers).pop(0)
            run_dir = _teacher_dir(args.out, seed) if name == "teacher" else _run_dir(args.out, seed, name)
            pending[executor.submit(run_job, config, run_dir, ckpt, **job)] = (name, seed)

    try:
        to_run = len(teachers) + len(args.seeds) * len(variants) - len(done_runs)    # a finished seed needs no teacher
        with tqdm(total=to_run, unit="run", desc="grid") as bar:
            hand_over()
            while pending:
                finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    name, seed = pending.pop(future)
                    bar.update()
                    try:
                        r = future.result()
                    except Exception as err:  # noqa: BLE001 - reported; the other runs go on
                        failures.append(f"seed {seed} {name}: {type(err).__name__}: {err}")
                        bar.write(f"seed {seed} {name}: FAILED ({type(err).__name__}: {err})")
                        if name == "teacher":                      # its students cannot run
                            bar.update(sum((variant, seed) not in done_runs for variant in variants))
                        continue
                    if records_dir:
                        records.save(records_dir, name, seed, r)
                    if name == "teacher":
                        ckpt = os.path.join(_teacher_dir(args.out, seed), "teacher.npz")
                        students.extend((variant, seed, dataclasses.asdict(dataclasses.replace(bases[seed], **overrides)),
                                         ckpt) for variant, overrides in variants.items()
                                        if (variant, seed) not in done_runs)
                        students.sort(key=lambda s: s[1])       # the earliest seed's students first
                        continue
                    done_runs[(name, seed)] = r
                    bar.write(f"seed {seed} {name:<28} test acc {r['student']['test']['accuracy']:.4f} "
                              f"macro-F1 {r['student']['test']['macro_f1']:.4f}")
                hand_over()
    finally:
        if own:
            executor.shutdown()
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) of the grid failed (the others finished and are kept; rerun "
                           f"the same command to retry):\n  " + "\n  ".join(failures))
    results = {"teacher": [done_runs[("student alone", seed)] for seed in args.seeds]}
    results.update({name: [done_runs[(name, seed)] for seed in args.seeds] for name in variants})
    return results


GPU_WORKERS = 8


def default_workers(device: str) -> int:
    """Processes of a grid: one per core on the CPU. On a GPU, runs share the device as separate
    processes, each driving it from one host core: a replayed step is a few milliseconds of GPU work
    and the rest of a run (batches copied in, an epoch's last batch, validation, checkpoints) is
    host work, so several processes keep the GPU busy while each does its host part. GPU memory is
    not the limit (a HAR run holds a few hundred MB: CUDA context, weights, graphs, the teacher's
    cached outputs); host cores are: at most GPU_WORKERS and one per core, leaving none idle."""
    cores = os.cpu_count() or 1
    return cores if device == "cpu" else max(1, min(GPU_WORKERS, cores))


def collect(out: str, seeds, names, records_dir: str | None = None) -> dict:
    """What a grid under ``out`` has finished so far, read from disk: {name: {seed: results}} for the
    teacher and every named variant (a run not finished yet is absent). With ``records_dir``, runs
    absent under ``out`` are read from their committed records (``tinysml/records.py``)."""
    import json
    found = {}
    for name in ["teacher", *names]:
        for seed in seeds:
            path = os.path.join(_teacher_dir(out, seed) if name == "teacher" else _run_dir(out, seed, name),
                                "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    found.setdefault(name, {})[seed] = {**json.load(f), "run_dir": os.path.dirname(path)}
    if records_dir:
        for name, by_seed in records.load(records_dir, seeds, ["teacher", *names]).items():
            for seed, r in by_seed.items():
                found.setdefault(name, {}).setdefault(seed, r)
    return found


def _teacher_dir(out, seed):
    return os.path.join(out, f"seed{seed}", "teacher")


def _run_dir(out, seed, name):
    return os.path.join(out, f"seed{seed}", slug(name))


def table(results, dataset, args) -> str:
    def ms(values, sign=""):
        """mean ± sample std over seeds; ``sign="+"`` for a signed delta."""
        if len(values) == 1:
            return f"{values[0]:{sign}.4f}" + ("" if sign else " (1 seed)")   # no spread from one run
        return f"{np.mean(values):{sign}.4f} ± {np.std(values, ddof=1):.4f}"
    t0 = results["teacher"][0]
    lines = ["| model | test accuracy | test macro-F1 | accuracy vs student alone (paired by seed) | params | MACs | "
             "MACs vs teacher |", "|---|---|---|---|---|---|---|"]
    t_acc = [r["teacher"]["test"]["accuracy"] for r in results["teacher"]]
    t_f1 = [r["teacher"]["test"]["macro_f1"] for r in results["teacher"]]
    alone = [r["student"]["test"]["accuracy"] for r in results["student alone"]]
    lines.append(f"| teacher ({t0['config']['teacher']}) | {ms(t_acc)} | {ms(t_f1)} | "
                 f"{ms([t - a for t, a in zip(t_acc, alone)], sign='+')} | {t0['teacher']['params']:,} | "
                 f"{t0['teacher']['macs'] / 1e6:.2f} M | 1.00 |")
    for name in results:
        if name == "teacher":
            continue
        rs = results[name]
        acc = [r["student"]["test"]["accuracy"] for r in rs]
        f1 = [r["student"]["test"]["macro_f1"] for r in rs]
        s = rs[0]["student"]
        delta = "—" if name == "student alone" else ms([a - b for a, b in zip(acc, alone)], sign="+")
        lines.append(f"| {name} | {ms(acc)} | {ms(f1)} | {delta} | {s['params']:,} | {s['macs'] / 1e6:.2f} M | "
                     f"{rs[0]['cost_ratio_macs']:.2f} |")
    return "\n".join(lines)


def per_seed(results, seeds) -> str:
    """Test accuracy and validation macro-F1 (the selection metric) of every run, seed by seed."""
    head = " | ".join(f"seed {s} test acc / val F1" for s in seeds)
    lines = [f"| model | {head} |", "|---|" + "---|" * len(seeds)]
    for name, rs in results.items():
        part = "student" if name != "teacher" else "teacher"
        cells = [f"{r[part]['test']['accuracy']:.4f} / {r[part]['val']['macro_f1']:.4f}" for r in rs]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def figures(results, out_dir):
    """A confusion matrix of SMLDist (first seed) and validation curves of every method (first seed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from .data import Scaler, load
    from .metrics import confusion_matrix
    from .train import predict_logits
    os.makedirs(out_dir, exist_ok=True)
    r = results["SMLDist" if "SMLDist" in results else "student alone"][0]      # the confusion matrix's run
    run_dir = r["run_dir"]
    model, tree = io.load_model(os.path.join(run_dir, "student.npz"))
    data = load(r["config"]["dataset"])
    X = Scaler.from_tree(tree["scaler"]).transform(data.test.X)
    M = confusion_matrix(data.test.y, predict_logits(model, X).argmax(1), data.num_classes)
    shown = "SMLDist" if "SMLDist" in results else "student alone"
    seed, dataset = r["config"]["seed"], r["config"]["dataset"]
    rates = M / np.maximum(M.sum(1, keepdims=True), 1)                 # row-normalised: recall per true class
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_xticks(range(len(data.class_names)), data.class_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(data.class_names)), data.class_names, fontsize=7)
    for i in range(len(M)):
        for j in range(len(M)):                                         # dark cells get white counts
            ax.text(j, i, M[i, j], ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    ax.set_title(f"{dataset}: {shown} student, seed {seed}\ntest windows (counts; colour = share of the true class)",
                 fontsize=9)
    fig.tight_layout()
    cm_path = os.path.join(out_dir, "confusion_smldist.png")
    fig.savefig(cm_path, dpi=120)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = [(c, ls) for ls in ("-", "--", ":", "-.") for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    markers = "os^vD<>px*"
    for k, name in enumerate(n for n in results if n != "teacher"):
        h = results[name][0]["history"]
        color, line = styles[k % len(styles)]
        ax.plot([e["epoch"] for e in h], [e["macro_f1"] for e in h], label=name, color=color, linestyle=line,
                marker=markers[k % len(markers)], markersize=3, markevery=max(1, len(h) // 8))
    ax.set_xlabel("epoch of the final phase"), ax.set_ylabel("validation macro-F1")
    ax.set_title(f"{dataset}: validation macro-F1 per epoch, every student method, seed {seed}", fontsize=9)
    ax.legend(fontsize=7, ncol=2), ax.grid(alpha=0.3)
    fig.tight_layout()
    curves_path = os.path.join(out_dir, "curves.png")
    fig.savefig(curves_path, dpi=120)
    return [cm_path, curves_path]


@contextlib.contextmanager
def carried(out: str, resume_from: str | None, archive: str | None):
    """Unpack ``resume_from`` into ``out`` first; pack ``out`` into ``archive`` afterwards, also when
    the grid failed or was interrupted (what finished is what a lent machine must hand back)."""
    from . import grid_archive
    if resume_from:
        counts = grid_archive.unpack(resume_from, out)
        print(f"unpacked {resume_from}: {counts['added']} files added, {counts['kept']} already here kept")
    try:
        yield
    finally:
        if archive and os.path.isdir(out):
            print(f"packed {grid_archive.pack(out, archive)} files of {out} into {archive}")


ANALYSIS = "\n## What the table says"     # the hand-written part of the doc starts here


def kept_analysis(doc: str) -> str:
    """The hand-written analysis of an existing doc, kept when the script regenerates the tables.
    (Re-read it against the new numbers: the script does not know what it says.)"""
    if not os.path.exists(doc):
        return ""
    text = open(doc, encoding="utf-8").read()
    return text[text.index(ANALYSIS):] if ANALYSIS in text else ""


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of ``tinysml compare`` (and of examples/compare.py)."""
    p = p or argparse.ArgumentParser(prog="tinysml compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="uci-har", help="a dataset name (`tinysml data list`)")
    p.add_argument("--seeds", type=COUNT0, nargs="+", default=[0, 1, 2], help="one run of every variant per seed")
    p.add_argument("--recipe", default="project", choices=["project", "released"],
                   help="project: the budget of docs/results.md (the defaults below); released: the authors' "
                        "code (batch 256, 200 epochs per phase, Ranger + ReduceLROnPlateau, stage Adam 1e-4 over "
                        "all student parameters); an option given below overrides either")
    b = PROJECT_BUDGET
    p.add_argument("--teacher-epochs", type=COUNT, default=None, help=f"the teacher's epochs ({b['teacher_epochs']})")
    p.add_argument("--teacher-label-smoothing", type=SMOOTHING, default=None,
                   help=f"the teacher's label smoothing ({b['teacher_label_smoothing']})")
    p.add_argument("--teacher-jitter", type=NONNEG, default=None, help=f"teacher augmentation: noise std ({b['teacher_jitter']})")
    p.add_argument("--teacher-scale", type=NONNEG, default=None, help=f"teacher augmentation: gain std ({b['teacher_scale']})")
    p.add_argument("--student-epochs", type=COUNT, default=None, help=f"every student's final-phase epochs ({b['student_epochs']})")
    p.add_argument("--stage-epochs", type=COUNT0, default=None, help=f"SMLDist's stage epochs per anchor ({b['stage_epochs']})")
    p.add_argument("--batch-size", type=COUNT, default=None, help=f"windows per step ({b['batch_size']})")
    p.add_argument("--min-steps-per-epoch", type=COUNT0, default=0,
                   help="every epoch runs at least this many steps (passes again over small data); 0: one pass")
    p.add_argument("--out", default="runs/compare", help="runs go to OUT/seedN/<variant> (resumed)")
    p.add_argument("--doc", default="docs/results.md", help="the results doc to write (its analysis is kept)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME",
                   help="a subset of the methods (the student alone always runs: the table pairs with it)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: every run on the GPU, several at once (results as one at a time)")
    p.add_argument("--workers", type=COUNT, default=None,
                   help=f"local processes (default: one per core; on cuda at most {GPU_WORKERS})")
    p.add_argument("--threads", type=COUNT, default=1, help="threads per run's kernels (default 1: one per process)")
    p.add_argument("--archive", default=None, help="afterwards (also after a failure) pack OUT's runs into this .tar.gz")
    p.add_argument("--resume-from", default=None, help="first unpack a grid archive into OUT (local files win)")
    p.add_argument("--records", default=None, help="a folder of run records to commit: every finished run is "
                                                   "recorded there, and a run with a record is not run again")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:port) instead of local processes")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv=None, executor=None):
    """Run the grid (resuming finished runs) and write the doc, its figures and runs/summary.json."""
    args = build_parser().parse_args(argv) if not isinstance(argv, argparse.Namespace) else argv
    if executor is None and args.scheduler:
        from .search import dask_executor
        executor = dask_executor(args.scheduler)
    with carried(args.out, getattr(args, "resume_from", None), getattr(args, "archive", None)):
        results = run_all(args, executor)
    for name, rs in results.items():
        for seed, r in zip(args.seeds, rs):
            r["run_dir"] = _teacher_dir(args.out, seed) if name == "teacher" else _run_dir(args.out, seed, name)
    md = table(results, args.dataset, args)
    pics = figures(results, os.path.dirname(args.doc) or ".")
    b = budget(args)
    cmd = (f"tinysml compare --dataset {args.dataset} --seeds {' '.join(map(str, args.seeds))} "
           + (f"--recipe {args.recipe} " if getattr(args, "recipe", "project") != "project" else "")
           + f"--teacher-epochs {b['teacher_epochs']} --student-epochs {b['student_epochs']} "
           f"--stage-epochs {b['stage_epochs']} --batch-size {b['batch_size']}"
           + (f" --min-steps-per-epoch {b['min_steps_per_epoch']}" if b["min_steps_per_epoch"] else "")
           + "".join(f" --{k.replace('_', '-')} {b[k]}" for k in TEACHER_RECIPE))   # all: 0 is not the default
    if list(args.variants) != list(VARIANTS):
        cmd += " --variants " + " ".join(shlex.quote(v) for v in args.variants)
    spread = "mean ± sample std (n - 1) over seeds" if len(args.seeds) > 1 else "one seed (no spread yet):"
    text = (f"# Results on {args.dataset}\n\nProduced by\n\n    {cmd}\n\n{spread} "
            f"{args.seeds}; selection on a validation split of the training subjects.\n\n{md}\n\n"
            f"Every run, seed by seed:\n\n{per_seed(results, args.seeds)}\n")
    text += "".join(f"\n![{os.path.basename(pic)}]({os.path.basename(pic)})\n" for pic in pics)
    io.write_atomic(args.doc, lambda f: f.write((text + kept_analysis(args.doc)).encode()))
    io.write_json(os.path.join(args.out, "summary.json"),
                  {k: [{"student": r["student"]["test"], "teacher": r["teacher"]["test"]} for r in v]
                   for k, v in results.items()})
    print(md)


if __name__ == "__main__":
    main()
