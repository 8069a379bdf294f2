"""Network building blocks shared by the offline trainers, the heads and the world models.

``TanhActor`` and ``TwinQ`` carry their observation normalizer as buffers, so they take **raw env
observations**: the actor is then a plain ``nn.Module`` (obs -> action in [-1, 1]) that the
wrapper accepts without special casing, and the twin critic follows SB3's critic contract
(``critic(obs, act) -> (q1, q2)``, each ``(B, 1)``), so both kinds of critic load into a
``CriticHead`` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "mish": nn.Mish, "tanh": nn.Tanh}


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    layernorm: bool = False,
    layernorm_after_activation: bool = False,
) -> nn.Sequential:
    """``Linear -> [LayerNorm] -> act`` for each hidden width, then a final ``Linear``.

    :param in_dim: input width.
    :param out_dim: output width.
    :param hidden: hidden widths.
    :param activation: one of ``relu``, ``silu``, ``mish``, ``tanh``.
    :param layernorm: insert LayerNorm in each hidden layer (ReBRAC's critic uses it).
    :param layernorm_after_activation: ``Linear -> act -> LayerNorm`` instead, the order of the ReBRAC
        reference implementation (CORL's ``rebrac.py``); the two orders have different state-dict keys, so
        a checkpoint never loads into the other silently.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; choose one of {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        if layernorm and not layernorm_after_activation:
            layers.append(nn.LayerNorm(width))
        layers.append(_ACTIVATIONS[activation]())
        if layernorm and layernorm_after_activation:
            layers.append(nn.LayerNorm(width))
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class _ObsNorm(nn.Module):
    """Observation standardization stored as buffers (saved with the module's state_dict)."""

    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, obs_dim: int, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        super().__init__()
        m = torch.zeros(obs_dim) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(obs_dim)
        s = torch.ones(obs_dim) if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(obs_dim)
        self.register_buffer("obs_mean", m.clone())
        self.register_buffer("obs_std", s.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std


class _Rebuildable(nn.Module):
    """Stores the constructor arguments a checkpoint needs to rebuild the module before ``load_state_dict``."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...]
    layernorm: bool
    layernorm_after_activation: bool = False

    def arch(self) -> dict[str, Any]:
        """Constructor arguments (without statistics) to rebuild this module before ``load_state_dict``."""
        out = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden), "layernorm": self.layernorm}
        if self.layernorm_after_activation:  # only when set: checkpoints written before the option stay identical
            out["layernorm_after_activation"] = True
        return out


class TanhActor(_Rebuildable):
    """Deterministic actor ``a = tanh(MLP(normalize(obs)))`` in ``[-1, 1]`` (TD3+BC, ReBRAC).

    :param obs_dim: observation width.
    :param act_dim: action width.
    :param hidden: hidden widths (ReBRAC: 3 x 256).
    :param obs_mean: observation mean for the built-in normalizer (identity when ``None``).
    :param obs_std: observation std for the built-in normalizer.
    :param layernorm: LayerNorm in each hidden layer.
    :param layernorm_after_activation: put it after the activation (see :func:`mlp`).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        layernorm: bool = False,
        layernorm_after_activation: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden, self.layernorm = obs_dim, act_dim, tuple(hidden), layernorm
        self.layernorm_after_activation = layernorm_after_activation
        self.norm = _ObsNorm(obs_dim, obs_mean, obs_std)
        self.net = mlp(obs_dim, act_dim, hidden, layernorm=layernorm, layernorm_after_activation=layernorm_after_activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(self.norm(obs)))


class TwinQ(_Rebuildable):
    """Twin critics ``Q_i(s, a) = MLP_i([normalize(s), a])``; ``forward`` returns ``(q1, q2)``, each ``(B, 1)``.

    :param obs_dim: observation width.
    :param act_dim: action width.
    :param hidden: hidden widths (ReBRAC: 3 x 256 with LayerNorm).
    :param layernorm: LayerNorm in each hidden layer.
    :param obs_mean: observation mean for the built-in normalizer (identity when ``None``).
    :param obs_std: observation std for the built-in normalizer.
    :param layernorm_after_activation: put it after the activation, as the ReBRAC reference does (see :func:`mlp`).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        layernorm: bool = False,
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        layernorm_after_activation: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden, self.layernorm = obs_dim, act_dim, tuple(hidden), layernorm
        self.layernorm_after_activation = layernorm_after_activation
        self.norm = _ObsNorm(obs_dim, obs_mean, obs_std)
        post = layernorm_after_activation
        self.q1 = mlp(obs_dim + act_dim, 1, hidden, layernorm=layernorm, layernorm_after_activation=post)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden, layernorm=layernorm, layernorm_after_activation=post)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.norm(obs), act], dim=-1)
        return self.q1(x), self.q2(x)

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``min(Q1, Q2)`` as ``(B,)``."""
        q1, q2 = self(obs, act)
        return torch.min(q1, q2).squeeze(-1)
