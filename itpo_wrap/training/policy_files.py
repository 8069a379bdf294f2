"""The policies and critics ``itpo train-world-model`` reads from a user's files: an SB3 ``.zip`` (SAC, TD3,
DDPG) or a TorchScript policy, for the ``--critic`` head and the ``--fqe-policy`` of FQE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from itpo_wrap.adapters import to_env_torch


def load_policy(path: str, action_low: np.ndarray, action_high: np.ndarray) -> Any:
    """A differentiable raw-obs -> env-action callable from an SB3 ``.zip`` (SAC, TD3, DDPG) or a
    TorchScript file whose outputs are in ``[-1, 1]`` (mapped to the Box like SB3's ``predict``).

    :param path: the policy file.
    :param action_low: Box lower bound.
    :param action_high: Box upper bound.
    """
    low, high = torch.as_tensor(action_low), torch.as_tensor(action_high)
    if path.endswith(".zip"):
        model = load_sb3(path)
        actor = model.policy.actor.eval()
        deterministic = hasattr(actor, "action_dist")  # SAC's actor samples unless told otherwise

        def scaled(obs: torch.Tensor) -> torch.Tensor:
            return actor(obs, deterministic=True) if deterministic else actor(obs)
    else:
        scripted = torch.jit.load(path, map_location="cpu").eval()

        def scaled(obs: torch.Tensor) -> torch.Tensor:
            return scripted(obs)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return to_env_torch(scaled(obs), low, high, squashed=True)

    return policy


def load_sb3(path: str) -> Any:
    """An SB3 SAC, TD3 or DDPG model from its ``.zip`` on the CPU (a trusted file: its pickle runs), through
    the library's one zip loader (DDPG is TD3 with other defaults and loads as TD3).

    :param path: the ``.zip``.
    """
    from itpo_wrap.formats.sb3 import load_sb3_model

    return load_sb3_model(path)
