"""Run by tests/test_train.py in a subprocess: train the small student on BasicMotions with a
checkpoint, optionally SIGKILL-ing itself in the middle of a given optimiser step."""
import os
import signal
import sys


from tinysml import functions as F, io
from tinysml.data import fit_scaler, load, validation_split
from tinysml.models import build_model, preset
from tinysml.train import TrainConfig, fit

out, kill_at = sys.argv[1], int(sys.argv[2])
data = load("basicmotions")
train, val = validation_split(data.train, 0.25, seed=0)
scaler = fit_scaler(train.X)
model = build_model(preset("har-student", 6, 100, 4, head={"kind": "linear", "dropout": 0.2}), seed=0)
steps = [0]


def loss_fn(m, x, y):
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return F.cross_entropy(m(x), y)


config = TrainConfig(epochs=5, batch_size=8, lr=3e-3, optimizer="ranger", schedule="cosine", seed=3)
fit(model, (scaler.transform(train.X), train.y), (scaler.transform(val.X), val.y), config, loss_fn=loss_fn,
    checkpoint=os.path.join(out, "train.npz"), progress=False, restore_best=False)
io.save_model(os.path.join(out, "final.npz"), model)
