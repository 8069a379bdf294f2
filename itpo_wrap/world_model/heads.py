"""Reward, termination and terminal-critic heads of the world model (METHOD.md sections 1, 3).

Every head takes **raw** observations and **env-space** actions and carries its own
standardization as buffers, so each is usable on its own and is saved with its ``state_dict``.
``arch()`` returns the constructor arguments needed to rebuild a head before
``load_state_dict`` (how the bundle loads with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.networks import TwinQ, mlp
from itpo_wrap.pairing import provenance, tag

_ACT_NAMES = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Mish: "mish", nn.Tanh: "tanh"}


class Standardize(nn.Module):
    """``(x - mean) / std`` with the statistics as buffers.

    :param dim: width.
    :param mean: per-dimension mean (zeros when ``None``).
    :param std: per-dimension std (ones when ``None``).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(dim).clone())
        self.register_buffer("std", torch.ones(dim) if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(dim).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class RewardHead(nn.Module):
    """``r_xi(s, a)``: an MLP on standardized ``(s, a)`` regressing the standardized reward
    (METHOD.md section 1; MSE). ``forward`` returns env-unit rewards, shape ``(B,)``.

    :param obs_dim: observation width.
    :param act_dim: action width.
    :param hidden: hidden widths.
    :param stats: optional ``obs_mean, obs_std, act_mean, act_std, reward_mean, reward_std`` arrays.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256),
                 stats: dict[str, Any] | None = None) -> None:
        super().__init__()
        st = stats or {}
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        self.obs_norm = Standardize(obs_dim, st.get("obs_mean"), st.get("obs_std"))
        self.act_norm = Standardize(act_dim, st.get("act_mean"), st.get("act_std"))
        self.reward_norm = Standardize(1, st.get("reward_mean"), st.get("reward_std"))
        self.net = mlp(obs_dim + act_dim, 1, self.hidden)

    def normalized(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The prediction in standardized reward units, ``(B,)``."""
        return self.net(torch.cat([self.obs_norm(s), self.act_norm(a)], dim=-1)).squeeze(-1)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.normalized(s, a) * self.reward_norm.std + self.reward_norm.mean

    def loss(self, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE in standardized reward units."""
        target = (r - self.reward_norm.mean) / self.reward_norm.std
        loss = (self.normalized(s, a) - target).pow(2).mean()
        return loss, {"mse": loss.detach()}

    def arch(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden)}


class TerminationHead(nn.Module):
    """Classifier of "this (next) state ends the episode" (Hopper and Walker2d terminate; our
    addition, METHOD.md section 1). A dataset without terminations gives a head that always says
    ``False`` without running its network.

    :param obs_dim: observation width.
    :param hidden: hidden widths.
    :param never_terminates: the data had no termination: skip the network.
    :param stats: optional ``obs_mean, obs_std`` arrays.
    """

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), never_terminates: bool = False,
                 stats: dict[str, Any] | None = None) -> None:
        super().__init__()
        st = stats or {}
        self.obs_dim, self.hidden, self.never_terminates = obs_dim, tuple(hidden), bool(never_terminates)
        self.obs_norm = Standardize(obs_dim, st.get("obs_mean"), st.get("obs_std"))
        self.net = mlp(obs_dim, 1, self.hidden)

    def logits(self, s: torch.Tensor) -> torch.Tensor:
        """``(B,)`` logits of termination."""
        if self.never_terminates:
            return torch.full(s.shape[:1], -30.0, device=s.device, dtype=s.dtype)
        return self.net(self.obs_norm(s)).squeeze(-1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: predicted probability above one half."""
        if self.never_terminates:
            return torch.zeros(s.shape[:1], dtype=torch.bool, device=s.device)
        return self.logits(s) > 0.0

    def loss(self, s: torch.Tensor, done: torch.Tensor, pos_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Binary cross-entropy; ``pos_weight`` up-weights the rare terminal class."""
        logits = self.logits(s)
        pw = torch.tensor(pos_weight, device=s.device, dtype=s.dtype)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, done.to(s.dtype), pos_weight=pw)
        acc = ((logits > 0) == done.bool()).to(s.dtype).mean()
        return loss, {"bce": loss.detach(), "acc": acc.detach()}

    def arch(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "hidden": list(self.hidden), "never_terminates": self.never_terminates}


class CriticHead(nn.Module):
    """Terminal critic ``min_i Q_i(s, a)`` over n critics (twin Q, METHOD.md section 3).

    Input is ``[standardize(s), scale(a)]``; ``scale`` maps env actions to ``[-1, 1]`` with the Box
    bounds when the critic was trained on scaled actions (SB3's convention), else passes them on.

    :param obs_dim: observation width.
    :param act_dim: action width.
    :param hidden: hidden widths of each critic.
    :param num_critics: how many Q networks (2 for twin Q).
    :param activation: hidden activation.
    :param layernorm: LayerNorm in each hidden layer.
    :param scale_actions: map env actions to ``[-1, 1]`` with ``action_low/high`` first.
    :param action_low: Box lower bound (needed when ``scale_actions``).
    :param action_high: Box upper bound.
    :param layernorm_after_activation: ``Linear -> act -> LayerNorm`` (the ReBRAC reference's order).
    """

    act_scale: torch.Tensor
    act_shift: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), num_critics: int = 2,
                 activation: str = "relu", layernorm: bool = False, scale_actions: bool = False,
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
                 layernorm_after_activation: bool = False) -> None:
        super().__init__()
        self.layernorm_after_activation = bool(layernorm_after_activation)
        if num_critics < 1:
            raise ValueError(f"num_critics={num_critics} must be >= 1")
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        self.num_critics, self.activation, self.layernorm = num_critics, activation, layernorm
        self.scale_actions = bool(scale_actions)
        self.obs_norm = Standardize(obs_dim)
        low = -np.ones(act_dim) if action_low is None else np.asarray(action_low, dtype=np.float32)
        high = np.ones(act_dim) if action_high is None else np.asarray(action_high, dtype=np.float32)
        if self.scale_actions and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"scale_actions needs finite Box bounds, got low={low} high={high}")
        # a_scaled = 2 (a - low) / (high - low) - 1 = a * act_scale + act_shift
        self.register_buffer("act_scale", torch.as_tensor(2.0 / (high - low), dtype=torch.float32))
        self.register_buffer("act_shift", torch.as_tensor(-2.0 * low / (high - low) - 1.0, dtype=torch.float32))
        self.qs = nn.ModuleList(mlp(obs_dim + act_dim, 1, self.hidden, activation, layernorm,
                                    self.layernorm_after_activation) for _ in range(num_critics))

    def q_values(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``(num_critics, B)`` Q values."""
        if self.scale_actions:
            a = a * self.act_scale + self.act_shift
        x = torch.cat([self.obs_norm(s), a], dim=-1)
        return torch.cat([q(x) for q in self.qs], dim=-1).T

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``min_i Q_i(s, a)``."""
        return self.q_values(s, a).min(dim=0).values

    def arch(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden),
                "num_critics": self.num_critics, "activation": self.activation, "layernorm": self.layernorm,
                "scale_actions": self.scale_actions,
                **({"layernorm_after_activation": True} if self.layernorm_after_activation else {})}

    @classmethod
    def from_twin_q(cls, twin_q: TwinQ, action_low: np.ndarray | None = None,
                    action_high: np.ndarray | None = None) -> CriticHead:
        """Copy an ``itpo_wrap.networks.TwinQ`` (our offline trainers' critics).

        The units come with the critic: one loaded by ``load_offline_policy`` (any zoo entry's) records
        the Box its training actions were scaled to ``[-1, 1]`` with (:mod:`itpo_wrap.pairing`), and the
        head then scales env actions with it. Bounds given here win; a critic that records none and gets
        none takes env-space actions as they are.

        :param twin_q: the trained twin critic.
        :param action_low: the Box ``twin_q``'s actions were scaled to ``[-1, 1]`` with (default: the one it
            records, if any).
        :param action_high: Box upper bound.
        """
        facts = provenance(twin_q)
        if action_low is None and action_high is None and "action_low" in facts:
            action_low, action_high = np.asarray(facts["action_low"]), np.asarray(facts["action_high"])
        arch = twin_q.arch()
        head = cls(arch["obs_dim"], arch["act_dim"], arch["hidden"], 2, "relu", arch["layernorm"],
                   scale_actions=action_low is not None, action_low=action_low, action_high=action_high,
                   layernorm_after_activation=arch.get("layernorm_after_activation", False))
        head.obs_norm.mean.copy_(twin_q.norm.obs_mean)  # type: ignore[arg-type]
        head.obs_norm.std.copy_(twin_q.norm.obs_std)  # type: ignore[arg-type]
        head.qs[0].load_state_dict(twin_q.q1.state_dict())
        head.qs[1].load_state_dict(twin_q.q2.state_dict())
        _inherit(head, facts)
        return head.to(next(twin_q.parameters()).device)

    @classmethod
    def from_sb3(cls, model_or_policy: Any, obs_mean: np.ndarray | None = None,
                 obs_std: np.ndarray | None = None) -> CriticHead:
        """Copy SB3 SAC / TD3 / DDPG (or TQC-like) ``policy.critic``, which takes actions scaled to
        ``[-1, 1]``; env actions are mapped with the policy's Box bounds.

        :param model_or_policy: an SB3 model or its ``policy``.
        :param obs_mean: for a model trained under ``VecNormalize``: its ``obs_rms.mean``.
        :param obs_std: ``sqrt(obs_rms.var + epsilon)`` (VecNormalize's clipping is not reproduced).
        """
        policy = getattr(model_or_policy, "policy", model_or_policy)
        critic = getattr(policy, "critic", None)
        if critic is None or not hasattr(critic, "q_networks"):
            raise ValueError(
                f"{type(model_or_policy).__name__} has no Q critic (policy.critic.q_networks); for a policy "
                "without one train a critic with itpo_wrap.training.fit_fqe(policy, dataset)"
            )
        if type(critic.features_extractor).__name__ != "FlattenExtractor":
            raise ValueError(f"critic features extractor {type(critic.features_extractor).__name__} is not "
                             "supported; only MlpPolicy critics (FlattenExtractor) can be copied")
        space = policy.action_space
        nets = list(critic.q_networks)
        layers = list(nets[0])
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        acts = {type(m) for m in layers if not isinstance(m, nn.Linear)}
        if len(acts) > 1 or (acts and next(iter(acts)) not in _ACT_NAMES):
            raise ValueError(f"critic layers {sorted(t.__name__ for t in acts)} are not supported; "
                             f"expected Linear with one of {sorted(t.__name__ for t in _ACT_NAMES)}")
        activation = _ACT_NAMES[next(iter(acts))] if acts else "relu"
        obs_dim = linears[0].in_features - int(np.prod(space.shape))
        head = cls(obs_dim, int(np.prod(space.shape)), [m.out_features for m in linears[:-1]], len(nets),
                   activation, False, scale_actions=True, action_low=space.low, action_high=space.high)
        if obs_mean is not None and obs_std is not None:
            head.obs_norm.mean.copy_(torch.as_tensor(obs_mean, dtype=torch.float32))
            head.obs_norm.std.copy_(torch.as_tensor(obs_std, dtype=torch.float32))
        for ours, theirs in zip(head.qs, nets, strict=True):
            ours.load_state_dict(theirs.state_dict())
        _inherit(head, provenance(model_or_policy))
        return head.to(next(critic.parameters()).device)


def critic_facts(critic: CriticHead) -> dict[str, Any]:
    """What a terminal critic was made for (for :func:`itpo_wrap.pairing.compare`): its widths, the env it
    records, and, when it scales actions, the Box it scales with (the units it was trained in).

    :param critic: the head.
    """
    facts: dict[str, Any] = {**provenance(critic), "obs_dim": critic.obs_dim, "act_dim": critic.act_dim}
    facts.pop("action_low", None), facts.pop("action_high", None)  # the buffers below are what it applies
    if critic.scale_actions:  # a_scaled = a * scale + shift, so the Box is where a_scaled = -1 and +1
        scale, shift = critic.act_scale.detach().double().cpu(), critic.act_shift.detach().double().cpu()
        facts["action_low"], facts["action_high"] = ((-1 - shift) / scale).tolist(), ((1 - shift) / scale).tolist()
    return facts


def _inherit(head: CriticHead, facts: dict[str, Any]) -> None:
    """Carry the source critic's recorded env and file over to its copy (messages name them)."""
    if facts:
        tag(head, env_id=facts.get("env_id"), source=facts.get("source"))


def fqe_loss(critic: CriticHead, target: CriticHead, batch: dict[str, torch.Tensor],
             policy: Callable[[torch.Tensor], torch.Tensor], gamma: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fitted Q evaluation of ``policy``: regress every ``Q_i(s, a)`` on
    ``r + gamma (1 - terminated) min_j Q'_j(s', pi(s'))`` (timeouts bootstrap).

    :param critic: the critics being fitted.
    :param target: their Polyak-averaged copy.
    :param batch: ``observations, actions, rewards, next_observations, terminations`` tensors.
    :param policy: raw obs -> env-space action.
    :param gamma: discount.
    """
    with torch.no_grad():
        next_q = target(batch["next_observations"], policy(batch["next_observations"]))
        y = batch["rewards"] + gamma * (1.0 - batch["terminations"].float()) * next_q
    q = critic.q_values(batch["observations"], batch["actions"])
    loss = (q - y).pow(2).mean(dim=1).sum()
    return loss, {"td_mse": loss.detach() / critic.num_critics, "q_mean": q.detach().mean()}
