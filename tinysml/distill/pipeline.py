"""The SMLDist pipeline (docs/algorithm.md, section 8) and the baselines, behind one config.

    1. teacher:  train the teacher with cross-entropy (or reuse a teacher checkpoint)
    2. stage:    progressive stage distillation of the student, anchor by anchor        (smldist)
    3. head:     the student's classifier head; transplant the teacher's memory into it (smldist)
    4. final:    end-to-end training with the method's loss:
                 smldist  L_logits (smoothed conditional rule) + mu KL(p_T || p_S)
                 kd       Hinton KD;  fitnet  CE + hint MSE;  at  CE + attention transfer;  none  CE
    5. evaluate: accuracy and macro-F1 on the test subjects, parameters, MACs, cost ratio

Every phase writes its result into ``run_dir`` and every training loop checkpoints each epoch, so
a killed run resumes where it stopped; a run directory written with another config is refused.
Model selection always uses the validation split carved from the training subjects.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .. import io, profile
from .. import validate as V
from ..backend import get_array_module
from ..data import load
from ..data.prepare import prepare
from ..models import build_model, preset
from ..nn import Module
from ..tensor import Tensor, batch_invariant, no_grad
from ..train import TrainConfig, evaluate, fit, predict_logits
from .final_loss import WithAdapter, final_loss
from .memory import transplant
from .run_dir import check_run_dir, check_teacher_identity
from .stage import StageAdapter, StudentStages, stage_loss
from .teacher_cache import teacher_outputs

METHODS = ("smldist", "kd", "fitnet", "at", "none")
OPTIMIZERS = ("adamw", "ranger", "radam", "sgd")


@dataclass
class SMLDistConfig:
    """Every hyper-parameter of a run; saved as ``config.json`` in the run directory."""
    dataset: str = "basicmotions"
    data_path: str | None = None
    device: str = "cpu"             # "cuda": every model and batch on the GPU (CuPy); results do not depend on it
    method: str = "smldist"
    seed: int = 0
    teacher: str = "har-teacher"
    student: str = "har-student"
    head: dict = field(default_factory=lambda: {"kind": "mixture", "heads": [
        {"kind": "hopfield", "patterns": 16, "dim": 32}, {"kind": "linear"}]})
    val_fraction: float = 0.2
    scaling: str = "robust"
    batch_size: int = 64
    # [ours] every epoch of every phase runs at least this many steps (train.TrainConfig.min_steps):
    # budgets that do not starve small datasets. 0: one pass over the training windows per epoch
    min_steps_per_epoch: int = 0
    optimizer: str = "adamw"        # teacher and final phase: adamw | ranger | radam | sgd
    schedule: str = "cosine"        # teacher and final phase: cosine [ours] | plateau (the released code's)
    teacher_epochs: int = 30
    teacher_lr: float = 2e-3
    # [ours] the teacher's recipe: label smoothing and training-time augmentation (data.batches.augment);
    # off by default. Students keep the plain recipe, so every student method trains the same way.
    teacher_label_smoothing: float = 0.0
    teacher_jitter: float = 0.0     # std of additive Gaussian noise, in scaled units
    teacher_scale: float = 0.0      # std of the per-window-and-channel gain N(1, scale)
    student_epochs: int = 30
    student_lr: float = 2e-3
    weight_decay: float = 1e-2
    # stage distillation (docs/algorithm.md, section 3)
    use_stage: bool = True
    stage_epochs: int = 5           # per anchor; a fresh optimiser for each
    stage_lr: float = 1e-3          # [ours] the released 1e-4 is for 200-epoch budgets
    stage_optimizer: str | None = None   # None: the same as ``optimizer`` (always without weight decay)
    stage_scope: str = "anchor"     # "anchor": stem + blocks up to the anchor [ours]; "all": every student parameter [code]
    gamma: float = 1.0              # weight of the spectral term; 0 = the released code's plain MSE
    tau: float = 1.0
    uniform_freq: bool = False
    # memory distillation (docs/algorithm.md, section 4)
    mu: float = 1.0
    transplant_head: bool = True
    # logits distillation (docs/algorithm.md, section 6)
    lam: float = 1.0
    T: float = 1.0
    eta: float = 1.0
    logits_form: str = "released"   # "released": section 6 as in the authors' code; "direct" [ours]: CE on q~
    # head auto-search (docs/algorithm.md, section 5): candidates trained on the stage-distilled student's features
    search: bool = False
    search_space: dict | None = None        # None: tinysml.search.DEFAULT_SPACE
    search_budget: int | None = None        # random sample of that many candidates; None: the whole grid
    search_epochs: int = 30
    # [ours] read the frozen teacher's outputs from a cache computed once (distill/teacher_cache.py)
    # instead of running it on every batch; results are bitwise the same either way
    teacher_cache: bool = True
    # baselines
    kd_T: float = 4.0
    kd_alpha: float = 0.9
    hint_beta: float = 1.0
    at_beta: float = 1000.0

    def __post_init__(self):
        if self.logits_form not in ("released", "direct"):
            raise ValueError(f"logits_form must be 'released' or 'direct', got {self.logits_form!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.schedule not in ("cosine", "plateau"):
            raise ValueError(f"schedule must be 'cosine' or 'plateau', got {self.schedule!r}")
        if self.stage_scope not in ("anchor", "all"):
            raise ValueError(f"stage_scope must be 'anchor' or 'all', got {self.stage_scope!r}")
        for name in ("optimizer", "stage_optimizer"):
            if getattr(self, name) not in OPTIMIZERS + ((None,) if name == "stage_optimizer" else ()):
                raise ValueError(f"{name} must be one of {OPTIMIZERS}, got {getattr(self, name)!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        V.fields(self, {"seed": V.COUNT0, "batch_size": V.COUNT, "min_steps_per_epoch": V.COUNT0, "teacher_epochs": V.COUNT0, "student_epochs": V.COUNT0,
                        "stage_epochs": V.COUNT0, "search_epochs": V.COUNT, "val_fraction": V.FRACTION,
                        "teacher_lr": V.POSITIVE, "student_lr": V.POSITIVE, "stage_lr": V.POSITIVE,
                        "weight_decay": V.NONNEG, "teacher_label_smoothing": {"low": 0, "high": 0.99},
                        "teacher_jitter": V.NONNEG, "teacher_scale": V.NONNEG, "gamma": V.NONNEG, "tau": V.POSITIVE,
                        "mu": V.NONNEG, "lam": V.NONNEG, "T": V.POSITIVE, "eta": V.NONNEG, "kd_T": V.POSITIVE,
                        "kd_alpha": V.PROBABILITY, "hint_beta": V.NONNEG, "at_beta": V.NONNEG})
        if self.search_budget is not None:
            V.number("search_budget", self.search_budget, **V.COUNT)

    @classmethod
    def from_dict(cls, d: dict) -> "SMLDistConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


class _Progress:
    """Tiny logger: prints phase lines unless quiet."""

    def __init__(self, quiet):
        self.quiet = quiet

    def __call__(self, msg):
        if not self.quiet:
            print(msg, flush=True)


def _on_device(module: Module, array):
    """``array`` (NumPy) on the device of ``module``'s parameters."""
    return get_array_module(module.parameters()[0].data).asarray(array)


