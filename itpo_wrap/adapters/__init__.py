"""``make_adapter(policy)``: turn any supported policy into a :class:`PolicyAdapter`.

A small ordered registry of ``(description, matches, build)`` entries; the first match builds. SB3
comes before the generic torch entry because SB3 policies are ``nn.Module`` too (a DQN policy must be
refused, not mistaken for an actor). ``register_adapter`` lets a user add their own library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from itpo_wrap.adapters.base import (
    PolicyAdapter,
    actor_predict,
    box_center_half,
    to_env_numpy,
    to_env_torch,
    to_policy_numpy,
    to_policy_torch,
)
from itpo_wrap.adapters.sb3 import is_sb3, sb3_adapter
from itpo_wrap.adapters.torch import torch_adapter
from itpo_wrap.pairing import provenance

__all__ = ["PolicyAdapter", "actor_predict", "box_center_half", "make_adapter", "register_adapter", "supported_policies",
           "to_env_numpy", "to_env_torch", "to_policy_numpy", "to_policy_torch"]


@dataclass(frozen=True)
class _Entry:
    description: str
    matches: Callable[[object], bool]
    build: Callable[..., PolicyAdapter]

    @classmethod
    def of(cls, module: str) -> _Entry:
        """The entry an adapter module ``itpo_wrap.adapters.<module>`` declares: its ``DESCRIPTION``,
        ``matches(policy)`` and ``build(policy, **options)`` (a new library is that file plus one registry line)."""
        m = importlib.import_module(f"{__name__}.{module}")
        return cls(m.DESCRIPTION, m.matches, m.build)


def _sb3_build(policy: object, **options: Any) -> PolicyAdapter:
    if any(v is not None for v in options.values()):
        raise ValueError(
            f"options {sorted(k for k, v in options.items() if v is not None)} apply to torch actors only; an SB3 policy "
            "already defines its observation preprocessing and action squashing"
        )
    return sb3_adapter(policy)


_REGISTRY: list[_Entry] = [
    _Entry("stable-baselines3 SAC/TD3/DDPG, PPO/A2C with Box actions", is_sb3, _sb3_build),
    _Entry.of("d3rlpy"),
    _Entry(
        "torch nn.Module (obs -> action in [-1, 1])",
        lambda p: isinstance(p, nn.Module),
        lambda p, obs_normalizer=None, squashed=None: torch_adapter(
            p, obs_normalizer, True if squashed is None else squashed
        ),
    ),
]


def register_adapter(description: str, matches: Callable[[object], bool], build: Callable[..., PolicyAdapter]) -> None:
    """Add an adapter builder, tried before the built-in ones.

    :param description: what it supports, shown in the error for unsupported policies.
    :param matches: ``matches(policy) -> bool``.
    :param build: ``build(policy, obs_normalizer=None, squashed=None) -> PolicyAdapter``.
    """
    _REGISTRY.insert(0, _Entry(description, matches, build))


def supported_policies() -> list[str]:
    """Descriptions of every registered adapter, in the order they are tried."""
    return [e.description for e in _REGISTRY]


def make_adapter(policy: object, obs_normalizer: Any = None, squashed: bool | None = None) -> PolicyAdapter:
    """The adapter for ``policy``, or ``TypeError`` naming what is supported.

    :param policy: an SB3 algorithm or policy, a torch ``nn.Module`` actor, or a ``PolicyAdapter``.
    :param obs_normalizer: torch actors only: applied to raw observations first (module, callable or
        ``(mean, std)``).
    :param squashed: torch actors only: ``True`` (default) for outputs in ``[-1, 1]`` rescaled to the Box,
        ``False`` to clip raw outputs to the Box instead.
    """
    if isinstance(policy, PolicyAdapter):
        return policy
    for entry in _REGISTRY:
        if entry.matches(policy):
            adapter = entry.build(policy, obs_normalizer=obs_normalizer, squashed=squashed)
            adapter.provenance = provenance(policy)  # compared with the world model's (adapters/validation.py)
            return adapter
    raise TypeError(
        f"cannot adapt a {type(policy).__module__}.{type(policy).__name__}. Supported: {'; '.join(supported_policies())}"
    )
