"""Training and evaluation of world-model bundles (``train_world_model``, ``evaluate_world_model``)
and of FQE critics (``fit_fqe``)."""

from itpo_wrap.training.config import WorldModelTrainConfig
from itpo_wrap.training.world_model import fit_fqe, train_world_model

__all__ = ["WorldModelTrainConfig", "fit_fqe", "train_world_model"]
