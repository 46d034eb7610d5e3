"""The ``tinysml`` command: datasets, training, distillation, evaluation, export and model cost.

    tinysml data list | data info NAME
    tinysml train --dataset basicmotions --preset har-teacher --out runs/teacher.npz
    tinysml train-teacher --dataset uci-har --out runs/t
    tinysml distill --dataset uci-har --teacher runs/t/teacher.npz --method smldist --out runs/s
    tinysml compare --dataset uci-har --seeds 0 1 2
    tinysml evidence [--report-only]
    tinysml power --grid runs/evidence/uci-har --half-width 0.0075     # seeds a comparison needs
    tinysml search --student runs/s/student.npz --dataset uci-har
    tinysml evaluate runs/s/student.npz
    tinysml export runs/s/student.npz --out student.onnx
    tinysml warmup                      # compile the deployment kernels into Numba's cache ahead of time
    tinysml profile --preset har-student --channels 6 --length 128 --classes 6

Every option is checked up front; every failure a user can cause is one line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys



from .arguments import COUNT, COUNT0, FRACTION, NONNEG, POSITIVE, SMOOTHING  # noqa: F401  (re-exported)


def _output_file(text: str) -> str:
    """An argparse type for a file to write: not an existing folder."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give the path of a file to write")
    return text


def _cmd_data(args):
    from .data import available, load
    if args.action == "list":
        for name, desc in available().items():
            print(f"{name:<20}{desc}")
    else:   # info, or fetch (loading fetches, verifies and caches)
        print(load(args.name, path=args.path).info())


def _cmd_train(args):
    from . import io, profile
    from .models import build_model, preset
    from .data import load
    from .data.prepare import prepare
    from .train import TrainConfig, evaluate, fit
    p = prepare(load(args.dataset, path=args.path), args.val_fraction, args.seed, args.scaling)
    data, scaler, train, val, test = p.dataset, p.scaler, p.train, p.val, p.test
    C, L = data.window_shape
    model = build_model(preset(args.preset, C, L, data.num_classes), seed=args.seed)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         optimizer=args.optimizer, schedule=args.schedule, seed=args.seed,
                         label_smoothing=args.label_smoothing, augment_jitter=args.jitter, augment_scale=args.scale)
    fit(model, train, val, config, checkpoint=args.out + ".train.npz",
        fingerprint={"model": model.config.to_dict(), "dataset": args.dataset, "scaling": args.scaling},
        progress=not args.quiet)
    result = {"dataset": args.dataset, "preset": args.preset, "test": evaluate(model, *test),
              **profile.summary(model, (C, L))}
    io.save_model(args.out, model, scaler=scaler.to_tree(), class_names=data.class_names, dataset=args.dataset,
                  results=result, **({"data_path": args.path} if args.path else {}))
    print(json.dumps(result, indent=2))


def _config_from_args(args):
    """The SMLDistConfig of a train-teacher or distill command line (options not given keep their defaults)."""
    from .distill.pipeline import SMLDistConfig
    values = {"dataset": args.dataset, "data_path": args.path, "seed": args.seed, "teacher": args.teacher_preset,
              "batch_size": args.batch_size, "teacher_epochs": args.teacher_epochs,
              "teacher_label_smoothing": args.teacher_label_smoothing, "teacher_jitter": args.teacher_jitter,
              "teacher_scale": args.teacher_scale, "device": args.device}
    if hasattr(args, "method"):                                   # distill: the student's options too
        values.update(student=args.student_preset, method=args.method, student_epochs=args.student_epochs,
                      stage_epochs=args.stage_epochs, gamma=0.0 if args.no_freq else args.gamma,
                      mu=0.0 if args.no_memory else args.mu, use_stage=not args.no_stage, lam=args.lam, T=args.T,
                      eta=args.eta, uniform_freq=args.uniform_freq, search=args.search,
                      search_budget=args.search_budget)
    return SMLDistConfig(**values)


def _cmd_train_teacher(args):
    from .distill.pipeline import run_teacher
    print(json.dumps(run_teacher(_config_from_args(args), args.out, quiet=args.quiet), indent=2))