def _data_options(config: SMLDistConfig) -> dict:
    """What a checkpoint records so that ``tinysml evaluate`` can find its test data again."""
    return {"dataset": config.dataset, **({"data_path": config.data_path} if config.data_path else {})}


def _train_config(config: SMLDistConfig, epochs, lr, **overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": epochs, "batch_size": config.batch_size, "lr": lr, "min_steps": config.min_steps_per_epoch,
                          "weight_decay": config.weight_decay, "optimizer": config.optimizer, "schedule": config.schedule,
                          "seed": config.seed, **overrides})


# The budget and optimisers of the authors' released code (docs/algorithm.md, section 8), as one set of
# SMLDistConfig values: ``SMLDistConfig(**RELEASED_RECIPE, ...)``, ``tinysml compare --recipe released``.
RELEASED_RECIPE = {"batch_size": 256, "min_steps_per_epoch": 0, "optimizer": "ranger", "schedule": "plateau",
                   "weight_decay": 0.0, "teacher_epochs": 200, "teacher_lr": 1e-3, "student_epochs": 200,
                   "student_lr": 1e-3, "stage_epochs": 200, "stage_lr": 1e-4, "stage_optimizer": "adamw",
                   "stage_scope": "all", "teacher_label_smoothing": 0.0, "teacher_jitter": 0.0, "teacher_scale": 0.0}


