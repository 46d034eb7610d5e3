"""Train the small teacher and a student on the built-in BasicMotions dataset, from scratch.

    python examples/train_basicmotions.py [--epochs 40] [--seed 0] [--out runs/basicmotions]

Steps, each a few lines below: load the data; carve a validation split from the training windows;
fit the per-channel scaling on the training part only; build the networks from their presets;
train each with AdamW + cosine, keeping the epoch with the best validation macro-F1; report test
accuracy, macro-F1, parameters and multiply-adds. Checkpoints go to --out; rerunning resumes.
"""
from __future__ import annotations

import argparse
import os
import time

import tinysml
from tinysml import io, profile
from tinysml.data import fit_scaler, load, validation_split
from tinysml.models import build_model, preset
from tinysml.train import TrainConfig, evaluate, fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/basicmotions")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bars")
    args = parser.parse_args(argv)

    data = load("basicmotions")
    print(data.info())
    train, val = validation_split(data.train, fraction=0.25, seed=args.seed)
    scaler = fit_scaler(train.X, "robust")                       # statistics of the training part only
    X_train, X_val, X_test = (scaler.transform(s.X) for s in (train, val, data.test))
    C, L = data.window_shape
    print(f"backend {tinysml.get_backend()}; {len(train)} train / {len(val)} validation / {len(data.test)} test windows")

    rows = []
    for name in ("har-teacher", "har-student"):
        model = build_model(preset(name, C, L, data.num_classes), seed=args.seed)
        config = TrainConfig(epochs=args.epochs, batch_size=16, lr=2e-3, weight_decay=1e-2, seed=args.seed)
        t0 = time.perf_counter()
        result = fit(model, (X_train, train.y), (X_val, val.y), config,
                     checkpoint=os.path.join(args.out, f"{name}.train.npz"),
                     fingerprint={"model": model.config.to_dict()}, progress=not args.quiet)
        test = evaluate(model, X_test, data.test.y)
        cost = profile.summary(model, (C, L))
        io.save_model(os.path.join(args.out, f"{name}.npz"), model, scaler=scaler.to_tree(),
                      class_names=data.class_names, test=test)
        rows.append((name, test["accuracy"], test["macro_f1"], cost["params"], cost["macs"],
                     result.best_epoch, time.perf_counter() - t0))

    print(f"\n{'model':<14}{'test acc':>10}{'macro-F1':>10}{'params':>10}{'MACs':>12}{'best ep':>9}{'time s':>8}")
    for name, acc, f1, params, macs, best_epoch, seconds in rows:
        print(f"{name:<14}{acc:>10.4f}{f1:>10.4f}{params:>10,}{macs:>12,}{best_epoch:>9}{seconds:>8.1f}")
    return rows


if __name__ == "__main__":
    main()
