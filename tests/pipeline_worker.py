"""Run by tests/test_pipeline.py: the SMLDist pipeline on BasicMotions, SIGKILL-ing itself inside
the named phase ('teacher', 'stage', 'final') or running to the end ('none')."""
import os
import signal
import sys

import tinysml.train as train
from tinysml.distill.pipeline import SMLDistConfig, run

run_dir, kill_at = sys.argv[1], sys.argv[2]
config = SMLDistConfig(dataset="basicmotions", val_fraction=0.25, batch_size=16, teacher_epochs=3, student_epochs=3,
                       stage_epochs=2)
original_fit = train.fit
calls = {"n": 0}


def fit_that_dies(*args, checkpoint=None, **kwargs):
    phase = os.path.basename(checkpoint or "").split(".")[0].rstrip("0123456789")
    if phase == kill_at:
        def die(epoch, record):
            if epoch == 1:                      # after the second epoch was checkpointed
                os.kill(os.getpid(), signal.SIGKILL)
        kwargs["on_epoch_end"] = die
    return original_fit(*args, checkpoint=checkpoint, **kwargs)


import tinysml.distill.pipeline as pipeline  # noqa: E402
pipeline.fit = fit_that_dies
run(config, run_dir)                # the phase lines on stdout: tests/test_pipeline.py reads them