def _models_for(config: SMLDistConfig, shape, num_classes):
    """Fresh teacher and student for windows of ``shape`` (C, L): the teacher initialised from the
    run's seed, the student from seed + 1000 (never the teacher's stream)."""
    C, L = shape
    teacher = build_model(preset(config.teacher, C, L, num_classes, head=dict(config.head)), seed=config.seed)
    student = build_model(preset(config.student, C, L, num_classes, head=dict(config.head)), seed=config.seed + 1000)
    return teacher, student


# --------------------------------------------------------------------------- phase 1
def train_teacher(config: SMLDistConfig, data, run_dir: str, log) -> Module:
    path = os.path.join(run_dir, "teacher.npz")
    if os.path.exists(path):
        teacher, _ = io.load_model(path)
        log(f"[teacher] reusing {path}")
        return teacher.to(config.device)
    teacher, _ = _models_for(config, data.dataset.window_shape, data.dataset.num_classes)
    teacher.to(config.device)
    log(f"[teacher] {config.teacher}: {teacher.num_parameters():,} parameters")
    recipe = _train_config(config, config.teacher_epochs, config.teacher_lr,
                           label_smoothing=config.teacher_label_smoothing,
                           augment_jitter=config.teacher_jitter, augment_scale=config.teacher_scale)
    fit(teacher, data.train, data.val, recipe,
        checkpoint=os.path.join(run_dir, "teacher.train.npz"), fingerprint={"model": teacher.config.to_dict()},
        progress=not log.quiet)
    io.save_model(path, teacher, scaler=data.scaler.to_tree(), class_names=data.dataset.class_names,
                  **_data_options(config))
    return teacher


# --------------------------------------------------------------------------- phase 2
def stage_distillation(config, teacher, student, data, run_dir, log, outputs=None) -> None:
    """Progressive: anchor s trains stem + blocks up to anchor s (+ its adapter) to match the
    teacher's stage-s feature; each anchor gets a fresh optimiser. ``outputs``: the teacher's cached
    outputs on the training windows (None: the teacher runs on every batch)."""
    done = os.path.join(run_dir, "stage.npz")
    if os.path.exists(done):
        student.load_state_dict(io.load(done)["state"])
        log(f"[stage] reusing {done}")
        return
    wrapped = StudentStages(student, teacher, seed=config.seed).to(config.device)
    teacher.eval()
    xp_val = data.val[0]

    for s in range(len(student.anchors)):
        def loss_fn(model, x, y, idx, s=s):
            if outputs is not None:
                target = outputs.batch(idx, get_array_module(x.data))[f"stage{s}"]
            else:
                with no_grad(), batch_invariant():
                    target = teacher.forward_stages(x, upto=s)[0][s].data
            return stage_loss(wrapped.stage_feature(x, s), target, config.gamma, config.tau, config.uniform_freq)

        # the frozen teacher's validation features at this anchor: constants, computed once per anchor
        val_batches = [Tensor(_on_device(student, xp_val[start:start + 256])) for start in range(0, len(xp_val), 256)]
        with no_grad():
            val_targets = [teacher.forward_stages(x, upto=s)[0][s].data for x in val_batches]

        def val_score(model, s=s, val_batches=val_batches, val_targets=val_targets):
            total, n = 0.0, 0
            was = student.training
            student.eval()
            with no_grad():
                for x, target in zip(val_batches, val_targets):
                    total += stage_loss(wrapped.stage_feature(x, s), target, config.gamma, config.tau,
                                        config.uniform_freq).item() * len(x)
                    n += len(x)
            student.train(was)
            return {"neg_stage_loss": -total / n}

        log(f"[stage] anchor {s}: {wrapped.student.stage_shapes()[s]} <- teacher {teacher.stage_shapes()[s]}")
        fit(wrapped, data.train, data.val,
            _train_config(config, config.stage_epochs, config.stage_lr, weight_decay=0.0, schedule="none",
                          select_metric="neg_stage_loss", optimizer=config.stage_optimizer or config.optimizer),
            loss_fn=loss_fn, evaluate_fn=val_score,
            params=wrapped.stage_parameters(s) if config.stage_scope == "anchor" else
            student.parameters() + wrapped.adapters[s].parameters(),
            checkpoint=os.path.join(run_dir, f"stage{s}.train.npz"), fingerprint={"anchor": s},
            progress=not log.quiet, batch_index=True)
    io.save(done, {"state": student.state_dict()})


