"""The `Dataset` every source gives: in-memory arrays of one source, as loaded, before any split."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Dataset:
    """Images and labels of one source, as loaded, before any split."""

    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, H, W, C) uint8
    y_test: np.ndarray  # (M,) int64
    class_names: list
    source: str  # what was loaded, for config.json and messages
    skipped: list = dataclasses.field(default_factory=list)  # unreadable files left out
    class_ids: list = dataclasses.field(default_factory=list)  # folder names where names differ (ImageNet's wnids)
