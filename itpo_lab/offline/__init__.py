"""The lab's base-policy trainer plumbing, shared by the offline trainers (``policies/td3_bc.py``,
``policies/rebrac.py``, ``policies/sb3_base.py``): writing checkpoints, evaluation, resumable loops.

The readers of the checkpoint formats belong to the library (:mod:`itpo_wrap.formats`); they are
re-exported here so a trainer script imports its whole toolbox from one place."""

from __future__ import annotations

from itpo_lab.offline.checkpoint import save_offline_policy
from itpo_lab.offline.evaluation import EvalResult, Step, evaluate_actor, normalize_return, rollout
from itpo_lab.offline.loop import TrainLoop, parse_args
from itpo_lab.offline.sb3_weights import convert_sb3_zip, save_sb3_weights
from itpo_lab.offline.tensors import (
    Batch,
    TransitionTensors,
    action_bounds,
    cpu_has_bf16,
    keep_output_layer_fp32,
    set_requires_grad,
    soft_update,
)
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.formats.sb3 import SB3Actor, SB3TwinCritic, load_sb3_base, load_sb3_model
from itpo_wrap.formats.sb3_weights import load_sb3_weights

__all__ = [
    "Batch",
    "EvalResult",
    "SB3Actor",
    "SB3TwinCritic",
    "Step",
    "TrainLoop",
    "TransitionTensors",
    "action_bounds",
    "convert_sb3_zip",
    "cpu_has_bf16",
    "evaluate_actor",
    "keep_output_layer_fp32",
    "load_offline_policy",
    "load_sb3_base",
    "load_sb3_model",
    "load_sb3_weights",
    "normalize_return",
    "parse_args",
    "rollout",
    "save_offline_policy",
    "save_sb3_weights",
    "set_requires_grad",
    "soft_update",
]
