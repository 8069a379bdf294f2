"""The optimiser of METHOD.md section 3 as plain functions: no env, no SB3, no I/O.

From the real state ``s_t`` of each of ``N`` envs, ``M`` particles with a fixed noise bank each:

    s~_0 = s_t;  a~_j = pi_psi(s~_j);  s~_{j+1} = f_theta(s~_j, a~_j, eps_j),  j = 0..H-1
    L_m(psi) = sum_{j<H} gamma^j r_xi(s~_j, a~_j) + gamma^H min_i Q_i(s~_H, pi_psi(s~_H))
    J(psi) = mean_m L_m;   psi <- psi + alpha * grad J   (E times, same bank)

with one addition of ours (METHOD.md section 1, "termination"): a reward counts only while no earlier
imagined state was predicted terminal, and the terminal value only if none was.

Batch layout: rows are env-major, row ``i * M + m`` is particle ``m`` of env ``i``. ``policy`` maps
``(N*M, obs_dim)`` raw observations to env-space actions and is differentiable in ``params``: either
the live parameters of one policy (``stacked=False``, ``N == 1``) or per-env copies stacked on a
leading ``N`` dim (``stacked=True``). Rows never interact, so ``grad (sum_i J_i)`` is every env's own
``grad J_i`` and a non-finite value in one env cannot leak into another.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from itpo_wrap.config import AdaptConfig
from itpo_wrap.world_model.protocol import WorldModelLike

PolicyFn = Callable[[torch.Tensor], torch.Tensor]
ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _range(name: str) -> AbstractContextManager[object]:
    """A profiler range only while a profiler runs: a range costs a few dispatched ops, and at M = 8
    per-op overhead is most of the step (ECOSYSTEM.md, measured costs)."""
    return record_function(name) if torch.autograd._profiler_enabled() else nullcontext()


@dataclass
class Rollout:
    """One batch of imagined rollouts. ``B = N * M`` rows.

    :ivar states: ``H + 1`` tensors ``(B, obs_dim)``, ``s~_0 .. s~_H``.
    :ivar actions: ``H + 1`` env-space actions ``(B, act_dim)``, ``a~_j = pi(s~_j)`` (the last feeds Q).
    :ivar rewards: ``(H, B)`` predicted rewards ``r(s~_j, a~_j)``.
    :ivar alive: ``(H + 1, B)`` bool, ``alive[j]``: none of ``s~_1 .. s~_j`` was predicted terminal.
    :ivar terminal_value: ``(B,)`` ``min_i Q_i(s~_H, a~_H)``.
    """

    states: list[torch.Tensor]
    actions: list[torch.Tensor]
    rewards: torch.Tensor
    alive: torch.Tensor
    terminal_value: torch.Tensor


@dataclass
class AdaptStats:
    """Per-env results of :func:`adapt`, each ``(N,)``.

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


def imagine(policy: PolicyFn, wm: WorldModelLike, s0: torch.Tensor, noise: torch.Tensor, horizon: int) -> Rollout:
    """Roll the policy through the world model for ``horizon`` steps with a fixed noise bank.

    :param policy: ``(B, obs_dim) -> (B, act_dim)`` env-space actions.
    :param wm: the world model.
    :param s0: ``(B, obs_dim)`` start states (the real state repeated per particle).
    :param noise: bank from ``wm.draw_noise(B, horizon)``; ``noise[j]`` drives step ``j``.
    :param horizon: ``H``.
    """
    s, states, actions, rewards = s0, [s0], [], []
    alive = [torch.ones(s0.shape[0], dtype=torch.bool, device=s0.device)]
    for j in range(horizon):
        a = policy(s)
        rewards.append(wm.reward(s, a))
        s = wm.next(s, a, noise[j])
        with torch.no_grad():  # a discrete event: no gradient, and no graph to record
            alive.append(alive[-1] & ~wm.terminated(s).bool())
        states.append(s)
        actions.append(a)
    actions.append(policy(s))
    return Rollout(states, actions, torch.stack(rewards), torch.stack(alive), wm.value(s, actions[-1]))


def surrogate_return(rollout: Rollout, discount: float) -> torch.Tensor:
    """``L_m`` of METHOD.md section 3 per row, rewards and value masked after a predicted termination.

    ``torch.where`` rather than a multiply, so a garbage (even NaN) prediction past a termination
    does not turn the masked-out term into NaN.
    """
    horizon = rollout.rewards.shape[0]
    weights = discount ** torch.arange(horizon, dtype=rollout.rewards.dtype, device=rollout.rewards.device)
    rewards = torch.where(rollout.alive[:-1], rollout.rewards, 0.0)
    value = torch.where(rollout.alive[-1], rollout.terminal_value, 0.0)
    return (weights[:, None] * rewards).sum(0) + discount**horizon * value


