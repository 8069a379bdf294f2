"""The ascent of METHOD.md section 3 as one pure function (issue 19), run eagerly or compiled (a CUDA graph
on GPU), and one step per env count. The choice between the backends (``AdaptConfig.backend``) and the
compile-or-fall-back wrapper are :mod:`itpo_wrap.backends`'. What the step does around the ascent (gates,
rollback, trust regions) is ``itpo_wrap.adapt``'s.

    step(params, moments, ok, bias, s0, noise) -> (params', moments', ok', J, grad_norm)

``params`` are the policy's adaptable parameters as per-env copies stacked on a leading dim ``N``
(``N = 1`` for one env), evaluated with ``vmap(functional_call)``. One env and ``N`` envs therefore run
the same code on the same kernels, so env ``i`` of a vectorised call reproduces a single-env run bit for
bit (rows never mix: J, its gradient, the clip and the update are all per env).

Why a pure function: ``torch.func.grad_and_value`` gives ``grad J`` without touching any ``.grad`` or
module state, and the update, the finiteness checks and the clip are tensor ops (no ``bool()`` or
``.item()``), so ``torch.compile`` captures a whole step, forward, backward and update, as one graph with
no host sync. The world model's weights are read from the (frozen) module at call time; the compiler lifts
them as graph inputs, so one compiled step serves every wrapper over models of the same architecture
and building a wrapper holds no artefact that outlives it (the TorchScript trace this replaces never
freed its graph: +24-72 MB per wrapper).

The ``E`` steps stay a Python loop around the step: a latency budget (``AdaptConfig.time_budget_ms``) is
checked between them, and one compiled step costs ``1/E`` of the compile time of ``E`` unrolled ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from itpo_wrap.adapters import PolicyAdapter
from itpo_wrap.backends import Backend, FirstCallFallback, compile_static, compiler_available, resolve_backend
from itpo_wrap.config import AdaptConfig
from itpo_wrap.objective import AdaptStats, particle_returns, per_env_norm
from itpo_wrap.world_model.protocol import WorldModelLike

# the backend choice lives in itpo_wrap.backends; tests and callers import these names from here too
__all__ = ["AscentStep", "Ascents", "Backend", "Params", "StepOut", "compiler_available", "resolve_backend"]

Params = tuple[torch.Tensor, ...]
StepOut = tuple[Params, Params, Params, torch.Tensor, torch.Tensor, torch.Tensor]


class AscentStep:
    """The adaptation of ``N`` envs with one policy architecture and one world model.

    :param adapter: the policy; only its architecture is used (parameters come in as arguments).
    :param to_env: policy units -> env-space actions (differentiable, elementwise).
    :param wm: the world model.
    :param cfg: the configuration (its numbers are constants of the compiled graph, except the step size).
    :param n_envs: ``N``.
    :param backend: ``"eager"`` runs the function as written; ``"compile"`` through ``torch.compile``.
    :param device: where it runs; on CUDA the compiled step is captured as a CUDA graph
        (``mode="reduce-overhead"``), replayed at each of the ``E`` steps.
    """

    def __init__(self, adapter: PolicyAdapter, to_env: Callable[[torch.Tensor], torch.Tensor], wm: WorldModelLike,
                 cfg: AdaptConfig, n_envs: int, backend: Backend, device: torch.device | None = None) -> None:
        self.adapter, self.to_env, self.wm, self.cfg, self.n_envs = adapter, to_env, wm, cfg, n_envs
        self.backend = backend
        self.cuda_graphs = backend == "compile" and device is not None and device.type == "cuda"
        # The compiler needs the functional transform (torch.func); eager runs plain reverse-mode autograd on
        # detached leaves, the same derivative without functorch's per-op wrapping (half the eager time).
        self.step_fn: Callable[..., StepOut] = self._step_eager
        self.returns_fn: Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor] = self._returns
        if backend == "compile":
            mode = "reduce-overhead" if self.cuda_graphs else None
            self.step_fn = FirstCallFallback(compile_static(self._step_func, mode), self._step_eager, "step")
            self.returns_fn = FirstCallFallback(compile_static(self._returns, mode), self._returns, "imagined returns")

    # ------------------------------------------------------------------ the pure functions
    def policy(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Env-space actions of ``(N*M, obs_dim)`` env-major rows, env ``i``'s rows with copy ``i``."""
        n = self.n_envs
        out = self.adapter.batched_forward(params, x.view(n, -1, x.shape[-1]))
        return self.to_env(out.reshape(x.shape[0], -1))

    def _returns(self, params: Params, s0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Every particle's imagined return ``L_m``, ``(N, M)``."""
        return particle_returns(lambda x: self.policy(params, x), self.wm, s0, noise, self.cfg, self.n_envs)

    def _objective(self, params: Params, s0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``J`` per env, ``(N,)`` (METHOD.md section 3, eq. for ``J(psi)``)."""
        return self._returns(params, s0, noise).mean(1)

    def _objective_sum(self, params: Params, s0: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # envs never share rows, so grad of the sum is each env's own grad J_i
        J = self._objective(params, s0, noise)
        return J.sum(), J

    def _func_grad(self, params: Params, s0: torch.Tensor, noise: torch.Tensor) -> tuple[Params, torch.Tensor]:
        grads, (_, J) = torch.func.grad_and_value(self._objective_sum, has_aux=True)(params, s0, noise)
        return grads, J

    def _autograd_grad(self, params: Params, s0: torch.Tensor, noise: torch.Tensor) -> tuple[Params, torch.Tensor]:
        with torch.enable_grad():
            leaves = tuple(p.detach().requires_grad_(True) for p in params)
            J = self._objective(leaves, s0, noise)
            if not J.requires_grad:  # J does not depend on the policy here (e.g. a constant reward): no ascent
                return tuple(torch.zeros_like(x) for x in leaves), J.detach()
            # explicit inputs: autograd skips the world model's own (frozen) weights
            grads = torch.autograd.grad(J.sum(), leaves, allow_unused=True, materialize_grads=True)
        return grads, J.detach()

    def _step_func(self, *args: Any) -> StepOut:
        return self._step(self._func_grad, *args)

    def _step_eager(self, *args: Any) -> StepOut:
        return self._step(self._autograd_grad, *args)

    def _step(self, grad_fn: Callable[..., tuple[Params, torch.Tensor]], params: Params, m: Params, v: Params,
              ok: torch.Tensor, bias: torch.Tensor, anchor: Params, s0: torch.Tensor, noise: torch.Tensor) -> StepOut:
        """One ascent step ``psi <- psi + alpha * d`` per env, ``d`` the (clipped) gradient or Adam's direction,
        then (``max_drift``) the projection onto the trust region around the pretrained ``anchor``.

        An env whose objective or gradient is non-finite is frozen for the rest of the call (its ``ok``
        turns false) and nothing non-finite enters its parameters or moments.
        ``bias``: ``(1 - beta1^t, 1 - beta2^t, alpha)``, Adam's bias corrections and the step size, as a tensor:
        neither the step index nor the (per-dataset tuned) step size is a graph constant, so one compiled
        step serves every step size.
        """
        cfg = self.cfg
        grads, J = grad_fn(params, s0, noise)
        norm = per_env_norm(grads, self.n_envs)
        ok = ok & torch.isfinite(J) & torch.isfinite(norm)
        g = [torch.where(ok.view(_env_shape(gi)), gi, 0.0) for gi in grads]
        if cfg.grad_clip is not None:
            scale = (cfg.grad_clip / norm.clamp_min(cfg.grad_clip)).nan_to_num(0.0)
            g = [gi * scale.view(_env_shape(gi)) for gi in g]
        if cfg.optimizer == "adam":
            b1, b2 = cfg.adam_betas
            m = tuple(torch.lerp(mi, gi, 1.0 - b1) for mi, gi in zip(m, g, strict=True))
            v = tuple(vi * b2 + gi * gi * (1.0 - b2) for vi, gi in zip(v, g, strict=True))
            g = [(mi / bias[0]) / ((vi / bias[1]).sqrt() + cfg.adam_eps) for mi, vi in zip(m, v, strict=True)]
        new = tuple(p + bias[2] * torch.where(ok.view(_env_shape(p)), d, 0.0)
                    for p, d in zip(params, g, strict=True))
        if cfg.max_drift is not None:
            # ||psi - psi_0|| <= max_drift ||psi_0||, per env: scale the displacement back onto the ball
            delta = [p - a for p, a in zip(new, anchor, strict=True)]
            radius = cfg.max_drift * per_env_norm(list(anchor), self.n_envs)
            scale = (radius / per_env_norm(delta, self.n_envs).clamp_min(1e-30)).clamp(max=1.0)
            new = tuple(a + d * scale.view(_env_shape(d)) for a, d in zip(anchor, delta, strict=True))
        return new, m, v, ok, J, norm

    def mark_step(self) -> None:
        """Before a compiled call whose outputs outlive the next one: a new CUDA-graph step (no-op elsewhere)."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def returns(self, params: Sequence[torch.Tensor], s0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Every particle's imagined return ``L_m`` under ``params``, ``(N, M)``, no gradient; a tensor of its own
        (a CUDA-graph replay reuses its output memory, so there it is copied out)."""
        with torch.no_grad():
            self.mark_step()
            out = self.returns_fn(tuple(params), s0, noise)
        return out.clone() if self.cuda_graphs else out

    # ------------------------------------------------------------------ the loop
    def run(self, params: Sequence[torch.Tensor], s0: torch.Tensor, noise: torch.Tensor,
            deadline: float | None = None, anchor: Sequence[torch.Tensor] | None = None) -> tuple[Params, AdaptStats]:
        """``cfg.steps`` steps from ``params`` (not modified) on one noise bank.

        :param params: ``(N, *shape)`` per-env parameters.
        :param s0: ``(N*M, obs_dim)`` start states, env-major.
        :param noise: the bank, fixed for all steps.
        :param deadline: a ``time.perf_counter()`` value after which no further step starts.
        :param anchor: ``(N, *shape)`` pretrained parameters, the centre of ``max_drift``'s trust region
            (default: ``params``).
        :return: the adapted parameters and the per-env stats.
        """
        cfg, n = self.cfg, self.n_envs
        p: Params = tuple(x.detach() for x in params)
        centre: Params = tuple(x.detach() for x in (anchor if anchor is not None else params))
        adam = cfg.optimizer == "adam"
        m: Params = tuple(torch.zeros_like(x) for x in p) if adam else ()
        v: Params = tuple(torch.zeros_like(x) for x in p) if adam else ()
        ok = torch.ones(n, dtype=torch.bool, device=s0.device)
        nan = torch.full((n,), float("nan"), device=s0.device)
        j_before, grad_norm, taken = nan, nan, 0
        b1, b2 = cfg.adam_betas
        for t in range(1, cfg.steps + 1):
            if deadline is not None and time.perf_counter() >= deadline:
                break  # checked before a step starts: a call overruns its budget by at most the step in flight
            bias = torch.tensor([1.0 - b1**t, 1.0 - b2**t, cfg.step_size], device=s0.device, dtype=s0.dtype)
            if self.cuda_graphs:  # a replay reuses its output memory: start a new step, keep copies
                torch.compiler.cudagraph_mark_step_begin()
                p, m, v, ok, J, norm = _cloned(self.step_fn(p, m, v, ok, bias, centre, s0, noise))
            else:
                p, m, v, ok, J, norm = self.step_fn(p, m, v, ok, bias, centre, s0, noise)
            if t == 1:
                j_before, grad_norm = J, norm
            taken = t
        j_after = nan
        if cfg.steps == 0 or cfg.track_j_after:
            with torch.no_grad():
                self.mark_step()
                j_after = self.returns_fn(p, s0, noise).mean(1)
            if cfg.steps == 0:
                j_before = j_after
        return p, AdaptStats(j_before=j_before.detach(), j_after=j_after.detach(), grad_norm=grad_norm.detach(),
                               ok=ok, steps_taken=taken)


class Ascents:
    """The :class:`AscentStep` for each env count ``N`` (its shapes), built on first use on the backend that
    ``cfg.backend`` names (resolved once, here); a compiled one compiles on its first call.

    :param adapter: the policy (architecture only).
    :param to_env: policy units -> env-space actions.
    :param wm: the world model.
    :param cfg: the configuration.
    :param device: where the steps run.
    """

    def __init__(self, adapter: PolicyAdapter, to_env: Callable[[torch.Tensor], torch.Tensor], wm: WorldModelLike,
                 cfg: AdaptConfig, device: torch.device) -> None:
        self.adapter, self.to_env, self.wm, self.cfg, self.device = adapter, to_env, wm, cfg, device
        self.backend: Backend = resolve_backend(cfg.backend, device)
        self._steps: dict[int, AscentStep] = {}

    def for_envs(self, n: int) -> AscentStep:
        """The step for ``n`` envs."""
        if n not in self._steps:
            if len(self._steps) >= 4:  # the env count keeps changing: do not hoard steps
                self._steps.clear()
            self._steps[n] = AscentStep(self.adapter, self.to_env, self.wm, self.cfg, n, self.backend, self.device)
        return self._steps[n]


def _env_shape(t: torch.Tensor) -> tuple[int, ...]:
    return (t.shape[0],) + (1,) * (t.dim() - 1)


def _cloned(out: StepOut) -> StepOut:
    p, m, v, ok, J, norm = out
    return (tuple(x.clone() for x in p), tuple(x.clone() for x in m), tuple(x.clone() for x in v), ok.clone(),
            J.clone(), norm.clone())
