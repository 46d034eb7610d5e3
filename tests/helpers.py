import numpy as np


def assert_close(ours, ref, rtol=1e-5, magnitude=0.0):
    """Relative agreement in float32: elementwise rtol with an absolute floor of rtol times the
    largest magnitude (long sums cancel). ``magnitude``, when given, is the size of the terms the
    computation adds before they cancel (for example x * scale in a folded batch norm), which bounds
    float32 rounding better than the result does. NaN anywhere fails."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.isfinite(ours).all(), "kernel left unwritten (NaN-poisoned) or non-finite elements"
    floor = max(1.0, float(np.abs(ref).max(initial=0)), float(magnitude))
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * floor)


def cupy_or_skip():
    """CuPy when a CUDA device answers; otherwise the test is skipped, with the reason."""
    import pytest
    try:
        import cupy
        cupy.zeros(1)
        return cupy
    except Exception as err:  # noqa: BLE001 - ImportError, CUDARuntimeError, ...
        pytest.skip(f"no usable CUDA device: {type(err).__name__}: {str(err)[:100]}")


def recording_fit(calls: list, first_step: bool = False):
    """A stand-in for ``train.fit`` that trains nothing: it appends each call's keyword arguments,
    model and config to ``calls``. With ``first_step`` it also evaluates the call's loss on the
    first batch of training windows, as the first step would, so whatever the loss reads is read."""
    import types
    from tinysml.tensor import Tensor

    def fit(model, train, val, config, **kw):
        if first_step:
            idx = np.arange(min(config.batch_size, len(train[0])))
            kw["loss_fn"](model, Tensor(train[0][idx]), train[1][idx], idx).item()
        calls.append(dict(kw, model=model, config=config))
        return types.SimpleNamespace(best_epoch=1, history=[])
    return fit


def trained_teacher(config, directory) -> str:
    """Train ``config``'s teacher alone (no student) into ``directory``; its checkpoint's path."""
    import dataclasses
    import os
    from tinysml.distill.pipeline import run
    run(dataclasses.replace(config, method="none", student_epochs=0), str(directory), quiet=True)
    return os.path.join(str(directory), "teacher.npz")
