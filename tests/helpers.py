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
