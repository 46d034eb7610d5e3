"""SMLDist, phase 1 of 3: train the teacher.

    python examples/phase1_teacher.py [--dataset basicmotions] [--epochs 40] [--out runs/phases]

The teacher is the small 1-D MobileNetV3 (`har-teacher`, ~1 M parameters) with the released code's
classifier head: a gated mixture of a Hopfield memory and a linear unit. Plain cross-entropy,
AdamW + cosine, selection on a validation split carved from the training subjects.
"""
import argparse
import os

from tinysml import io
from tinysml.data import load, prepare
from tinysml.models import build_model, preset
from tinysml.train import TrainConfig, evaluate, fit

HEAD = {"kind": "mixture", "heads": [{"kind": "hopfield", "patterns": 16, "dim": 32}, {"kind": "linear"}]}

p = argparse.ArgumentParser()
p.add_argument("--dataset", default="basicmotions")
p.add_argument("--epochs", type=int, default=40)
p.add_argument("--out", default="runs/phases")
args = p.parse_args()

data = prepare(load(args.dataset), val_fraction=0.25, seed=0)          # scaling fitted on training subjects only
C, L = data.dataset.window_shape
teacher = build_model(preset("har-teacher", C, L, data.dataset.num_classes, head=HEAD), seed=0)
fit(teacher, data.train, data.val, TrainConfig(epochs=args.epochs, batch_size=16),
    checkpoint=os.path.join(args.out, "teacher.train.npz"))              # rerun after a kill: it resumes
io.save_model(os.path.join(args.out, "teacher.npz"), teacher, scaler=data.scaler.to_tree(),
              class_names=data.dataset.class_names, dataset=args.dataset)
print("teacher test", evaluate(teacher, *data.test))
