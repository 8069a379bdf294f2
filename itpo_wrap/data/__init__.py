"""Offline data: a typed transition container, normalizers, and Minari I/O."""

from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.minari import (
    DatasetNotFoundError,
    dataset_normalized_score,
    datasets_root,
    load_dataset,
    normalized_score,
    write_dataset,
)
from itpo_wrap.data.normalization import RewardNormalizer, StateNormalizer

__all__ = [
    "DatasetNotFoundError",
    "OfflineDataset",
    "RewardNormalizer",
    "StateNormalizer",
    "dataset_normalized_score",
    "datasets_root",
    "load_dataset",
    "normalized_score",
    "write_dataset",
]
