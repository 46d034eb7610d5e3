"""The full comparison: teacher, student alone, KD, FitNets, AT, SMLDist and its ablations, over
seeds, on one dataset; writes the results table, a confusion matrix and training curves.

    python examples/compare.py --dataset uci-har --seeds 0 1 2 --out runs/compare --doc docs/results.md

The defaults are the budget and teacher recipe of docs/results.md (teacher 50 epochs with label
smoothing 0.1, jitter 0.05 and gain 0.1; students 15 epochs). Every run is resumable (rerun the same
command after a kill). Models are selected on a validation split carved from the training subjects;
the test subjects are only evaluated, never selected on.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex

import numpy as np

from tinysml import io
from tinysml.distill.pipeline import SMLDistConfig, run

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


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_all(args):
    variants = {name: VARIANTS[name] for name in VARIANTS if name in args.variants or name == "student alone"}
    results = {name: [] for name in ["teacher", *variants]}
    for seed in args.seeds:
        base = SMLDistConfig(dataset=args.dataset, seed=seed, teacher_epochs=args.teacher_epochs,
                             student_epochs=args.student_epochs, stage_epochs=args.stage_epochs,
                             batch_size=args.batch_size, **{k: getattr(args, k) for k in TEACHER_RECIPE})
        teacher_dir = os.path.join(args.out, f"seed{seed}", "teacher")
        teacher_ckpt = os.path.join(teacher_dir, "teacher.npz")
        for name, overrides in variants.items():
            cfg = dataclasses.replace(base, **overrides)
            if name == "student alone" and not os.path.exists(teacher_ckpt):
                # the first run of a seed trains the teacher in its own directory
                run(dataclasses.replace(base, method="none", student_epochs=0), teacher_dir, quiet=not args.verbose)
            r = run(cfg, os.path.join(args.out, f"seed{seed}", slug(name)), teacher_checkpoint=teacher_ckpt,
                    quiet=not args.verbose)
            results[name].append(r)
            print(f"seed {seed} {name:<28} test acc {r['student']['test']['accuracy']:.4f} "
                  f"macro-F1 {r['student']['test']['macro_f1']:.4f}", flush=True)
        results["teacher"].append(r)
    return results


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
    from tinysml.data import Scaler, load
    from tinysml.metrics import confusion_matrix
    from tinysml.train import predict_logits
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


ANALYSIS = "\n## What the table says"     # the hand-written part of the doc starts here


def kept_analysis(doc: str) -> str:
    """The hand-written analysis of an existing doc, kept when the script regenerates the tables.
    (Re-read it against the new numbers: the script does not know what it says.)"""
    if not os.path.exists(doc):
        return ""
    text = open(doc, encoding="utf-8").read()
    return text[text.index(ANALYSIS):] if ANALYSIS in text else ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="uci-har")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher-epochs", type=int, default=50)
    p.add_argument("--teacher-label-smoothing", type=float, default=0.1)
    p.add_argument("--teacher-jitter", type=float, default=0.05, help="teacher augmentation: noise std")
    p.add_argument("--teacher-scale", type=float, default=0.1, help="teacher augmentation: gain std")
    p.add_argument("--student-epochs", type=int, default=15)
    p.add_argument("--stage-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--doc", default="docs/results.md")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME",
                   help="a subset of the methods (the student alone always runs: the table pairs with it)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    results = run_all(args)
    for name, rs in results.items():
        for seed, r in zip(args.seeds, rs):
            r["run_dir"] = os.path.join(args.out, f"seed{seed}", slug(name) if name != "teacher" else "teacher")
    md = table(results, args.dataset, args)
    pics = figures(results, os.path.dirname(args.doc) or ".")
    cmd = (f"python examples/compare.py --dataset {args.dataset} --seeds {' '.join(map(str, args.seeds))} "
           f"--teacher-epochs {args.teacher_epochs} --student-epochs {args.student_epochs} "
           f"--stage-epochs {args.stage_epochs} --batch-size {args.batch_size}"
           + "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in TEACHER_RECIPE))   # all: 0 is not the default
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