def objective(
    policy: PolicyFn, wm: WorldModelLike, s0: torch.Tensor, noise: torch.Tensor, cfg: AdaptConfig, n_envs: int
) -> torch.Tensor:
    """``J`` per env: the particle mean of :func:`surrogate_return`, shape ``(N,)``."""
    with _range("itpo/imagine"):
        returns = surrogate_return(imagine(policy, wm, s0, noise, cfg.horizon), cfg.discount)
    return returns.reshape(n_envs, -1).mean(1)


def adapt(
    policy: PolicyFn,
    params: Sequence[torch.Tensor],
    wm: WorldModelLike,
    s0: torch.Tensor,
    noise: torch.Tensor,
    cfg: AdaptConfig,
    n_envs: int,
    stacked: bool,
    objective_fn: ObjectiveFn | None = None,
    deadline: float | None = None,
) -> AdaptStats:
    """``cfg.steps`` ascent steps on ``J``, updating ``params`` in place.

    :param policy: env-space policy, differentiable in ``params``.
    :param params: leaf tensors with ``requires_grad``; stacked ``(N, ...)`` copies or one policy's own.
    :param wm: the world model.
    :param s0: ``(N*M, obs_dim)`` start states, env-major.
    :param noise: the bank, fixed for all ``cfg.steps`` steps.
    :param cfg: the configuration.
    :param n_envs: ``N``.
    :param stacked: whether ``params`` carry the leading env dim (else ``N`` must be 1).
    :param objective_fn: ``(s0, noise) -> J``, the same objective in another form (e.g. from
        :func:`trace_objective`); ``None`` runs :func:`objective` eagerly.
    :param deadline: a ``time.perf_counter()`` value after which no further step starts
        (``AdaptConfig.time_budget_ms``); ``None``: all ``cfg.steps`` steps.
    """
    # inference_mode is ~15% cheaper than no_grad for a report-only forward, but a traced graph run in it
    # can cache inference tensors that its later gradient runs then refuse: no_grad for traces.
    report_mode = torch.inference_mode if objective_fn is None else torch.no_grad
    if objective_fn is None:
        def objective_fn(s: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
            return objective(policy, wm, s, eps, cfg, n_envs)
    views = list(params) if stacked else [p.unsqueeze(0) for p in params]
    ok = torch.ones(n_envs, dtype=torch.bool, device=s0.device)
    nan = torch.full((n_envs,), float("nan"), device=s0.device)
    j_before, grad_norm = nan, nan
    moments: list[list[torch.Tensor]] = []
    taken = 0
    for step in range(cfg.steps):
        if deadline is not None and time.perf_counter() >= deadline:
            break  # checked before a step starts: the call overruns its budget by at most the step in flight
        taken += 1
        J = objective_fn(s0, noise)
        with _range("itpo/backward"):
            # autograd.grad with explicit inputs prunes the world model's own weight gradients
            # (about a third of a naive backward when its parameters require grad).
            grads = torch.autograd.grad(J.sum(), params, allow_unused=True, materialize_grads=True)
        with torch.no_grad(), _range("itpo/update"):
            gviews = list(grads) if stacked else [g.unsqueeze(0) for g in grads]
            norm = per_env_norm(gviews, n_envs)
            ok = ok & torch.isfinite(J) & torch.isfinite(norm)
            if step == 0:
                j_before, grad_norm = J.detach(), norm
            _ascend(views, gviews, norm, ok, cfg, moments, step + 1)
    if cfg.steps == 0 or cfg.track_j_after:
        with report_mode():
            j_after = objective_fn(s0, noise)
        if cfg.steps == 0:
            j_before = j_after
    else:
        j_after = nan
    return AdaptStats(j_before=j_before, j_after=j_after, grad_norm=grad_norm, ok=ok, steps_taken=taken)


def per_env_norm(grads: Sequence[torch.Tensor], n_envs: int) -> torch.Tensor:
    """``(N,)`` global L2 norm of each env's slice of a list of ``(N, ...)`` tensors."""
    if n_envs == 1:  # one fused op over all tensors instead of one per tensor
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads)))).reshape(1)
    per_param = torch.stack([torch.linalg.vector_norm(g.reshape(n_envs, -1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per_param, dim=0)


def _env_shape(t: torch.Tensor) -> tuple[int, ...]:
    return (t.shape[0],) + (1,) * (t.dim() - 1)


def _ascend(
    views: list[torch.Tensor],
    grads: list[torch.Tensor],
    norm: torch.Tensor,
    ok: torch.Tensor,
    cfg: AdaptConfig,
    moments: list[list[torch.Tensor]],
    t: int,
) -> None:
    """One ascent update ``psi += alpha * step`` per env; envs not ``ok`` are left untouched."""
    all_ok = bool(ok.all())
    if not all_ok:  # zero the non-finite envs' gradients so NaN never enters parameters or moments
        grads = [torch.where(ok.view(_env_shape(g)), g, 0.0) for g in grads]
    if cfg.grad_clip is not None:
        scale = (cfg.grad_clip / norm.clamp_min(cfg.grad_clip)).nan_to_num(0.0)
        grads = [g * scale.view(_env_shape(g)) for g in grads]
    if cfg.optimizer == "adam":
        grads = _adam_direction(grads, cfg, moments, t)
    if all_ok:
        torch._foreach_add_(views, grads, alpha=cfg.step_size)
    else:
        for p, g in zip(views, grads, strict=True):
            p.add_(torch.where(ok.view(_env_shape(g)), g, 0.0), alpha=cfg.step_size)


def _adam_direction(
    grads: list[torch.Tensor], cfg: AdaptConfig, moments: list[list[torch.Tensor]], t: int
) -> list[torch.Tensor]:
    """Adam's bias-corrected ``m_hat / (sqrt(v_hat) + eps)``; ``moments`` is ``[m, v]``, created at ``t == 1``."""
    b1, b2 = cfg.adam_betas
    if not moments:
        moments.extend([[torch.zeros_like(g) for g in grads], [torch.zeros_like(g) for g in grads]])
    m, v = moments
    torch._foreach_lerp_(m, grads, 1.0 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1.0 - b2)
    denom = torch._foreach_sqrt(torch._foreach_div(v, 1.0 - b2**t))
    torch._foreach_add_(denom, cfg.adam_eps)
    return list(torch._foreach_div(torch._foreach_div(m, 1.0 - b1**t), denom))


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


class _ObjectiveModule(nn.Module):
    """:func:`objective` as a module, so a trace keeps the policy's parameters as (shared) parameters."""

    def __init__(self, policy: nn.Module, to_env: Callable[[torch.Tensor], torch.Tensor], wm: WorldModelLike,
                 cfg: AdaptConfig, n_envs: int) -> None:
        super().__init__()
        self.policy, self.wm, self.to_env, self.cfg, self.n_envs = policy, wm, to_env, cfg, n_envs

    def forward(self, s0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return objective(lambda x: self.to_env(self.policy(x)), self.wm, s0, noise, self.cfg, self.n_envs)


def trace_objective(
    policy: nn.Module, to_env: Callable[[torch.Tensor], torch.Tensor], wm: WorldModelLike,
    s0: torch.Tensor, noise: torch.Tensor, cfg: AdaptConfig, n_envs: int,
) -> tuple[ObjectiveFn | None, str]:
    """:func:`objective` as a TorchScript trace for these shapes: the same math with less per-op overhead
    (one autograd node per fused differentiable subgraph, no Python in the forward).

    Python-level behaviour of ``policy`` and ``wm`` is frozen at trace time, so a trace that reports data-
    dependent control flow (a ``TracerWarning``, e.g. a world model validating its inputs with
    ``bool(torch.isfinite(x).all())``) or fails is refused.

    :return: ``(traced, "")``, or ``(None, reason)`` when the objective cannot be traced faithfully.
    """
    module = _ObjectiveModule(policy, to_env, wm, cfg, n_envs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(module, (s0, noise), check_trace=False)
        except (RuntimeError, TypeError, ValueError) as err:
            return None, f"tracing failed: {err}"
    tracer = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if tracer:
        return None, f"data-dependent Python control flow: {tracer[0].splitlines()[0]}"
    _warm_up(traced, policy, s0, noise)
    return traced, ""


# TorchScript's profiling executor runs a new trace's first call(s) unoptimised, then swaps in a fused graph
# whose float results differ in the last bits. Closed-loop control amplifies such bits into a different
# episode (HalfCheetah medium-expert: one evaluation seed scored 38.8 or 97 depending on whether its
# wrapper was the process's first), so the first predict() must already run the graph every later call
# runs: same inputs, same action, whatever ran before in the process.
_WARM_UP_RUNS = 3


def _warm_up(traced: ObjectiveFn, policy: nn.Module, s0: torch.Tensor, noise: torch.Tensor) -> None:
    """Run ``traced`` as :func:`adapt` does (objective then gradient, and a no-grad report) until the
    executor has settled, without side effects: gradients go nowhere and nothing is written."""
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(_WARM_UP_RUNS):
        J = traced(s0, noise)
        if params:
            torch.autograd.grad(J.sum(), params, allow_unused=True)
        with torch.no_grad():
            traced(s0, noise)