def _cmd_distill(args):
    from .distill.pipeline import run
    executor = None
    if args.scheduler:
        from .search import dask_executor
        executor = dask_executor(args.scheduler)
    r = run(_config_from_args(args), args.out, teacher_checkpoint=args.teacher, quiet=args.quiet, executor=executor)
    print(json.dumps({"student": r["student"]["test"], "teacher": r["teacher"]["test"],
                      "student_params": r["student"]["params"], "student_macs": r["student"]["macs"],
                      "cost_ratio_macs": r["cost_ratio_macs"]}, indent=2))


def _cmd_search(args):
    """Search heads on the features of a trained student checkpoint."""
    from . import io
    from . import search as S
    from .data import Scaler, load, validation_split
    model, tree = io.load_model(args.student)
    data = load(args.dataset, path=args.path)
    train, val = validation_split(data.train, args.val_fraction, args.seed)
    scale = Scaler.from_tree(tree["scaler"]).transform if "scaler" in tree else (lambda X: X)
    specs = S.candidates(S.DEFAULT_SPACE)
    if args.budget:
        specs = S.sample(S.DEFAULT_SPACE, args.budget, args.seed)
    executor = S.dask_executor(args.scheduler) if args.scheduler else None
    board = S.search(specs, S.compute_features(model, scale(train.X)), train.y, S.compute_features(model, scale(val.X)),
                     val.y, data.num_classes, executor, epochs=args.epochs, seed=args.seed)
    board.save(args.out)
    print(board.markdown())


def _cmd_evaluate(args):
    """Test scores of any checkpoint the CLI writes: a teacher or student (the model itself), or an
    exported deploy file (through tinysml.deploy, exactly as a deployment runs it)."""
    from . import io
    from .data import Scaler, load
    from .metrics import evaluate_predictions, report
    tree = io.load(args.checkpoint)
    dataset = args.dataset or tree.get("dataset")
    if not dataset:
        raise ValueError(f"{args.checkpoint!r} does not record the dataset it was trained on; pass --dataset NAME "
                         f"(tinysml data list)")
    data = load(dataset, path=args.path or tree.get("data_path"))
    if tree.get("kind") == "deploy":
        from .deploy import Predictor
        predicted = Predictor.load(args.checkpoint).predict(data.test.X)
    else:
        from .train import predict_logits
        model, tree = io.load_model(args.checkpoint)
        X = Scaler.from_tree(tree["scaler"]).transform(data.test.X) if tree.get("scaler") else data.test.X
        predicted = predict_logits(model, X).argmax(1)
    print(json.dumps({"dataset": dataset, "kind": tree.get("kind"), "test_windows": len(data.test),
                      **evaluate_predictions(data.test.y, predicted)}, indent=2))
    print(report(data.test.y, predicted, data.class_names))


def _cmd_warmup(args):
    from .deploy import warmup
    try:
        done = warmup()
    except RuntimeError as err:
        raise SystemExit(f"tinysml warmup: {err}")
    print(f"compiled {', '.join(done['kernels'])} in {done['seconds']:.1f} s; cached in {done['cache']} "
          f"({done['how']})")


def _cmd_export(args):
    from .deploy import Predictor, export, load_deploy_tree
    if args.out.endswith(".onnx"):
        import numpy as np
        from . import onnx_export
        tree = load_deploy_tree(args.checkpoint)                         # read and checked once
        p = Predictor(tree, use_numba=False, _checked=True)
        windows = np.random.default_rng(0).standard_normal((4, p.channels, p.length)).astype(np.float32)
        diff = onnx_export.write_onnx(tree, args.out, windows, predictor=p)
        print(f"wrote {args.out} (ONNX opset {onnx_export.OPSET}): {p.channels} x {p.length} -> {p.num_classes} classes")
        print("(onnxruntime is not installed: the file was not run)" if diff is None else
              f"checked with onnxruntime before writing: max |logit difference| {diff:.2e}")
        return
    export(args.checkpoint, args.out)
    p = Predictor.load(args.out)
    print(f"wrote {args.out}: {p.channels} x {p.length} -> {p.num_classes} classes ({', '.join(p.class_names)})")


