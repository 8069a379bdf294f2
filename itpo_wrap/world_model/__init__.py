"""World models: differentiable one-step dynamics (diffusion, MeanFlow, MLP baseline), reward,
termination and critic heads, and the ``WorldModel`` bundle (METHOD.md sections 1, 2, 5). The kinds
of dynamics are registered in :mod:`itpo_wrap.world_model.kinds` (``register_kind`` adds one).

This package imports only torch and numpy (plus the data layer's normalizers): no SB3, no Minari.
"""

from itpo_wrap.world_model.config import (
    DiffusionConfig,
    HeadsConfig,
    MeanFlowConfig,
    MLPDynamicsConfig,
    NetConfig,
)
from itpo_wrap.world_model.diffusion import DiffusionDynamics, NoiseSchedule, SchedulerStepOutput
from itpo_wrap.world_model.dynamics import Dynamics, MLPDynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead, fqe_loss
from itpo_wrap.world_model.kinds import DynamicsKind, get_kind, kind_names, register_kind
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel
from itpo_wrap.world_model.protocol import WorldModelLike

__all__ = [
    "CriticHead",
    "DiffusionConfig",
    "DiffusionDynamics",
    "Dynamics",
    "DynamicsKind",
    "HeadsConfig",
    "MLPDynamics",
    "MLPDynamicsConfig",
    "MeanFlowConfig",
    "MeanFlowDynamics",
    "NetConfig",
    "NoiseSchedule",
    "RewardHead",
    "SchedulerStepOutput",
    "TerminationHead",
    "WorldModel",
    "WorldModelLike",
    "fqe_loss",
    "get_kind",
    "kind_names",
    "register_kind",
]
