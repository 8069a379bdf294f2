"""The objective of METHOD.md section 3 and the gates, as plain functions: no env, no SB3, no I/O
(the ascent's backends are ``itpo_wrap.step``; the whole step, gates and rollback included, is
``itpo_wrap.adapt``).

From the real state ``s_t`` of each of ``N`` envs, ``M`` particles with a fixed noise bank each:

    s~_0 = s_t;  a~_j = pi_psi(s~_j);  s~_{j+1} = f_theta(s~_j, a~_j, eps_j),  j = 0..H-1
    L_m(psi) = sum_{j<H} gamma^j r_xi(s~_j, a~_j) + gamma^H min_i Q_i(s~_H, pi_psi(s~_H))
    J(psi) = mean_m L_m;   psi <- psi + alpha * grad J   (E times, same bank)

with one addition of ours (METHOD.md section 1, "termination"): a reward counts only while no earlier
imagined state was predicted terminal, and the terminal value only if none was.

Batch layout: rows are env-major, row ``i * M + m`` is particle ``m`` of env ``i``. ``policy`` maps
``(N*M, obs_dim)`` raw observations to env-space actions, env ``i``'s rows with env ``i``'s parameters.
Rows never interact, so ``grad (sum_i J_i)`` is every env's own ``grad J_i`` and a non-finite value in
one env cannot leak into another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from itpo_wrap.config import AdaptConfig
from itpo_wrap.world_model.protocol import WorldModelLike

PolicyFn = Callable[[torch.Tensor], torch.Tensor]


def _range(name: str) -> AbstractContextManager[object]:
    """A profiler range only while a profiler runs: a range costs a few dispatched ops, and at M = 8
    per-op overhead is most of the step (ECOSYSTEM.md, measured costs)."""
    if torch.compiler.is_compiling() or not torch.autograd._profiler_enabled():
        return nullcontext()  # (a compiled graph has its own profiler events)
    return record_function(name)


@dataclass
class Rollout:
    """One batch of imagined rollouts. ``B = N * M`` rows.

    :ivar states: ``H + 1`` tensors ``(B, obs_dim)``, ``s~_0 .. s~_H``.
    :ivar actions: ``H + 1`` env-space actions ``(B, act_dim)``, ``a~_j = pi(s~_j)`` (the last feeds Q).
    :ivar rewards: ``(H, B)`` predicted rewards ``r(s~_j, a~_j)``.
    :ivar alive: ``(H + 1, B)`` bool, ``alive[j]``: none of ``s~_1 .. s~_j`` was predicted terminal.
    :ivar terminal_value: ``(B,)`` ``min_i Q_i(s~_H, a~_H)``.
    :ivar survival: ``(H + 1, B)`` or ``None``: ``prod_{k<=j} (1 - p_term(s~_k))``, the differentiable
        probability of having survived to ``s~_j`` (``AdaptConfig(termination="soft")``).
    """

    states: list[torch.Tensor]
    actions: list[torch.Tensor]
    rewards: torch.Tensor
    alive: torch.Tensor
    terminal_value: torch.Tensor
    survival: torch.Tensor | None = None


@dataclass
class AdaptStats:
    """Per-env results of an adaptation (``itpo_wrap.step.AscentStep.run``), each ``(N,)``.

    :ivar j_before: J at the parameters the step started from.
    :ivar j_after: J after the last update on the same bank (NaN when not tracked).
    :ivar grad_norm: L2 norm of the first gradient, before clipping.
    :ivar ok: every objective and gradient of this env was finite (else its updates stopped).
    :ivar steps_taken: ascent steps taken (``cfg.steps`` unless a deadline stopped them earlier).
    """

    j_before: torch.Tensor
    j_after: torch.Tensor
    grad_norm: torch.Tensor
    ok: torch.Tensor
    steps_taken: int = 0


def imagine(policy: PolicyFn, wm: WorldModelLike, s0: torch.Tensor, noise: torch.Tensor, horizon: int,
            soft_termination: bool = False) -> Rollout:
    """Roll the policy through the world model for ``horizon`` steps with a fixed noise bank.

    :param policy: ``(B, obs_dim) -> (B, act_dim)`` env-space actions.
    :param wm: the world model.
    :param s0: ``(B, obs_dim)`` start states (the real state repeated per particle).
    :param noise: bank from ``wm.draw_noise(B, horizon)``; ``noise[j]`` drives step ``j``.
    :param horizon: ``H``.
    :param soft_termination: also track the survival probability (when ``wm`` has ``termination_probability``).
    """
    prob = getattr(wm, "termination_probability", None) if soft_termination else None
    s, states, actions, rewards = s0, [s0], [], []
    alive = [torch.ones(s0.shape[0], dtype=torch.bool, device=s0.device)]
    survival = [torch.ones(s0.shape[0], dtype=s0.dtype, device=s0.device)]
    for j in range(horizon):
        a = policy(s)
        rewards.append(wm.reward(s, a))
        s = wm.next(s, a, noise[j])
        if prob is not None:  # the smooth counterpart: a gradient away from predicted falls
            p = prob(s)
            survival.append(survival[-1] * (1.0 - p))
            alive.append(alive[-1] & (p.detach() <= 0.5))  # terminated == p > 1/2: one head evaluation, not two
        else:
            with torch.no_grad():  # a discrete event: no gradient, and no graph to record
                alive.append(alive[-1] & ~wm.terminated(s).bool())
        states.append(s)
        actions.append(a)
    actions.append(policy(s))
    return Rollout(states, actions, torch.stack(rewards), torch.stack(alive), wm.value(s, actions[-1]),
                   torch.stack(survival) if prob is not None else None)


def surrogate_return(rollout: Rollout, discount: float) -> torch.Tensor:
    """``L_m`` of METHOD.md section 3 per row, rewards and value masked after a predicted termination.

    ``torch.where`` rather than a multiply, so a garbage (even NaN) prediction past a termination
    does not turn the masked-out term into NaN. With a survival track (soft termination) each term is
    also weighted by the probability of having survived to it:
    ``L_m = sum_j gamma^j S_j r_j + gamma^H S_H V`` with ``S_j = prod_{k<=j} (1 - p_term(s~_k))``.
    """
    horizon = rollout.rewards.shape[0]
    weights = discount ** torch.arange(horizon, dtype=rollout.rewards.dtype, device=rollout.rewards.device)
    r, v = rollout.rewards, rollout.terminal_value
    if rollout.survival is not None:
        r, v = rollout.survival[:-1] * r, rollout.survival[-1] * v
    rewards = torch.where(rollout.alive[:-1], r, 0.0)
    value = torch.where(rollout.alive[-1], v, 0.0)
    return (weights[:, None] * rewards).sum(0) + discount**horizon * value


def particle_returns(
    policy: PolicyFn, wm: WorldModelLike, s0: torch.Tensor, noise: torch.Tensor, cfg: AdaptConfig, n_envs: int
) -> torch.Tensor:
    """:func:`surrogate_return` of every particle, ``(N, M)``."""
    with _range("itpo/imagine"):
        rollout = imagine(policy, wm, s0, noise, cfg.horizon, cfg.termination == "soft")
        return surrogate_return(rollout, cfg.discount).reshape(n_envs, -1)


def objective(
    policy: PolicyFn, wm: WorldModelLike, s0: torch.Tensor, noise: torch.Tensor, cfg: AdaptConfig, n_envs: int
) -> torch.Tensor:
    """``J`` per env: the particle mean of :func:`surrogate_return`, shape ``(N,)``."""
    return particle_returns(policy, wm, s0, noise, cfg, n_envs).mean(1)


def paired_gate(returns_new: torch.Tensor, returns_base: torch.Tensor, cfg: AdaptConfig) -> torch.Tensor:
    """The acceptance test (``AdaptConfig(gate="paired")``): per env, the particles' imagined returns under
    the adapted and under the pretrained policy on one held-out bank, paired by particle (same noise), so
    the model's shared noise cancels; accept where the mean paired gain exceeds ``gate_margin`` plus
    ``gate_z`` standard errors of that mean. The more the particles disagree (the less the model can say),
    the larger the gain must be; a non-finite return rejects.

    :param returns_new: ``(N, M)`` returns of the adapted policy.
    :param returns_base: ``(N, M)`` returns of the pretrained policy on the same bank.
    :return: ``(N,)`` bool, accepted.
    """
    d = returns_new - returns_base
    m = d.shape[1]
    se = d.std(dim=1, unbiased=True) / m**0.5 if m > 1 else torch.zeros_like(d[:, 0])
    mean = d.mean(1)
    return torch.isfinite(mean) & torch.isfinite(se) & (mean > cfg.gate_margin + cfg.gate_z * se)


def per_env_norm(grads: Sequence[torch.Tensor], n_envs: int) -> torch.Tensor:
    """``(N,)`` global L2 norm of each env's slice of a list of ``(N, ...)`` tensors."""
    if n_envs == 1:  # one fused op over all tensors instead of one per tensor
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads)))).reshape(1)
    per_param = torch.stack([torch.linalg.vector_norm(g.reshape(n_envs, -1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per_param, dim=0)


def _env_shape(t: torch.Tensor) -> tuple[int, ...]:
    return (t.shape[0],) + (1,) * (t.dim() - 1)


def held_out_gate(
    policy: PolicyFn,
    views: Sequence[torch.Tensor],
    start: Sequence[torch.Tensor],
    wm: WorldModelLike,
    s0: torch.Tensor,
    held_out: torch.Tensor,
    cfg: AdaptConfig,
    n_envs: int,
) -> torch.Tensor:
    """Accept env ``i``'s update only if it raises J on a second noise bank by more than ``cfg.gate_margin``.

    Rejected envs get their start parameters back. ``views`` are the live parameters with the env dim.

    :return: ``(N,)`` bool, accepted.
    """
    with torch.no_grad():
        adapted = [v.clone() for v in views]
        j_new = objective(policy, wm, s0, held_out, cfg, n_envs)
        torch._foreach_copy_(list(views), list(start))
        j_old = objective(policy, wm, s0, held_out, cfg, n_envs)
        accept = torch.isfinite(j_new) & (j_new > j_old + cfg.gate_margin)
        select_rows_(views, accept, adapted)
    return accept


def disagreement_gate(
    policy: PolicyFn,
    views: Sequence[torch.Tensor],
    start: Sequence[torch.Tensor],
    wm: WorldModelLike,
    s0: torch.Tensor,
    noise: torch.Tensor,
    cfg: AdaptConfig,
    n_envs: int,
) -> torch.Tensor:
    """Accept env ``i``'s update only where the model's mean ``disagreement(s, a)`` along the adapted
    rollout is at most ``cfg.gate_max_disagreement``; rejected envs get their start parameters back.

    :return: ``(N,)`` bool, accepted.
    """
    disagreement = getattr(wm, "disagreement")  # noqa: B009  (optional, ensembles only; checked by the wrapper)
    with torch.no_grad():
        rollout = imagine(policy, wm, s0, noise, cfg.horizon)
        d = torch.stack([disagreement(s, a) for s, a in zip(rollout.states[:-1], rollout.actions[:-1], strict=True)])
        per_env = d.mean(0).view(n_envs, -1).mean(1)
        accept = torch.isfinite(per_env) & (per_env <= float(cfg.gate_max_disagreement or 0.0))
        select_rows_(views, ~accept, start)
    return accept


def select_rows_(views: Sequence[torch.Tensor], mask: torch.Tensor, source: Sequence[torch.Tensor]) -> None:
    """In place: ``views[k][i] = source[k][i]`` wherever ``mask[i]`` (env dim first)."""
    with torch.no_grad():
        for v, src in zip(views, source, strict=True):
            v.copy_(torch.where(mask.view(_env_shape(v)), src, v))
