"""The policies and critics ``itpo train-world-model`` reads from a user's files: an SB3 ``.zip`` (SAC, TD3,
DDPG) or a TorchScript policy, for the ``--critic`` head and the ``--fqe-policy`` of FQE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


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
        return low + 0.5 * (scaled(obs) + 1.0) * (high - low)

    return policy


def load_sb3(path: str) -> Any:
    """An SB3 SAC, TD3 or DDPG model from its ``.zip`` on the CPU (a trusted file: its pickle runs).

    :param path: the ``.zip``.
    """
    try:
        from stable_baselines3 import DDPG, SAC, TD3
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError as err:  # pragma: no cover - SB3 is a dependency
        raise ImportError("loading an SB3 .zip needs stable-baselines3: pip install stable-baselines3") from err
    from itpo_wrap.formats.sb3_weights import warn_sb3_pickle

    warn_sb3_pickle(path)  # the zip's pickle runs below: say once that it is trusted like code
    data, _, _ = load_from_zip_file(path, device="cpu")
    module = getattr((data or {}).get("policy_class"), "__module__", "")
    for key, cls in (("sac", SAC), ("td3", TD3), ("ddpg", DDPG)):
        if f".{key}." in module:
            return cls.load(path, device="cpu")
    raise ValueError(f"{path} holds a {module or 'unknown'} policy; only SAC, TD3 and DDPG .zip files have the "
                     "actor/critic this command uses (for others use the Python API with CriticHead / fit_fqe)")