# --------------------------------------------------------------------------- phase 3: head search
def search_head(config, teacher, student, data, run_dir, log, executor=None, outputs=None) -> dict:
    """Search the student's head on its (stage-distilled) features; install the winner, trained,
    as the student's classifier. Returns the winner's row. Validation labels select; test labels
    are never read. ``outputs``: the teacher's cached outputs (its logits are the soft labels)."""
    from .. import search as S
    from ..models.heads import build_head
    done = os.path.join(run_dir, "search.npz")
    if os.path.exists(done):
        saved = io.load(done)
        winner = saved["winner"]
        log(f"[search] reusing {done}: {winner['spec']}")
    else:
        h_train = S.compute_features(student, data.train[0])
        h_val = S.compute_features(student, data.val[0])
        if outputs is not None:                                     # the frozen teacher's logits
            z = np.asarray(outputs.arrays["logits"])
        else:
            with batch_invariant():
                z = predict_logits(teacher, data.train[0])
        soft = np.exp(z - z.max(1, keepdims=True))
        soft /= soft.sum(1, keepdims=True)
        space = config.search_space or S.DEFAULT_SPACE
        specs = S.sample(space, config.search_budget, config.seed) if config.search_budget else S.candidates(space)
        board = S.search(specs, h_train, data.train[1], h_val, data.val[1], data.dataset.num_classes, executor,
                         soft_train=soft.astype(np.float32), epochs=config.search_epochs, seed=config.seed, log=log)
        board.save(os.path.join(run_dir, "leaderboard"))
        log("[search] leaderboard:\n" + board.markdown())
        winner = board.winner
        io.save(done, {"winner": winner})
    student.classifier = build_head(winner["spec"], student.config.head_width, student.config.num_classes,
                                    np.random.default_rng(config.seed))
    student.classifier.load_state_dict(winner["state"])
    student.classifier.to(config.device)
    student.config = dataclasses.replace(student.config, head=dict(winner["spec"]))
    return winner


# --------------------------------------------------------------------------- phase 1 alone
def run_teacher(config: SMLDistConfig, run_dir: str, quiet: bool = False) -> dict:
    """Phase 1 alone: train (or resume) the teacher in ``run_dir``; returns its test metrics."""
    log = _Progress(quiet)
    check_run_dir(run_dir, config)
    data = prepare(load(config.dataset, path=config.data_path), config.val_fraction, config.seed, config.scaling)
    teacher = train_teacher(config, data, run_dir, log)
    return {"test": evaluate(teacher, *data.test), "val": evaluate(teacher, *data.val),
            **profile.summary(teacher, data.dataset.window_shape)}


