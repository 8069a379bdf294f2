"""Adapter for a plain torch ``nn.Module`` actor: ``obs -> action`` in ``[-1, 1]``.

``itpo_wrap.networks.TanhActor`` carries its own observation normalizer and needs nothing more. Other
actors trained on standardized observations can bring theirs as ``obs_normalizer``: an ``nn.Module``,
any callable on tensors, or a ``(mean, std)`` pair. Its parameters (if any) are never adapted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from itpo_wrap.adapters.base import PolicyAdapter

ObsNormalizer = nn.Module | Callable[[torch.Tensor], torch.Tensor] | tuple[object, object]


class _MeanStd(nn.Module):
    """``(obs - mean) / std`` with the statistics as buffers (moved with the actor)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: object, std: object) -> None:
        super().__init__()
        m = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        s = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if m.shape != s.shape or m.dim() != 1:
            raise ValueError(f"obs_normalizer=(mean, std) needs two 1-D arrays of equal length, got {tuple(m.shape)} and {tuple(s.shape)}")
        if not bool(torch.all(s > 0)):
            raise ValueError("obs_normalizer std has entries <= 0; clip it (e.g. std.clip(1e-6)) before wrapping")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


class _CallableNorm(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fn(obs)


class _Normalized(nn.Module):
    """``actor(normalizer(obs))``; only ``actor.*`` parameters are handed to the adaptation loop."""

    def __init__(self, actor: nn.Module, normalizer: nn.Module) -> None:
        super().__init__()
        self.normalizer, self.actor = normalizer, actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


def _as_module(normalizer: ObsNormalizer) -> nn.Module:
    if isinstance(normalizer, nn.Module):
        return normalizer
    if isinstance(normalizer, tuple) and len(normalizer) == 2:
        return _MeanStd(*normalizer)
    if callable(normalizer):
        return _CallableNorm(normalizer)
    raise TypeError(
        f"obs_normalizer of type {type(normalizer).__name__} is not supported; pass an nn.Module, a callable "
        "on tensors, or a (mean, std) pair"
    )


def torch_adapter(policy: nn.Module, obs_normalizer: ObsNormalizer | None = None, squashed: bool = True) -> PolicyAdapter:
    """Adapter for an ``nn.Module`` whose ``forward(obs)`` returns actions in policy units.

    :param policy: the actor; all its parameters are adapted.
    :param obs_normalizer: applied to raw observations before ``policy`` (``None``: none).
    :param squashed: ``True`` (actor ends in tanh, outputs in ``[-1, 1]``): actions are mapped to the
        world model's Box with SB3's ``low + 0.5 * (a + 1) * (high - low)``; ``False``: clipped to it.
    """
    params = dict(policy.named_parameters())
    if obs_normalizer is None:
        module: nn.Module = policy
    else:
        module = _Normalized(policy, _as_module(obs_normalizer))
        params = {f"actor.{name}": p for name, p in params.items()}
    obs_dim = getattr(policy, "obs_dim", None)  # TanhActor declares its width: a mismatch is then named, not a shape error
    return PolicyAdapter(module, params, squashed=squashed, kind=f"torch {type(policy).__name__}",
                         obs_dim=obs_dim if isinstance(obs_dim, int) else None)
