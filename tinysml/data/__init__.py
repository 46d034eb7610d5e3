"""HAR datasets: ``load(name)`` returns a HARDataset (windows, labels, subjects, metadata)."""
from .dataset import HARDataset, WindowSet
from .formats import DataFormatError, read_ts
from .scaling import Scaler, fit_scaler
from .splits import validation_split
from .batches import iterate_batches
from .registry import load, available

__all__ = ["HARDataset", "WindowSet", "DataFormatError", "read_ts", "Scaler", "fit_scaler", "validation_split",
           "iterate_batches", "load", "available"]
