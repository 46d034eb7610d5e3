"""The ``tinysml`` command: datasets, training, evaluation and model cost from the shell.

    tinysml data list | data info NAME
    tinysml train --dataset basicmotions --preset har-teacher --out runs/teacher.npz
    tinysml evaluate runs/teacher.npz --dataset basicmotions
    tinysml profile --preset har-student --channels 9 --length 128 --classes 6
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import validate as V


def _typed(rule: dict, integer: bool = False):
    """An argparse type: parse a number and check it against a ``validate`` rule, naming the rule."""
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}")
        try:
            return V.number("the value", value, **{k: v for k, v in rule.items() if k != "integer"}, integer=integer)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace("the value must be", "must be")) from None
    parse.__name__ = "integer" if integer else "number"
    return parse


COUNT, COUNT0 = _typed(V.COUNT, integer=True), _typed(V.COUNT0, integer=True)
POSITIVE, NONNEG = _typed(V.POSITIVE), _typed(V.NONNEG)
FRACTION, SMOOTHING = _typed(V.FRACTION), _typed({"low": 0, "high": 0.99})


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
                  results=result)
    print(json.dumps(result, indent=2))


def _config_from_args(args):
    from .distill.pipeline import SMLDistConfig
    overrides = {k: v for k, v in {
        "dataset": args.dataset, "data_path": args.path, "seed": args.seed, "teacher": args.teacher_preset,
        "student": args.student_preset, "batch_size": args.batch_size, "teacher_epochs": args.teacher_epochs,
        "student_epochs": args.student_epochs, "stage_epochs": args.stage_epochs,
        "teacher_label_smoothing": args.teacher_label_smoothing, "teacher_jitter": args.teacher_jitter,
        "teacher_scale": args.teacher_scale,
        "method": getattr(args, "method", None), "gamma": 0.0 if getattr(args, "no_freq", False) else args.gamma,
        "mu": 0.0 if getattr(args, "no_memory", False) else args.mu,
        "use_stage": not getattr(args, "no_stage", False), "lam": args.lam, "T": args.T, "eta": args.eta,
        "uniform_freq": getattr(args, "uniform_freq", False), "search": getattr(args, "search", False),
        "search_budget": getattr(args, "search_budget", None), "device": args.device}.items() if v is not None}
    return SMLDistConfig(**overrides)


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
    from . import io
    from .data import Scaler, load
    from .metrics import report
    from .train import evaluate, predict_logits
    model, tree = io.load_model(args.checkpoint)
    data = load(args.dataset or tree.get("dataset", ""), path=args.path)
    X = Scaler.from_tree(tree["scaler"]).transform(data.test.X) if "scaler" in tree else data.test.X
    print(json.dumps(evaluate(model, X, data.test.y), indent=2))
    print(report(data.test.y, predict_logits(model, X).argmax(1), data.class_names))


def _cmd_export(args):
    from .deploy import Predictor, export
    if args.out.endswith(".onnx"):
        import numpy as np
        from . import onnx_export
        p = Predictor.load(args.checkpoint, use_numba=False)
        windows = np.random.default_rng(0).standard_normal((4, p.channels, p.length)).astype(np.float32)
        diff = onnx_export.to_onnx(args.checkpoint, args.out, check_windows=windows)
        print(f"wrote {args.out} (ONNX opset {onnx_export.OPSET}): {p.channels} x {p.length} -> {p.num_classes} classes")
        print("(onnxruntime is not installed: the file was not run)" if diff is None else
              f"checked with onnxruntime before writing: max |logit difference| {diff:.2e}")
        return
    export(args.checkpoint, args.out)
    p = Predictor.load(args.out)
    print(f"wrote {args.out}: {p.channels} x {p.length} -> {p.num_classes} classes ({', '.join(p.class_names)})")


def _cmd_profile(args):
    from . import profile
    from .models import build_model, preset
    model = build_model(preset(args.preset, args.channels, args.length, args.classes))
    out = profile.summary(model, (args.channels, args.length))
    out["latency_batch1"] = profile.latency(model, (args.channels, args.length))
    print(json.dumps(out, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from .models import PRESETS
    p = argparse.ArgumentParser(prog="tinysml", description="SMLDist for human activity recognition")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="list datasets or describe one")
    d.add_argument("action", choices=["list", "info", "fetch"])
    d.add_argument("name", nargs="?", default="basicmotions")
    d.add_argument("--path", default=None, help="folder or file of a data set you downloaded yourself")
    d.set_defaults(run=_cmd_data)

    t = sub.add_parser("train", help="train a preset with cross-entropy")
    t.add_argument("--dataset", default="basicmotions")
    t.add_argument("--path", default=None, help="folder or file of a data set you downloaded yourself")
    t.add_argument("--preset", default="har-teacher", choices=sorted(PRESETS))
    t.add_argument("--out", required=True, type=_output_file, help="model checkpoint to write (.npz); training state goes beside it")
    t.add_argument("--epochs", type=COUNT, default=40)
    t.add_argument("--batch-size", type=COUNT, default=32)
    t.add_argument("--lr", type=POSITIVE, default=2e-3)
    t.add_argument("--weight-decay", type=NONNEG, default=1e-2)
    t.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw", "radam", "ranger"])
    t.add_argument("--schedule", default="cosine", choices=["cosine", "plateau", "none"])
    t.add_argument("--label-smoothing", type=SMOOTHING, default=0.0)
    t.add_argument("--jitter", type=NONNEG, default=0.0, help="augmentation: std of additive noise (scaled units)")
    t.add_argument("--scale", type=NONNEG, default=0.0, help="augmentation: std of the per-channel gain N(1, s)")
    t.add_argument("--scaling", default="robust", choices=["robust", "zscore", "none"])
    t.add_argument("--val-fraction", type=FRACTION, default=0.2)
    t.add_argument("--seed", type=COUNT0, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(run=_cmd_train)

    def pipeline_options(q, method: bool):
        from .distill.pipeline import METHODS
        q.add_argument("--dataset", default="basicmotions")
        q.add_argument("--path", default=None, help="folder or file of a data set you downloaded yourself")
        q.add_argument("--out", required=True, help="run directory (resumed if it exists)")
        q.add_argument("--seed", type=COUNT0, default=0)
        q.add_argument("--teacher-preset", default=None)
        q.add_argument("--student-preset", default=None)
        q.add_argument("--batch-size", type=COUNT, default=None)
        q.add_argument("--teacher-epochs", type=COUNT0, default=None)
        q.add_argument("--student-epochs", type=COUNT0, default=None)
        q.add_argument("--stage-epochs", type=COUNT0, default=None)
        q.add_argument("--teacher-label-smoothing", type=SMOOTHING, default=None)
        q.add_argument("--teacher-jitter", type=NONNEG, default=None, help="teacher augmentation: noise std")
        q.add_argument("--teacher-scale", type=NONNEG, default=None, help="teacher augmentation: gain std")
        q.add_argument("--gamma", type=NONNEG, default=None, help="weight of the frequency term (stage)")
        q.add_argument("--mu", type=NONNEG, default=None, help="weight of the memory loss")
        q.add_argument("--lam", type=NONNEG, default=None, help="lambda of the smoothed conditional rule")
        q.add_argument("--T", type=POSITIVE, default=None, help="temperature of the smoothed conditional rule")
        q.add_argument("--eta", type=NONNEG, default=None, help="hardness of the conditional rule")
        q.add_argument("--device", default=None, choices=["cpu", "cuda"],
                       help="where models and batches live (cuda: CuPy, extra cuda12 or cuda13)")
        q.add_argument("--quiet", action="store_true")
        if method:
            q.add_argument("--method", default="smldist", choices=METHODS)
            q.add_argument("--teacher", default=None, help="a trained teacher checkpoint to reuse")
            q.add_argument("--no-freq", action="store_true", help="ablation: no frequency term (gamma = 0)")
            q.add_argument("--uniform-freq", action="store_true", help="ablation: plain (unweighted) frequency loss")
            q.add_argument("--no-memory", action="store_true", help="ablation: no memory loss (mu = 0)")
            q.add_argument("--no-stage", action="store_true", help="ablation: no stage phase")
            q.add_argument("--search", action="store_true", help="auto-search the student's classifier head")
            q.add_argument("--search-budget", type=COUNT, default=None, help="random sample of that many heads")
            q.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:port) for the search")

    tt = sub.add_parser("train-teacher", help="phase 1 of SMLDist: train the teacher")
    pipeline_options(tt, method=False)
    tt.set_defaults(run=_cmd_train_teacher)

    di = sub.add_parser("distill", help="distil a student: smldist | kd | fitnet | at | none")
    pipeline_options(di, method=True)
    di.set_defaults(run=_cmd_distill)

    se = sub.add_parser("search", help="auto-search classifier heads on a trained student's features")
    se.add_argument("--student", required=True, help="student model checkpoint")
    se.add_argument("--dataset", default="basicmotions")
    se.add_argument("--path", default=None)
    se.add_argument("--out", default="leaderboard", help="prefix of the CSV and markdown leaderboard")
    se.add_argument("--budget", type=COUNT, default=None)
    se.add_argument("--epochs", type=COUNT, default=30)
    se.add_argument("--val-fraction", type=FRACTION, default=0.2)
    se.add_argument("--seed", type=COUNT0, default=0)
    se.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:port); default: local processes")
    se.set_defaults(run=_cmd_search)

    e = sub.add_parser("evaluate", help="test accuracy, macro-F1 and a per-class report of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", default=None, help="default: the dataset recorded in the checkpoint")
    e.add_argument("--path", default=None, help="folder or file of a data set you downloaded yourself")
    e.set_defaults(run=_cmd_evaluate)

    x = sub.add_parser("export", help="write the deployable checkpoint (batch norm folded) for tinysml.deploy, "
                                      "or an ONNX file when --out ends in .onnx (extra: onnx)")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True, type=_output_file, help="a .npz deploy checkpoint, or a .onnx file (checked with "
                                                 "onnxruntime when it is installed)")
    x.set_defaults(run=_cmd_export)

    f = sub.add_parser("profile", help="parameters, MACs, bytes and latency of a preset")
    f.add_argument("--preset", default="har-student", choices=sorted(PRESETS))
    f.add_argument("--channels", type=COUNT, default=9)
    f.add_argument("--length", type=COUNT, default=128)
    f.add_argument("--classes", type=COUNT, default=6)
    f.set_defaults(run=_cmd_profile)
    return p


def main(argv=None) -> int:
    """Run one command. Every failure a user can cause (a bad argument, file, dataset or checkpoint,
    a full disk, too little memory) is one line on stderr and exit status 2; an unexpected error
    (a bug) is one line and status 1, with the traceback when TINYSML_DEBUG=1."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
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
