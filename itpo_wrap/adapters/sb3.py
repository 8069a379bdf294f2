"""Adapters for stable-baselines3 policies (ECOSYSTEM.md, "stable-baselines3").

SB3's own ``predict`` runs under ``no_grad`` and returns numpy, so the adapters rebuild each policy's
deterministic action as a differentiable forward from its submodules, with exactly SB3's operations
(so zero adaptation steps reproduce ``model.predict(obs, deterministic=True)`` bit for bit):

- SAC: ``tanh(mu(latent_pi(features)))``, the mode of the squashed Gaussian (also with gSDE);
- TD3 / DDPG: ``actor(obs)``, which ends in ``Tanh``;
- PPO / A2C with a Box action space: the Gaussian mean ``action_net(policy_net(features))``, clipped
  to the Box by SB3 (or tanh-squashed with gSDE ``squash_output=True``).

Only the parameters on that path are adapted (never SAC's ``log_std`` head or a value network).
SB3 is imported lazily, so a torch-only user never pays for it.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from itpo_wrap.adapters.base import PolicyAdapter

SUPPORTED = (
    "SB3 SAC, TD3 or DDPG (the algorithm or its .policy), PPO or A2C with a Box action space, "
    "or a torch nn.Module mapping observations to actions in [-1, 1]"
)


def is_sb3(obj: object) -> bool:
    """Whether ``obj`` is an SB3 algorithm or policy (false without importing SB3 if it was never loaded)."""
    if "stable_baselines3" not in sys.modules:
        return False
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BaseModel

    return isinstance(obj, (BaseAlgorithm, BaseModel))


class _SACMean(nn.Module):
    actor: Any  # an SB3 SAC Actor (typed loosely: SB3 is imported lazily)

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        if not deterministic:
            return self.actor(obs, deterministic=False)
        features = self.actor.extract_features(obs, self.actor.features_extractor)
        return torch.tanh(self.actor.mu(self.actor.latent_pi(features)))


class _ActorCriticMean(nn.Module):
    policy: Any  # an SB3 ActorCriticPolicy

    def __init__(self, policy: nn.Module, squash: bool) -> None:
        super().__init__()
        self.policy, self.squash = policy, squash

    def forward(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        if not deterministic:
            return self.policy.get_distribution(obs).get_actions(deterministic=False)
        from stable_baselines3.common.policies import BaseModel

        # BaseModel.extract_features on the actor's extractor only: ActorCriticPolicy's override would
        # also run the value extractor, for nothing.
        features = BaseModel.extract_features(self.policy, obs, self.policy.pi_features_extractor)
        mean = self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))
        return torch.tanh(mean) if self.squash else mean


def _named(root: nn.Module, prefix: str, parts: list[str]) -> dict[str, nn.Parameter]:
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for part in parts:
        sub = root.get_submodule(part)
        for name, p in sub.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out[f"{prefix}{part}.{name}"] = p
    return out


def _check_spaces(policy: nn.Module) -> None:
    from gymnasium import spaces

    act, obs = policy.action_space, policy.observation_space
    if not isinstance(act, spaces.Box):
        raise TypeError(
            f"{type(policy).__name__} acts in {act}: ITPO needs continuous (Box) actions to differentiate "
            f"through. Supported: {SUPPORTED}"
        )
    if not isinstance(obs, spaces.Box) or len(obs.shape) != 1:
        raise TypeError(
            f"{type(policy).__name__} observes {obs}: only flat Box observations are supported "
            "(flatten Dict or image observations with a wrapper first)"
        )


def sb3_adapter(obj: object) -> PolicyAdapter:
    """Adapter for an SB3 algorithm or policy; raises ``TypeError`` naming what is supported otherwise.

    :param obj: ``SAC``/``TD3``/``DDPG``/``PPO``/``A2C`` instance, its ``.policy``, or a SAC/TD3 ``Actor``.
    """
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import Actor as SACActor
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import Actor as TD3Actor
    from stable_baselines3.td3.policies import TD3Policy

    policy: Any = obj.policy if isinstance(obj, BaseAlgorithm) else obj
    _check_spaces(policy)
    bounds = {"action_low": policy.action_space.low, "action_high": policy.action_space.high}
    obs_dim = int(policy.observation_space.shape[0])
    if isinstance(policy, (SACPolicy, SACActor)):
        actor: Any = policy.actor if isinstance(policy, SACPolicy) else policy
        params = _named(actor, "actor.", ["features_extractor", "latent_pi", "mu"])
        return PolicyAdapter(_SACMean(actor), params, squashed=True, kind="SB3 SAC policy", obs_dim=obs_dim,
                             stochastic=True, owner=policy, **bounds)
    if isinstance(policy, (TD3Policy, TD3Actor)):
        td3_actor: Any = policy.actor if isinstance(policy, TD3Policy) else policy
        return PolicyAdapter(td3_actor, dict(td3_actor.named_parameters()), squashed=True, kind="SB3 TD3/DDPG policy",
                             obs_dim=obs_dim, owner=policy, **bounds)
    if isinstance(policy, ActorCriticPolicy):
        squash = bool(policy.squash_output)
        extractor = policy.mlp_extractor
        parts = ["pi_features_extractor", "mlp_extractor.policy_net" if hasattr(extractor, "policy_net") else "mlp_extractor",
                 "action_net"]
        params = _named(policy, "policy.", parts)
        return PolicyAdapter(_ActorCriticMean(policy, squash), params, squashed=squash, kind="SB3 actor-critic policy",
                             obs_dim=obs_dim, stochastic=True, owner=policy, **bounds)
    raise TypeError(f"{type(policy).__name__} is not a supported SB3 policy. Supported: {SUPPORTED}")