# --------------------------------------------------------------------------- the whole run
def run(config: SMLDistConfig, run_dir: str, teacher_checkpoint: str | None = None, quiet: bool = False,
        executor=None) -> dict:
    """Run the configured method end to end in ``run_dir`` (resuming whatever is already there).
    ``executor``: where head-search candidates run (default: a local process pool)."""
    log = _Progress(quiet)
    check_run_dir(run_dir, config)
    teacher_identity = check_teacher_identity(run_dir, teacher_checkpoint)
    results_path = os.path.join(run_dir, "results.json")
    if os.path.exists(results_path):
        log(f"[done] {results_path}")
        return json.load(open(results_path))
    data = prepare(load(config.dataset, path=config.data_path), config.val_fraction, config.seed, config.scaling)
    shape = data.dataset.window_shape

    if teacher_identity["source"] == "checkpoint":
        teacher_checkpoint = teacher_identity["path"]
        teacher, tree = io.load_model(teacher_checkpoint)
        teacher.to(config.device)
        log(f"[teacher] loaded {teacher_checkpoint}")
    else:
        teacher = train_teacher(config, data, run_dir, log)
    teacher.eval()
    teacher.requires_grad_(False)

    outputs = None
    if config.teacher_cache and config.method != "none":
        root = os.path.join(os.path.dirname(teacher_checkpoint) if teacher_identity["source"] == "checkpoint"
                            else run_dir, "teacher-outputs")
        outputs = teacher_outputs(teacher, data.train[0], root)
        log(f"[teacher] outputs on the {len(data.train[0])} training windows: {outputs.folder}")

    _, student = _models_for(config, shape, data.dataset.num_classes)
    student.to(config.device)
    if config.method == "smldist" and config.use_stage:
        stage_distillation(config, teacher, student, data, run_dir, log, outputs)
    searched = None
    if config.method == "smldist" and config.search:
        searched = search_head(config, teacher, student, data, run_dir, log, executor, outputs)
    elif config.method == "smldist" and config.transplant_head and config.mu > 0:
        what = transplant(teacher.classifier, student.classifier)
        log(f"[head] transplanted the teacher's {what} into the student")

    trainable, extra = student, {}
    if config.method == "fitnet":
        mid = len(student.anchors) // 2
        extra["hint_adapter"] = StageAdapter(student.stage_shapes()[mid], teacher.stage_shapes()[mid],
                                             np.random.default_rng(config.seed)).to(config.device)
        trainable = WithAdapter(student, extra["hint_adapter"])
    log(f"[final] {config.method}: student {config.student}, {student.num_parameters():,} parameters")
    result = fit(trainable, data.train, data.val, _train_config(config, config.student_epochs, config.student_lr),
                 loss_fn=final_loss(config, teacher, student, extra, outputs), params=trainable.parameters(),
                 batch_index=True,
                 evaluate_fn=lambda m: evaluate(student, *data.val),
                 checkpoint=os.path.join(run_dir, "final.train.npz"), fingerprint={"method": config.method},
                 progress=not quiet)
    io.save_model(os.path.join(run_dir, "student.npz"), student, scaler=data.scaler.to_tree(),
                  class_names=data.dataset.class_names, **_data_options(config))

    t_cost, s_cost = profile.summary(teacher, shape), profile.summary(student, shape)
    results = {
        "config": asdict(config),
        "teacher_identity": teacher_identity,
        "teacher": {"test": evaluate(teacher, *data.test), "val": evaluate(teacher, *data.val), **t_cost},
        "student": {"test": evaluate(student, *data.test), "val": evaluate(student, *data.val),
                    "best_epoch": result.best_epoch, "head": student.config.head, **s_cost},
        "search": None if searched is None else {"spec": searched["spec"], "val_macro_f1": searched["macro_f1"]},
        "cost_ratio_macs": s_cost["macs"] / t_cost["macs"],
        "cost_ratio_params": s_cost["params"] / t_cost["params"],
        "history": result.history,
    }
    io.write_json(results_path, results)
    log(f"[done] student test accuracy {results['student']['test']['accuracy']:.4f}, macro-F1 "
        f"{results['student']['test']['macro_f1']:.4f}; teacher {results['teacher']['test']['accuracy']:.4f}; "
        f"MACs ratio {results['cost_ratio_macs']:.3f}")
    return results