def _cmd_profile(args):
    from . import profile
    from .distill.pipeline import SMLDistConfig
    from .models import build_model, preset
    head = dict(SMLDistConfig().head) if args.head == "pipeline" else {"kind": "linear"}
    model = build_model(preset(args.preset, args.channels, args.length, args.classes, head=head))
    out = profile.summary(model, (args.channels, args.length))
    out["latency_batch1"] = profile.latency(model, (args.channels, args.length))
    print(json.dumps(out, indent=2))


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (not for required options or empty defaults); descriptions
    keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if action.option_strings and not action.required and not empty and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _dataset_option(q, default="basicmotions"):
    from .data import available
    names = sorted(available())
    q.add_argument("--dataset", default=default, choices=names, metavar="NAME",
                   help=f"one of: {', '.join(names)} (`tinysml data list` describes them)")
    q.add_argument("--path", default=None, help="the folder or file of a dataset you downloaded yourself "
                                                "(uci-har-published, hapt-raw, wisdm, pamap2, realworld)")


def _pipeline_options(q, student: bool):
    """The options of ``train-teacher`` (student=False) and ``distill`` (student=True); defaults are
    SMLDistConfig's."""
    from .distill.pipeline import METHODS, SMLDistConfig
    from .models import PRESETS
    c = SMLDistConfig()
    _dataset_option(q)
    q.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    q.add_argument("--seed", type=COUNT0, default=c.seed, help="seed of the split, initialisation and batches")
    q.add_argument("--teacher-preset", default=c.teacher, choices=sorted(PRESETS), help="the teacher network")
    q.add_argument("--batch-size", type=COUNT, default=c.batch_size, help="windows per training step")
    q.add_argument("--teacher-epochs", type=COUNT0, default=c.teacher_epochs, help="epochs of teacher training")
    q.add_argument("--teacher-label-smoothing", type=SMOOTHING, default=c.teacher_label_smoothing,
                   help="label smoothing of the teacher's cross-entropy")
    q.add_argument("--teacher-jitter", type=NONNEG, default=c.teacher_jitter, help="teacher augmentation: noise std")
    q.add_argument("--teacher-scale", type=NONNEG, default=c.teacher_scale, help="teacher augmentation: gain std")
    q.add_argument("--device", default=c.device, choices=["cpu", "cuda"],
                   help="where models and batches live (cuda: CuPy, extra cuda12 or cuda13)")
    q.add_argument("--quiet", action="store_true", help="no progress output")
    if not student:
        return
    q.add_argument("--method", default=c.method, choices=METHODS, help="smldist, a baseline, or none (the student alone)")
    q.add_argument("--teacher", default=None, help="a trained teacher checkpoint to reuse (default: train one "
                                                   "in --out)")
    q.add_argument("--student-preset", default=c.student, choices=sorted(PRESETS), help="the student network")
    q.add_argument("--student-epochs", type=COUNT0, default=c.student_epochs, help="epochs of the final phase")
    q.add_argument("--stage-epochs", type=COUNT0, default=c.stage_epochs, help="per stage anchor")
    q.add_argument("--gamma", type=NONNEG, default=c.gamma, help="weight of the frequency term (stage)")
    q.add_argument("--mu", type=NONNEG, default=c.mu, help="weight of the memory loss")
    q.add_argument("--lam", type=NONNEG, default=c.lam, help="lambda of the smoothed conditional rule")
    q.add_argument("--T", type=POSITIVE, default=c.T, help="temperature of the smoothed conditional rule")
    q.add_argument("--eta", type=NONNEG, default=c.eta, help="hardness of the conditional rule")
    q.add_argument("--no-freq", action="store_true", help="ablation: no frequency term (gamma = 0)")
    q.add_argument("--uniform-freq", action="store_true", help="ablation: plain (unweighted) frequency loss")
    q.add_argument("--no-memory", action="store_true", help="ablation: no memory loss (mu = 0)")
    q.add_argument("--no-stage", action="store_true", help="ablation: no stage phase")
    q.add_argument("--search", action="store_true", help="auto-search the student's classifier head")
    q.add_argument("--search-budget", type=COUNT, default=None, help="random sample of that many heads "
                                                                      "(default: the whole grid)")
    q.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:port) for the search "
                                                     "(default: local processes)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models import PRESETS
    p = argparse.ArgumentParser(prog="tinysml", formatter_class=_Help,
                                description="SMLDist (stage-memory-logits distillation) for human activity "
                                            "recognition.\nStart with `tinysml data list`, then `tinysml distill "
                                            "--dataset basicmotions --out runs/demo`.")
    p.add_argument("--version", action="version", version=f"tinysml {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="list datasets, describe one, or fetch it", formatter_class=_Help)
    d.add_argument("action", choices=["list", "info", "fetch"],
                   help="list: every dataset name; info: shapes, classes, counts and source of NAME (fetching it "
                        "first if needed); fetch: the same, for a download ahead of time")
    d.add_argument("name", nargs="?", default="basicmotions", help="a dataset name from `tinysml data list`")
    d.add_argument("--path", default=None, help="the folder or file of a dataset you downloaded yourself")
    d.set_defaults(run=_cmd_data)

    t = sub.add_parser("train", help="train one preset with cross-entropy (no distillation)", formatter_class=_Help)
    _dataset_option(t)
    t.add_argument("--preset", default="har-teacher", choices=sorted(PRESETS), help="the network")
    t.add_argument("--out", required=True, type=_output_file,
                   help="model checkpoint to write (.npz); training state goes beside it")
    t.add_argument("--epochs", type=COUNT, default=40, help="training epochs")
    t.add_argument("--batch-size", type=COUNT, default=32, help="windows per step")
    t.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak learning rate")
    t.add_argument("--weight-decay", type=NONNEG, default=1e-2, help="decoupled weight decay")
    t.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw", "radam", "ranger"], help="optimiser")
    t.add_argument("--schedule", default="cosine", choices=["cosine", "plateau", "none"], help="learning-rate schedule")
    t.add_argument("--label-smoothing", type=SMOOTHING, default=0.0, help="label smoothing of the cross-entropy")
    t.add_argument("--jitter", type=NONNEG, default=0.0, help="augmentation: std of additive noise (scaled units)")
    t.add_argument("--scale", type=NONNEG, default=0.0, help="augmentation: std of the per-channel gain N(1, s)")
    t.add_argument("--scaling", default="robust", choices=["robust", "zscore", "none"],
                   help="per-channel input scaling, fitted on the training subjects")
    t.add_argument("--val-fraction", type=FRACTION, default=0.2, help="share of training subjects held out for selection")
    t.add_argument("--seed", type=COUNT0, default=0, help="seed of the split, initialisation and batches")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(run=_cmd_train)

    tt = sub.add_parser("train-teacher", help="phase 1 of SMLDist: train the teacher in a run directory",
                        formatter_class=_Help)
    _pipeline_options(tt, student=False)
    tt.set_defaults(run=_cmd_train_teacher)

    di = sub.add_parser("distill", help="distil a student: smldist | kd | fitnet | at | none", formatter_class=_Help)
    _pipeline_options(di, student=True)
    di.set_defaults(run=_cmd_distill)

    from . import compare
    co = sub.add_parser("compare", help="the results table: teacher, student alone, baselines and SMLDist over "
                                        "seeds, on local processes or a dask cluster", formatter_class=_Help)
    compare.build_parser(co)
    co.set_defaults(run=lambda args: compare.main(args))
    from . import power
    pw = sub.add_parser("power", help="how many seeds a comparison needs for a wanted 95%% interval, from a "
                                      "grid's finished runs", formatter_class=_Help)
    power.build_parser(pw)
    pw.set_defaults(run=lambda args: power.main(args))
    from . import evidence
    ev = sub.add_parser("evidence", help="SMLDist vs the baselines on four datasets and the cross-dataset verdict "
                                         "(docs/results.md; resumable, --report-only)", formatter_class=_Help)
    evidence.build_parser(ev)
    ev.set_defaults(run=lambda args: evidence.main(args))

    se = sub.add_parser("search", help="auto-search classifier heads on a trained student's features",
                        formatter_class=_Help)
    se.add_argument("--student", required=True, help="student model checkpoint")
    _dataset_option(se)
    se.add_argument("--out", default="leaderboard", help="prefix of the CSV and markdown leaderboard")
    se.add_argument("--budget", type=COUNT, default=None, help="random sample of that many heads (default: all)")
    se.add_argument("--epochs", type=COUNT, default=30, help="epochs per candidate head")
    se.add_argument("--val-fraction", type=FRACTION, default=0.2, help="share of training subjects held out for selection")
    se.add_argument("--seed", type=COUNT0, default=0, help="seed of the split and the candidates")
    se.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:port); default: local processes")
    se.set_defaults(run=_cmd_search)

    e = sub.add_parser("evaluate", help="test accuracy, macro-F1 and a per-class report of any checkpoint "
                                        "(teacher, student or exported)", formatter_class=_Help)
    e.add_argument("checkpoint", help="a .npz written by train, train-teacher, distill or export")
    _dataset_option(e, default=None)
    e.set_defaults(run=_cmd_evaluate)

    x = sub.add_parser("export", help="write the deployable checkpoint (batch norm folded) for tinysml.deploy, "
                                      "or an ONNX file when --out ends in .onnx (extra: onnx)", formatter_class=_Help)
    x.add_argument("checkpoint", help="a model checkpoint (.npz)")
    x.add_argument("--out", required=True, type=_output_file, help="a .npz deploy checkpoint, or a .onnx file "
                                                                    "(checked with onnxruntime when it is installed)")
    x.set_defaults(run=_cmd_export)

    w = sub.add_parser("warmup", help="compile and cache every kernel of the deployment path now (an image build, "
                                      "an install step), so that a later process starts on the compiled path",
                       formatter_class=_Help)
    w.set_defaults(run=_cmd_warmup)

    f = sub.add_parser("profile", help="parameters, MACs, bytes and latency of a preset", formatter_class=_Help)
    f.add_argument("--preset", default="har-student", choices=sorted(PRESETS), help="the network")
    f.add_argument("--channels", type=COUNT, default=6, help="input channels")
    f.add_argument("--length", type=COUNT, default=128, help="time steps per window")
    f.add_argument("--classes", type=COUNT, default=6, help="classes")
    f.add_argument("--head", default="pipeline", choices=["pipeline", "linear"],
                   help="pipeline: the classifier head the SMLDist pipeline gives teacher and student (a "
                        "Hopfield memory + linear mixture); linear: one linear layer")
    f.set_defaults(run=_cmd_profile)
    p.commands = sub.choices          # name -> its parser (docs/cli.md: tinysml/cli_reference.py)
    return p


