"""The whole adaptation step of one ``predict`` call, for ``N`` envs: METHOD.md section 3's algorithm box
plus the safety layer around it (``docs/safety.md``), behind one object, :class:`AdaptationStep`.

Per env ``i``, from its parameters ``psi_i`` (the pretrained ``psi_0`` unless ``persistent`` mode carried
adapted ones over) and its own noise generator:

1. ``E`` ascent steps ``psi <- psi + alpha * grad J(psi)`` on one fixed noise bank, each projected onto
   ``||psi - psi_0|| <= max_drift ||psi_0||`` (``itpo_wrap.step``, on the eager or compiled backend);
   a non-finite objective or gradient freezes the env and its update is undone;
2. the gate on a second, held-out bank: ``"paired"`` (:func:`paired_gate`), ``"held_out"``
   (:func:`held_out_gate`) or ``"disagreement"`` (:func:`disagreement_gate`); a rejected update is undone;
3. the adapted policy's action at the real observation, clipped to ``max_action_change`` around the base
   action (the pretrained policy's);
4. one accept mask: an env executes its adapted action only if the paired gate accepted it, the reality
   check allowed it (``allowed``, the wrapper's :class:`~itpo_wrap.reality.RealityCheck`) and its
   objective, gradient and action were finite; every other env executes the base action with its update
   undone (back to the pretrained parameters where something was not finite). The held-out and
   disagreement gates undo the update but act with the parameters the call started from.

The objective and the gates are plain functions in ``itpo_wrap.objective``, re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from itpo_wrap.adapters import PolicyAdapter, box_center_half, to_env_numpy
from itpo_wrap.adapters.bank import ParameterBank
from itpo_wrap.adapters.validation import noise_batch_dim
from itpo_wrap.backends import Backend
from itpo_wrap.config import AdaptConfig
from itpo_wrap.objective import (
    AdaptStats,
    PolicyFn,
    Rollout,
    disagreement_gate,
    held_out_gate,
    imagine,
    objective,
    paired_gate,
    particle_returns,
    per_env_norm,
    select_rows_,
    surrogate_return,
)
from itpo_wrap.step import Ascents, AscentStep
from itpo_wrap.world_model.protocol import WorldModelLike

__all__ = [
    "AdaptStats", "AdaptationStep", "PolicyFn", "Rollout", "StepResult", "disagreement_gate", "held_out_gate",
    "imagine", "objective", "paired_gate", "particle_returns", "per_env_norm", "select_rows_", "surrogate_return",
]


@dataclass
class StepResult:
    """What one call did to ``N`` envs.

    :ivar actions: ``(N, act_dim)`` env-space actions to execute, mapped to the Box exactly as SB3 does.
    :ivar info: one dict per env (``ITPOPolicyWrapper.last_info`` without the wrapper's own keys).
    :ivar accepted: ``(N,)`` bool: the env executes its adapted action and keeps this call's update (the
        paired gate accepted it, the reality check allowed it, everything was finite).
    :ivar params: every env's parameters after the call (``(N, *shape)`` each), ``None`` where the call
        adapted nothing (``steps=0``, or no env allowed): the parameters are as they were.
    """

    actions: np.ndarray
    info: list[dict[str, Any]]
    accepted: torch.Tensor
    params: list[torch.Tensor] | None


@dataclass
class _Update:
    """The parameters after the ascent, the gate and the rollback, and what was measured on the way, ``(N,)``."""

    params: list[torch.Tensor]
    stats: AdaptStats
    gate_accepted: torch.Tensor
    param_change: torch.Tensor
    param_drift: torch.Tensor


class AdaptationStep:
    """The adaptation of one ``predict`` call, built once per wrapper; holds no per-env state.

    :param config: the settings.
    :param world_model: the world model (validated by the caller).
    :param adapter: the policy; its architecture runs every env's parameters.
    :param pretrained: the pretrained parameters ``psi_0``, the centre of ``max_drift``'s trust region and
        what a non-finite update falls back to.
    :param bounds: the world model's action Box ``(low, high)`` as tensors on ``device``.
    :param device: where the step runs (the policy's device).
    """

    def __init__(self, config: AdaptConfig, world_model: WorldModelLike, adapter: PolicyAdapter,
                 pretrained: Sequence[torch.Tensor], bounds: tuple[torch.Tensor, torch.Tensor],
                 device: torch.device) -> None:
        self.config, self.world_model, self.adapter = config, world_model, adapter
        self._low, self._high = bounds
        self._mid, self._half = box_center_half(self._low, self._high)
        self._low_np = adapter.action_low if adapter.action_low is not None else self._low.cpu().numpy()
        self._high_np = adapter.action_high if adapter.action_high is not None else self._high.cpu().numpy()
        self._noise_dim = noise_batch_dim(world_model, config.horizon, device)
        self.ascents = Ascents(adapter, self._to_env, world_model, config, device)
        self.set_pretrained(pretrained)

    @property
    def backend(self) -> Backend:
        """The backend the ascent runs on, ``"auto"`` resolved."""
        return self.ascents.backend

    def set_pretrained(self, params: Sequence[torch.Tensor]) -> None:
        """Take ``params`` as the pretrained parameters from now on (the policy was trained further)."""
        self._pretrained = list(params)
        self._anchors: tuple[int, tuple[torch.Tensor, ...]] | None = None

    def __call__(self, obs: torch.Tensor, base: torch.Tensor, bank: ParameterBank, *, deterministic: bool,
                 allowed: torch.Tensor | None = None, deadline: float | None = None) -> StepResult:
        """Adapt every env from its row of ``bank`` (not modified) and choose what each executes.

        :param obs: ``(N, obs_dim)`` real observations (validated, finite).
        :param base: ``(N, act_dim)`` the pretrained policy's actions at ``obs`` in policy units (finite).
        :param bank: every env's parameters and noise generator (the generators advance).
        :param deterministic: act with the adapted policy's mean, else sample from it.
        :param allowed: ``(N,)`` bool, the envs that may adapt (the reality check); ``None``: all.
        :param deadline: a ``time.perf_counter()`` value after which no further ascent step starts.
        """
        if self.config.steps == 0 or (allowed is not None and not bool(allowed.any())):
            return self._finish(base, base, None, allowed)
        cfg = self.config
        s0 = obs.repeat_interleave(cfg.particles, dim=0)
        noise = self._draw(bank)
        held_out = self._draw(bank) if cfg.gate in ("held_out", "paired") else None
        with _imagined_inputs_unchecked(self.world_model):
            update = self._update(bank.params, s0, noise, held_out, allowed, deadline)
            with torch.no_grad():
                if deterministic:
                    final = self.adapter.batched_forward(update.params, obs.unsqueeze(1)).squeeze(1)
                else:
                    final = torch.cat([self.adapter.sample(obs[i : i + 1], [p[i] for p in update.params])
                                       for i in range(obs.shape[0])])
        bound = cfg.max_action_change
        if bound is not None:  # the trust region on the executed action (AdaptConfig.max_action_change)
            # in [-1, 1] units whatever the policy's own: a policy acting in env units gets the same
            # fraction of the Box's half-width, so one default means the same on every Box
            limit = torch.full_like(self._half, bound) if self.adapter.squashed else bound * self._half
            final = base + (final - base).clamp(-limit, limit)
        return self._finish(base, final, update, allowed)

    # ----------------------------------------------------------------- internals
    def _to_env(self, a: torch.Tensor) -> torch.Tensor:
        # == SB3's low + 0.5 (a + 1)(high - low), fused into one op: this sits inside every imagined step.
        return torch.addcmul(self._mid, self._half, a) if self.adapter.squashed else a.clamp(self._low, self._high)

    def _draw(self, bank: ParameterBank) -> torch.Tensor:
        """One noise bank per env from its own generator, concatenated in env order."""
        cfg = self.config
        banks = [self.world_model.draw_noise(cfg.particles, cfg.horizon, g) for g in bank.generators]
        return banks[0] if bank.n == 1 else torch.cat(banks, dim=self._noise_dim)

    def _anchor(self, n: int) -> tuple[torch.Tensor, ...]:
        """The pretrained parameters stacked for ``n`` envs (contiguous, so a compiled step sees one layout)."""
        if self._anchors is None or self._anchors[0] != n:
            self._anchors = (n, tuple(s.unsqueeze(0).expand(n, *s.shape).contiguous() for s in self._pretrained))
        return self._anchors[1]

    def _update(self, start: list[torch.Tensor], s0: torch.Tensor, noise: torch.Tensor,
                held_out: torch.Tensor | None, allowed: torch.Tensor | None, deadline: float | None) -> _Update:
        """The ascent from ``start`` (not modified), the gate, one rollback of the updates not kept, the norms."""
        n = len(s0) // self.config.particles
        ascent, anchor = self.ascents.for_envs(n), self._anchor(n)
        adapted, stats = ascent.run(start, s0, noise, deadline=deadline, anchor=anchor)
        with torch.no_grad():  # no step taken: `adapted` is `start` itself, and the gates write in place
            params = list(adapted) if stats.steps_taken > 0 else [p.clone() for p in adapted]
            if not bool(stats.ok.all()):
                select_rows_(params, ~stats.ok, start)  # a non-finite step leaves no trace in the parameters
        accepted = self._gate(ascent, params, start, anchor, s0, noise, held_out, stats.steps_taken)
        with torch.no_grad():
            if self.config.gate != "off" or allowed is not None:  # one rollback: rejected, or off-model
                kept = accepted if allowed is None else accepted & allowed
                select_rows_(params, ~kept, start)
            change = per_env_norm([v - s for v, s in zip(params, start, strict=True)], n)
            drift = per_env_norm([v - s.unsqueeze(0) for v, s in zip(params, self._pretrained, strict=True)], n)
        return _Update(params, stats, accepted, change, drift)

    def _gate(self, ascent: AscentStep, params: list[torch.Tensor], start: list[torch.Tensor],
              anchor: tuple[torch.Tensor, ...], s0: torch.Tensor, noise: torch.Tensor, held_out: torch.Tensor | None,
              steps_taken: int) -> torch.Tensor:
        """``(N,)`` bool, the gate's verdict on each env's update (``AdaptConfig.gate``; ``"off"``: all accepted).
        The held-out and disagreement gates undo a rejected update in ``params`` themselves."""
        cfg, n = self.config, ascent.n_envs
        if cfg.gate == "paired" and held_out is not None and steps_taken > 0:
            # paired by particle on one held-out bank: the adapted against the pretrained parameters
            return paired_gate(ascent.returns(params, s0, held_out), ascent.returns(anchor, s0, held_out), cfg)
        policy = partial(ascent.policy, params)
        if cfg.gate == "held_out" and held_out is not None:
            return held_out_gate(policy, params, start, self.world_model, s0, held_out, cfg, n)
        if cfg.gate == "disagreement":
            return disagreement_gate(policy, params, start, self.world_model, s0, noise, cfg, n)
        return torch.ones(n, dtype=torch.bool, device=s0.device)

    def _finish(self, base: torch.Tensor, final: torch.Tensor, update: _Update | None,
                allowed: torch.Tensor | None) -> StepResult:
        """The one accept mask (paired gate, reality check, finiteness): rejected envs execute the base action,
        and those with anything non-finite fall back to the pretrained parameters; numpy env actions; info."""
        n = base.shape[0]
        ones = torch.ones(n, dtype=torch.bool, device=base.device)
        adapt_ok = ones if update is None else update.stats.ok
        accepted = ones if allowed is None else allowed
        if update is not None and self.config.gate == "paired":
            accepted = accepted & update.gate_accepted
        if update is not None and update.stats.steps_taken == 0:
            # a spent time budget: envs still at the pretrained parameters act exactly as the base policy does
            # (the stacked N-env forward can differ from the plain one in the last bit)
            accepted = accepted & (update.param_drift != 0)
        finite_action = torch.isfinite(final).all(1) | ~accepted  # a rejected env's base action is finite
        finite = adapt_ok & finite_action
        accepted = accepted & finite
        final = torch.where(accepted[:, None], final, base)
        if update is not None and not bool(finite.all()):
            with torch.no_grad():  # something non-finite: that env starts again from the pretrained parameters
                select_rows_(update.params, ~finite, self._anchor(n))
        reasons = [None if f else "non-finite objective or gradient" for f in adapt_ok.tolist()]
        reasons = [r or (None if f else "non-finite action") for r, f in zip(reasons, finite_action.tolist(), strict=True)]
        actions = to_env_numpy(final.cpu().numpy(), self._low_np, self._high_np, self.adapter.squashed)
        base_np = to_env_numpy(base.cpu().numpy(), self._low_np, self._high_np, self.adapter.squashed)
        params = None if update is None else update.params
        return StepResult(actions, _info_rows(actions, base_np, reasons, update, n), accepted, params)


def _info_rows(
    actions: np.ndarray, base: np.ndarray, reasons: list[str | None], update: _Update | None, n: int
) -> list[dict[str, Any]]:
    """``last_info``: one dict per env. J values are the imagined return of METHOD.md section 3; ``param_change``
    is this call's update, ``param_drift`` the distance from the pretrained parameters; distances are L2."""
    change = np.linalg.norm(actions.astype(np.float64) - base, axis=1)
    keys = ("j_before", "j_after", "grad_norm", "param_change", "param_drift")
    if update is None:
        values = np.full((n, len(keys)), np.nan)
        values[:, 3:] = 0.0
        accepted = np.ones(n, dtype=bool)
    else:
        s = update.stats
        cols = [s.j_before, s.j_after, s.grad_norm, update.param_change, update.param_drift]
        values = torch.stack([c.detach().double().cpu() for c in cols], 1).numpy()
        accepted = update.gate_accepted.cpu().numpy()
    return [
        {**dict(zip(keys, map(float, values[i]), strict=True)), "action_change": float(change[i]),
         "adapt_steps": 0 if update is None else update.stats.steps_taken,
         "fallback": reasons[i] is not None, "fallback_reason": reasons[i], "gate_rejected": bool(not accepted[i])}
        for i in range(n)
    ]


@contextmanager
def _imagined_inputs_unchecked(world_model: Any) -> Iterator[None]:
    """Switch off a world model's own input validation (``validate_inputs``) during adaptation.

    The real observation was validated once at the entry gate; imagined states are the model's own
    outputs, and a non-finite one must reach the fallback (base action, recorded), not raise. It also
    removes a host sync per call from the inner loop.
    """
    flag = getattr(world_model, "validate_inputs", None)
    if flag is None:
        yield
        return
    world_model.validate_inputs = False
    try:
        yield
    finally:
        world_model.validate_inputs = flag
