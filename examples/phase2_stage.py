"""SMLDist, phase 2 of 3: progressive, frequency-aware stage distillation.

    python examples/phase2_stage.py [--epochs-per-stage 5] [--out runs/phases]

For each stage anchor s in turn, the student's stem and bottlenecks up to anchor s learn to
reproduce the teacher's feature map at anchor s:

    L_stage = MSE(F_S, F_T) + gamma * sum_f a_f mean_{b,c} (|rFFT F_S|_f - |rFFT F_T|_f)^2
    a = softmax_f(mean_{b,c} log(1 + |rFFT F_T|_f) / tau)      (the teacher's frequency attention)

The teacher is frozen (eval mode, no gradients); each anchor gets a fresh optimiser.
"""
import argparse
import os

from tinysml import io
from tinysml.data import load, prepare
from tinysml.distill import StudentStages, stage_loss
from tinysml.models import build_model, preset
from tinysml.tensor import no_grad
from tinysml.train import TrainConfig, fit

p = argparse.ArgumentParser()
p.add_argument("--epochs-per-stage", type=int, default=5)
p.add_argument("--gamma", type=float, default=1.0)
p.add_argument("--out", default="runs/phases")
args = p.parse_args()

teacher, tree = io.load_model(os.path.join(args.out, "teacher.npz"))
teacher.eval()
teacher.requires_grad_(False)
data = prepare(load(tree["dataset"]), val_fraction=0.25, seed=0)
C, L = data.dataset.window_shape
student = build_model(preset("har-student", C, L, data.dataset.num_classes, head=teacher.config.head), seed=1)
stages = StudentStages(student, teacher)          # the student plus an adapter per anchor (identity here)
print("anchor shapes: student", student.stage_shapes(), "teacher", teacher.stage_shapes())

for s in range(len(student.anchors)):
    def loss_fn(model, x, y, s=s):
        with no_grad():
            F_T = teacher.forward_stages(x, upto=s)[0][s].data            # (B, C_s, L_s), a constant
        return stage_loss(stages.stage_feature(x, s), F_T, gamma=args.gamma, tau=1.0)

    def val_loss(model, s=s):
        x = data.val[0]
        from tinysml import Tensor
        with no_grad():
            F_T = teacher.forward_stages(Tensor(x), upto=s)[0][s].data
            return {"neg_stage_loss": -stage_loss(stages.stage_feature(Tensor(x), s), F_T, args.gamma).item()}

    result = fit(stages, data.train, data.val,
                 TrainConfig(epochs=args.epochs_per_stage, batch_size=16, lr=1e-3, weight_decay=0.0, schedule="none",
                             select_metric="neg_stage_loss"),
                 loss_fn=loss_fn, params=stages.stage_parameters(s), evaluate_fn=val_loss, progress=False)
    print(f"anchor {s}: best validation stage loss {-result.best_score:.4f}")

io.save_model(os.path.join(args.out, "student_stage.npz"), student)