def main(argv=None) -> int:
    """Run one command. Every failure a user can cause (a bad argument, file, dataset or checkpoint,
    a full disk, too little memory) is one line on stderr and exit status 2; an unexpected error
    (a bug) is one line and status 1, with the traceback when TINYSML_DEBUG=1."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BrokenPipeError:                    # output piped into a reader that stopped (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("tinysml: interrupted (checkpoints are written atomically: rerun the same command to resume)",
              file=sys.stderr)
        return 130
    except MemoryError:
        print("tinysml: error: not enough memory for this command (a smaller --batch-size, width or dataset "
              "may fit)", file=sys.stderr)
        return 2
    except (ValueError, OSError, ImportError, RuntimeError, ArithmeticError) as err:
        # ValueError covers bad data, configs and checkpoints (DataFormatError, CheckpointError,
        # ArchitectureError); OSError a missing, unwritable or full destination; RuntimeError a fetch
        if os.environ.get("TINYSML_DEBUG"):
            raise
        message = " ".join(str(err).split()) if isinstance(err, OSError) else str(err)
        print(f"tinysml: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the last line of defence of a command-line tool
        if os.environ.get("TINYSML_DEBUG"):
            raise
        print(f"tinysml: internal error: {type(err).__name__}: {err} (this is a bug in tinysml; rerun with "
              f"TINYSML_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
