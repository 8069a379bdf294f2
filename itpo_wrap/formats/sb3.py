"""SB3 SAC / TD3 models as base policies, with their own critics (issue 4, item 4).

:func:`load_sb3_base` returns the same ``(actor, critic, meta)`` shape as
:func:`itpo_wrap.formats.offline_policy.load_offline_policy`: the actor is an ``nn.Module`` mapping raw
observations to ``[-1, 1]`` that **shares its parameters with the SB3 model** (so adapting it
adapts the model), and the critic follows SB3's critic contract ``critic(obs, scaled_action) ->
(q1, q2)``, each ``(B, 1)``, the one ``TwinQ`` follows too.

Differentiable entry points (ECOSYSTEM.md): SAC ``policy.actor(obs, deterministic=True)`` (tanh of
the Gaussian mean); TD3/DDPG ``policy.actor(obs)`` (ends in tanh); both critics
``policy.critic(obs, act)``. Models trained under ``VecNormalize`` see normalized observations: they
are not supported here (the actor would receive raw ones).

An SB3 ``.zip`` is a pickle that runs code when loaded: :func:`load_sb3_model` says so once per
process, and the zoo stores SB3 bases as weights-only files instead (:mod:`itpo_wrap.formats.sb3_weights`),
which :func:`load_sb3_base` reads without running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.formats.sb3_weights import load_sb3_weights, warn_sb3_pickle
from itpo_wrap.pairing import tag

SB3_ALGORITHMS = ("sac", "td3")


class SB3Actor(nn.Module):
    """Deterministic differentiable view of an SB3 SAC or TD3 actor: raw obs -> action in ``[-1, 1]``.

    :param model: a loaded ``stable_baselines3.SAC`` or ``TD3``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.algorithm = _algorithm_of(model)
        self.actor = model.policy.actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.algorithm == "sac":
            return self.actor(obs, deterministic=True)
        return self.actor(obs)


class SB3TwinCritic(nn.Module):
    """An SB3 twin critic with ``TwinQ``'s interface: ``forward(obs, act) -> (q1, q2)`` and ``q_min``.

    :param model: a loaded ``stable_baselines3.SAC`` or ``TD3`` with ``n_critics == 2``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.critic = model.policy.critic
        if self.critic.n_critics != 2:
            raise ValueError(f"the SB3 model has n_critics={self.critic.n_critics}; a twin critic needs exactly 2 "
                             "(policy_kwargs=dict(n_critics=2), the SAC/TD3 default)")
        self.obs_dim = int(np.prod(model.observation_space.shape))
        self.act_dim = int(np.prod(model.action_space.shape))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2 = self.critic(obs, act)
        return q1, q2

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``min(Q1, Q2)`` as ``(B,)``."""
        q1, q2 = self(obs, act)
        return torch.min(q1, q2).squeeze(-1)


def load_sb3_model(path: str | Path, algorithm: str = "auto") -> Any:
    """Load an SB3 SAC or TD3 zip on the CPU. A zip is a pickle that runs code: load only zips you trust
    (a warning says so once per process); weights-only files load with :func:`load_sb3_weights`.

    :param path: the ``.zip`` written by ``model.save()``.
    :param algorithm: ``"sac"``, ``"td3"`` or ``"auto"`` (read from the zip's policy class).
    """
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.save_util import load_from_zip_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SB3 model at {str(path)!r}; pass the .zip written by model.save()")
    warn_sb3_pickle(path)
    if algorithm == "auto":
        data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
        algorithm = _algorithm_of_policy_class((data or {}).get("policy_class"), path)
    if algorithm not in SB3_ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is not supported; choose one of {SB3_ALGORITHMS} or 'auto'")
    cls = SAC if algorithm == "sac" else TD3
    model = cls.load(path, device="cpu")
    model.policy.set_training_mode(False)
    return model


def load_sb3_base(
    path: str | Path, algorithm: str = "auto", env_id: str | None = None, dataset_id: str = ""
) -> tuple[SB3Actor, SB3TwinCritic, dict[str, Any]]:
    """An SB3 SAC/TD3 model as a base policy: ``(actor, critic, meta)`` like ``load_offline_policy``.

    :param path: a weights-only ``.pt`` (:mod:`itpo_wrap.formats.sb3_weights`, nothing runs) or a ``.zip``
        (a pickle, trusted like code).
    :param algorithm: ``"sac"``, ``"td3"`` or ``"auto"`` (zips only; a weights-only file names its own).
    :param env_id: the Gymnasium id it acts in (zips do not store it; a weights-only file that records
        another one is refused).
    :param dataset_id: the dataset it is paired with, if any.
    :return: the actor and twin-critic views and ``meta`` (``algorithm`` ``"sb3_sac"``/``"sb3_td3"``,
        ``env_id``, ``dataset_id``, ``action_low``/``action_high``, ``model``: the SB3 model itself); the
        model's policy and both views record env id, widths and Box (:func:`itpo_wrap.pairing.tag`).
    """
    if Path(path).suffix == ".zip":
        model = load_sb3_model(path, algorithm)
    else:
        model = load_sb3_weights(path)
        recorded = model.itpo_sb3_architecture.get("env_id")
        if env_id and recorded and recorded != env_id:
            raise ValueError(f"{str(path)!r} holds an SB3 model for {recorded!r}, not {env_id!r}; use the model "
                             f"trained on {env_id!r}")
        env_id = env_id or recorded
    space = model.action_space
    meta = {
        "algorithm": f"sb3_{_algorithm_of(model)}",
        "env_id": env_id,
        "dataset_id": dataset_id,
        "action_low": [float(x) for x in np.asarray(space.low).reshape(-1)],
        "action_high": [float(x) for x in np.asarray(space.high).reshape(-1)],
        "path": str(path),
        "model": model,
    }
    actor, critic = SB3Actor(model).eval(), SB3TwinCritic(model).eval()
    for obj in (model.policy, actor, critic):  # SB3 saves the policy's tensors only, never this attribute
        tag(obj, env_id=env_id, obs_dim=critic.obs_dim, act_dim=critic.act_dim, action_low=meta["action_low"],
            action_high=meta["action_high"], source=str(path))
    return actor, critic, meta


def _algorithm_of(model: Any) -> str:
    from stable_baselines3 import SAC, TD3

    if isinstance(model, SAC):
        return "sac"
    if isinstance(model, TD3):  # DDPG subclasses TD3 and has the same actor/critic shape
        return "td3"
    raise TypeError(f"expected an SB3 SAC or TD3 model, got {type(model).__name__}; PPO/A2C have no Q critic")


def _algorithm_of_policy_class(policy_class: Any, path: Path) -> str:
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    if isinstance(policy_class, type) and issubclass(policy_class, SACPolicy):
        return "sac"
    if isinstance(policy_class, type) and issubclass(policy_class, TD3Policy):
        return "td3"
    raise ValueError(f"{str(path)!r} holds policy class {policy_class!r}, not SAC or TD3; "
                     "pass algorithm='sac' or 'td3' if it is a subclass SB3 cannot name")
