"""``WorldModel``: the bundle the adaptation loop talks to (it satisfies ``WorldModelLike``).

Methods are named after the paper (METHOD.md section 3): ``next`` is ``f_theta``, ``reward`` is
``r_xi``, ``value`` is ``min_i Q_phi,i``; ``terminated`` is our addition. All take raw observations
and env-space actions; the bundle owns the normalization of the dynamics and is the single
validation gate (shapes, dtype, NaN) so the modules inside trust their inputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap import _version
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.integrity import stamp
from itpo_wrap.pairing import compare, tag, world_model_facts
from itpo_wrap.world_model.dynamics import Dynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead, critic_facts
from itpo_wrap.world_model.kinds import get_kind
from itpo_wrap.world_model.persistence import FORMAT_VERSION, check_expected, read_payload, rebuild


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic | torch.Tensor):
        return x.tolist()
    return str(x)


class WorldModel(nn.Module):
    """Dynamics + reward + termination + terminal critic, with normalizers, bounds and provenance.

    Parameters are frozen (``requires_grad=False``) and the module is in eval mode: gradients
    flow through the model to ``(s, a)`` and on to the policy, never into the model's weights.

    :param dynamics: a ``Dynamics`` of a registered kind (:mod:`itpo_wrap.world_model.kinds`).
    :param reward: the reward head.
    :param termination: the termination head.
    :param critic: the terminal critic; ``None`` until one is attached with ``set_critic``.
    :param obs_normalizer: state standardization of the dynamics' input.
    :param act_normalizer: action standardization of the dynamics' input.
    :param delta_normalizer: standardization of ``s' - s``, the dynamics' output.
    :param action_low: ``(act_dim,)`` Box lower bound.
    :param action_high: ``(act_dim,)`` Box upper bound.
    :param env_id: Gymnasium id the data came from (checked on load).
    :param baseline: optional deterministic MLP dynamics trained with the same budget (evaluation).
    :param info: provenance (dataset id, training config and metrics): plain Python values.
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    act_mean: torch.Tensor
    act_std: torch.Tensor
    delta_mean: torch.Tensor
    delta_std: torch.Tensor
    _low: torch.Tensor
    _high: torch.Tensor

    def __init__(self, dynamics: Dynamics, reward: RewardHead, termination: TerminationHead,
                 critic: CriticHead | None, obs_normalizer: StateNormalizer, act_normalizer: StateNormalizer,
                 delta_normalizer: StateNormalizer, action_low: np.ndarray, action_high: np.ndarray,
                 env_id: str | None = None, baseline: Dynamics | None = None, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = dynamics.obs_dim, dynamics.act_dim
        for name, dim in (("obs", obs_normalizer.dim), ("delta", delta_normalizer.dim), ("reward head obs", reward.obs_dim)):
            if dim != self.obs_dim:
                raise ValueError(f"{name} width {dim} differs from the dynamics' obs_dim={self.obs_dim}")
        if act_normalizer.dim != self.act_dim or reward.act_dim != self.act_dim:
            raise ValueError(f"action widths differ: dynamics {self.act_dim}, normalizer {act_normalizer.dim}, "
                             f"reward head {reward.act_dim}")
        self.dynamics, self.reward_head, self.termination_head, self.baseline = dynamics, reward, termination, baseline
        self.critic: CriticHead | None = None
        self.env_id, self.info = env_id, dict(info or {})
        self.normalizers = {"obs": obs_normalizer, "act": act_normalizer, "delta": delta_normalizer}
        for key, norm in self.normalizers.items():
            self.register_buffer(f"{key}_mean", torch.from_numpy(norm.mean.copy()))
            self.register_buffer(f"{key}_std", torch.from_numpy(norm.std.copy()))
        low = np.asarray(action_low, dtype=np.float32).reshape(-1)
        high = np.asarray(action_high, dtype=np.float32).reshape(-1)
        if low.shape != (self.act_dim,) or high.shape != (self.act_dim,) or np.any(low >= high):
            raise ValueError(f"action bounds low={low} high={high} must be ({self.act_dim},) with low < high")
        self.register_buffer("_low", torch.from_numpy(low))
        self.register_buffer("_high", torch.from_numpy(high))
        self.validate_inputs = True
        if critic is not None:
            self.set_critic(critic)
        self.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------ protocol
    @property
    def action_low(self) -> torch.Tensor:
        return self._low

    @property
    def action_high(self) -> torch.Tensor:
        return self._high

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A ``(horizon, batch, num_noise, obs_dim)`` standard-normal bank; ``bank[j]`` feeds step ``j``.

        :param batch: rollouts (particles).
        :param horizon: imagined steps H.
        :param generator: for reproducible banks.
        """
        return self.dynamics.draw_noise(batch, horizon, generator, self._low.device, self._low.dtype)

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``s' = s + denormalize(f_theta(normalize(s), normalize(a), noise))``, ``(B, obs_dim)``.

        :param s: ``(B, obs_dim)`` raw observations.
        :param a: ``(B, act_dim)`` env-space actions.
        :param noise: ``(B, num_noise, obs_dim)`` (one slice of a bank); fresh noise when ``None``.
        """
        s, a = self._check(s, "s", self.obs_dim), self._check(a, "a", self.act_dim, s.shape[0])
        if noise is not None and self.validate_inputs:
            self.dynamics.check_noise(noise, s.shape[0])
        d = self.dynamics.sample((s - self.obs_mean) / self.obs_std, (a - self.act_mean) / self.act_std, noise)
        return s + d * self.delta_std + self.delta_mean

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``(B,)`` predicted reward in env units."""
        s, a = self._check(s, "s", self.obs_dim), self._check(a, "a", self.act_dim, s.shape[0])
        return self.reward_head(s, a)

    def terminated(self, s: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: does (next) state ``s`` end the episode."""
        return self.termination_head(self._check(s, "s", self.obs_dim))

    def termination_probability(self, s: torch.Tensor) -> torch.Tensor:
        """``(B,)`` predicted probability that (next) state ``s`` ends the episode, differentiable in ``s``
        (``AdaptConfig(termination="soft")``); ``terminated`` is this above one half."""
        s = self._check(s, "s", self.obs_dim)
        if self.termination_head.never_terminates:
            return torch.zeros(s.shape[:1], dtype=s.dtype, device=s.device)
        return torch.sigmoid(self.termination_head.logits(s))

    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``min_i Q_i(s, a)`` of the terminal critic."""
        if self.critic is None:
            raise RuntimeError("this world model has no critic; attach one with "
                               "wm.set_critic(CriticHead.from_sb3(model)) or CriticHead.from_twin_q(q), "
                               "or train one with itpo_wrap.training.fit_fqe(policy, dataset)")
        s, a = self._check(s, "s", self.obs_dim), self._check(a, "a", self.act_dim, s.shape[0])
        return self.critic(s, a)

    # ------------------------------------------------------------------ extras
    def baseline_next(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Next state from the deterministic MLP baseline (for evaluation and ablations)."""
        if self.baseline is None:
            raise RuntimeError("this world model was saved without its MLP baseline (train it without --no-baseline)")
        s, a = self._check(s, "s", self.obs_dim), self._check(a, "a", self.act_dim, s.shape[0])
        d = self.baseline.sample((s - self.obs_mean) / self.obs_std, (a - self.act_mean) / self.act_std)
        return s + d * self.delta_std + self.delta_mean

    def set_critic(self, critic: CriticHead) -> None:
        """Attach (or replace) the terminal critic, checking its widths.

        :param critic: e.g. ``CriticHead.from_sb3(model)``.
        """
        if (critic.obs_dim, critic.act_dim) != (self.obs_dim, self.act_dim):
            raise ValueError(f"critic takes (obs_dim, act_dim)=({critic.obs_dim}, {critic.act_dim}) but the world "
                             f"model has ({self.obs_dim}, {self.act_dim}); use the critic trained on this env")
        compare("the critic", critic_facts(critic), "the world model", world_model_facts(self),
                "attach the critic trained on this env, in the action units it was trained in "
                "(CriticHead.from_twin_q and from_sb3 read them from the loaded critic)")
        self.critic = critic.to(self._low.device).requires_grad_(False).eval()

    def _check(self, x: torch.Tensor, name: str, dim: int, batch: int | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} is a {type(x).__name__}; pass a torch tensor, e.g. "
                            f"torch.as_tensor({name}, dtype=torch.float32)")
        if x.dtype != self._low.dtype:
            x = x.to(self._low.dtype)
        if not self.validate_inputs:
            return x
        env = f" ({self.env_id})" if self.env_id else ""
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but this world model{env} expects (B, {dim}); "
                             f"{'add a batch dim with x.unsqueeze(0)' if x.ndim == 1 else 'pass the env it was trained on'}")
        if batch is not None and x.shape[0] != batch:
            raise ValueError(f"{name} has batch {x.shape[0]} but s has batch {batch}; pass one row per state")
        if not bool(torch.isfinite(x).all()):
            row = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
            raise ValueError(f"{name} contains NaN or inf (first at row {row}: {x[row].tolist()}); check the "
                             "observations, or inside adaptation lower the step size (the rollout diverged)")
        return x

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole bundle to one file (atomically), readable with ``weights_only=True``.

        :param path: destination, conventionally ``*.pt``.
        """
        def dyn(d: Dynamics | None) -> dict[str, Any] | None:
            return None if d is None else {"kind": d.kind, "config": dataclasses.asdict(d.cfg), "state_dict": d.state_dict()}

        def head(h: nn.Module | None) -> dict[str, Any] | None:
            return None if h is None else {"arch": h.arch(), "state_dict": h.state_dict()}  # type: ignore[operator]

        payload = {
            "format": FORMAT_VERSION, "library": "itpo-wrap", "version": _version.__version__,
            "torch": str(torch.__version__), "env_id": self.env_id, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "action_low": self._low.cpu(), "action_high": self._high.cpu(),
            "dynamics": dyn(self.dynamics), "baseline": dyn(self.baseline), "reward": head(self.reward_head),
            "termination": head(self.termination_head), "critic": head(self.critic),
            "normalizers": {k: n.state_dict() for k, n in self.normalizers.items()},
            # info as plain JSON types (numpy scalars and the like would break weights_only loading)
            "info": json.loads(json.dumps(self.info, default=_jsonable)),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(stamp(payload), tmp)  # the digest WorldModel.load verifies (itpo_wrap.integrity)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *,
             env_id: str | None = None, obs_dim: int | None = None, act_dim: int | None = None,
             allow_version_mismatch: bool = False, kind: str | None = None, action_low: Any = None,
             action_high: Any = None) -> WorldModel:
        """Read a bundle written by ``save`` with ``torch.load(weights_only=True)``.

        The file's CRCs and stored digest are checked first (``"corrupt: digest mismatch in <file>"``), then
        every expectation given here, before any module is built.

        :param path: the file.
        :param map_location: device to load onto.
        :param env_id: if given, refuse a bundle made for another env.
        :param obs_dim: if given, refuse a bundle of another observation width.
        :param act_dim: if given, refuse a bundle of another action width.
        :param allow_version_mismatch: load a bundle written by another itpo-wrap version anyway.
        :param kind: if given, refuse a bundle whose dynamics is of another kind (see :func:`~itpo_wrap.world_model.kinds.kind_names`).
        :param action_low: with ``action_high``, refuse a bundle with another action Box.
        :param action_high: the expected Box upper bound.
        """
        payload = read_payload(path, map_location)
        check_expected(path, payload, {"env_id": env_id, "obs_dim": obs_dim, "act_dim": act_dim, "kind": kind,
                                       "action_low": action_low, "action_high": action_high,
                                       "version": None if allow_version_mismatch else _version.__version__})
        wm = rebuild(cls, payload, get_kind, path).to(map_location)
        tag(wm, source=os.fspath(path))  # messages about pairing it name the file
        return wm
