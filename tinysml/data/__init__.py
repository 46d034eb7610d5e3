"""HAR datasets: ``load(name)`` returns a HARDataset (windows, labels, subjects, metadata).

``available()`` lists the names; ``registry.py`` says where each comes from.
"""
from .dataset import HARDataset, WindowSet
from .formats import DataFormatError, read_ts
from .fetch import FetchError
from .scaling import Scaler, fit_scaler
from .splits import leave_one_subject_out, validation_split
from .batches import augment, iterate_batches
from .windows import Recording, fill_gaps, gravity_body_split, resample, window_recording, windows_from_recordings
from .registry import load, available
from .prepare import Prepared, prepare

__all__ = ["HARDataset", "WindowSet", "DataFormatError", "FetchError", "read_ts", "Scaler", "fit_scaler",
           "validation_split", "leave_one_subject_out", "iterate_batches", "augment", "Recording", "fill_gaps",
           "gravity_body_split", "resample", "window_recording", "windows_from_recordings", "load", "available",
           "Prepared", "prepare"]
