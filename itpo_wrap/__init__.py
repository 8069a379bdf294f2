"""itpo-wrap: inference-time policy optimization through differentiable world models.

Wrap a pretrained offline policy (SB3 or plain torch) with a learned world model and let it
take a few gradient steps on its own parameters at every env step (Deb, Wright, Banerjee 2026)::

    from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, WorldModel

    wrapped = ITPOPolicyWrapper(model, WorldModel.load("wm.pt"), AdaptConfig(step_size=1e-3))
    actions, _ = wrapped.predict(obs)
"""

from __future__ import annotations

from itpo_wrap._version import __version__
from itpo_wrap.adapters import make_adapter
from itpo_wrap.config import AdaptConfig
from itpo_wrap.world_model.config import DiffusionConfig, MeanFlowConfig
from itpo_wrap.world_model.diffusion import DiffusionDynamics
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel
from itpo_wrap.wrapper import ITPOPolicyWrapper

__all__ = [
    "AdaptConfig",
    "DiffusionConfig",
    "DiffusionDynamics",
    "ITPOPolicyWrapper",
    "MeanFlowConfig",
    "MeanFlowDynamics",
    "WorldModel",
    "__version__",
    "make_adapter",
]
