"""SMLDist, phase 3 of 3: memory and logits distillation, end to end.

    python examples/phase3_memory_logits.py [--epochs 40] [--out runs/phases]

1. Transplant: the teacher's classifier head (its Hopfield memory, the linear unit, the gate) is
   copied into the stage-distilled student.
2. Train end to end with   L = L_logits + mu KL(p_T || p_S):
   L_logits is the smoothed conditional rule (teacher targets where the teacher is right, the label
   where it is wrong, both smoothed); p_T is the teacher's association with its memories and p_S the
   association of the student's query with the teacher's memories.
"""
import argparse
import os

from tinysml import io, profile
from tinysml.data import load, prepare
from tinysml.distill import memory_loss, smoothed_conditional_loss, teacher_association, transplant
from tinysml.models.heads import memory_unit
from tinysml.tensor import no_grad
from tinysml.train import TrainConfig, evaluate, fit

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=40)
p.add_argument("--mu", type=float, default=1.0)
p.add_argument("--out", default="runs/phases")
args = p.parse_args()

teacher, tree = io.load_model(os.path.join(args.out, "teacher.npz"))
teacher.eval()
teacher.requires_grad_(False)
student, _ = io.load_model(os.path.join(args.out, "student_stage.npz"))
data = prepare(load(tree["dataset"]), val_fraction=0.25, seed=0)
print("transplanted:", transplant(teacher.classifier, student.classifier))
unit = memory_unit(student.classifier)


def loss_fn(model, x, y):
    with no_grad():
        h_t = teacher.features(x)                                # (B, head_width), one teacher forward
        z_t = teacher.classifier(h_t).data                       # teacher logits, constants
    p_t, patterns = teacher_association(teacher.classifier, h_t)  # (B, N) and (N, d)
    h = student.features(x)                                      # (B, head_width)
    loss = smoothed_conditional_loss(student.classifier(h), z_t, y, lam=1.0, T=1.0, eta=1.0)
    return loss + args.mu * memory_loss(unit, h, p_t, patterns)


fit(student, data.train, data.val, TrainConfig(epochs=args.epochs, batch_size=16), loss_fn=loss_fn)
shape = data.dataset.window_shape
print("student test", evaluate(student, *data.test), "teacher test", evaluate(teacher, *data.test))
print(f"student/teacher MACs: {profile.count_macs(student, shape) / profile.count_macs(teacher, shape):.2f}")
io.save_model(os.path.join(args.out, "student.npz"), student, scaler=data.scaler.to_tree(),
              class_names=data.dataset.class_names, dataset=tree["dataset"])
