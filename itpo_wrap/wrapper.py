"""``ITPOPolicyWrapper``: inference-time policy optimisation inside SB3's ``predict`` contract.

Per call and per env: a fresh noise bank (``M`` particles x ``H`` steps) from that env's own generator,
``E`` ascent steps on J (``itpo_wrap.step``, METHOD.md section 3), then the adapted policy's action at
the real observation. Parameter storage, and why the module is always pretrained:

- every env's adapted parameters live in a ``ParameterBank``, per-env copies stacked on a leading dim
  (one env is ``N = 1``), updated by a pure functional step; the policy module itself is never written
  (``use_adapted()`` alone lends it adapted weights), so ``model.save()`` can never write adapted weights, and
  another thread reading its ``state_dict()`` during ``predict`` sees the pretrained ones, with no lock;
- one env and ``N`` envs run the same step on the same kernels (``AdaptConfig.backend``, eager or
  compiled), so env ``i`` of a vectorised call, whose noise comes from a generator seeded
  ``noise_seed + i`` and whose rows never mix with other envs', acts exactly, bit for bit, as a
  single-env wrapper seeded ``noise_seed + i``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from itpo_wrap import adapt as A
from itpo_wrap.adapters import PolicyAdapter, make_adapter, to_env_numpy
from itpo_wrap.adapters.bank import ParameterBank
from itpo_wrap.adapters.validation import check_world_model, noise_batch_dim, predict_inputs
from itpo_wrap.config import AdaptConfig
from itpo_wrap.reality import RealityCheck
from itpo_wrap.step import AscentStep, resolve_backend
from itpo_wrap.world_model.protocol import WorldModelLike
from itpo_wrap.world_model.trust import fitness_of


@dataclass
class _Step:
    """One adapted call: the optimiser's stats plus what the wrapper measured around it, each ``(N,)``."""

    stats: A.AdaptStats
    accepted: torch.Tensor
    param_change: torch.Tensor
    param_drift: torch.Tensor


class ITPOPolicyWrapper:
    """Wrap a pretrained policy and a differentiable world model; adapt the policy inside ``predict``.

    :param policy: SB3 ``SAC``/``TD3``/``DDPG`` (or ``PPO``/``A2C`` with Box actions), its ``.policy``, or a
        torch ``nn.Module`` mapping raw observations to actions in ``[-1, 1]``.
    :param world_model: anything satisfying :class:`~itpo_wrap.world_model.protocol.WorldModelLike`.
    :param config: adaptation settings (defaults: :class:`AdaptConfig`).
    :param obs_normalizer: torch actors only, applied to observations before the actor.
    :param squashed: torch actors only; ``False`` clips raw outputs to the Box instead of rescaling.
    :param logger: optional SB3 ``Logger`` (anything with ``record_mean`` and ``dump``): ``adapt/...`` means.
    :param log_interval: call ``logger.dump`` every this many ``predict`` calls (``None``: never; the caller dumps).

    Example, a drop-in for SB3's evaluation loop::

        model = SAC.load("sac.zip")
        with ITPOPolicyWrapper(model, WorldModel.load("wm.pt"), AdaptConfig(step_size=1e-3)) as policy:
            mean, std = evaluate_policy(policy, env, n_eval_episodes=10)
            print(policy.last_info[0]["j_after"] - policy.last_info[0]["j_before"])
        model.save("sac_again.zip")  # the pretrained weights: the wrapper never leaves adapted ones behind
    """

    def __init__(
        self,
        policy: object,
        world_model: WorldModelLike,
        config: AdaptConfig | None = None,
        *,
        obs_normalizer: Any = None,
        squashed: bool | None = None,
        logger: Any = None,
        log_interval: int | None = None,
    ) -> None:
        self.config = config if config is not None else AdaptConfig()
        if not isinstance(self.config, AdaptConfig):
            raise TypeError(f"config must be an AdaptConfig, got {type(self.config).__name__}")
        if log_interval is not None and (logger is None or log_interval < 1):
            raise ValueError(f"log_interval={log_interval!r} needs a logger and must be >= 1")
        self.adapter: PolicyAdapter = make_adapter(policy, obs_normalizer=obs_normalizer, squashed=squashed)
        _check_fitness(world_model, self.config.model_check)
        self.world_model = world_model
        self.logger, self.log_interval = logger, log_interval
        with torch.inference_mode(False):
            self.device, self._low, self._high = check_world_model(self.adapter, world_model, self.config)
            self._mid, self._half = (self._high + self._low) / 2, (self._high - self._low) / 2
            self._low_np = self.adapter.action_low if self.adapter.action_low is not None else self._low.cpu().numpy()
            self._high_np = self.adapter.action_high if self.adapter.action_high is not None else self._high.cpu().numpy()
            self._noise_dim = noise_batch_dim(world_model, self.config.horizon, self.device)
            self._snapshot = [p.detach().clone() for p in self.adapter.params]
        self._bank: ParameterBank | None = None
        self.backend = resolve_backend(self.config.backend, self.device)
        self._steps: dict[int, AscentStep] = {}  # per env count N (the step's shapes)
        self._anchors: tuple[int, tuple[torch.Tensor, ...]] | None = None
        self._calls, self._lent = 0, False
        self.last_info: list[dict[str, Any]] = []
        self._deadline: float | None = None  # AdaptConfig.time_budget_ms of the call in progress
        self._reality = _reality_check(world_model, self.config.max_model_error)

    # ----------------------------------------------------------------- public API
    def predict(
        self,
        observation: np.ndarray | torch.Tensor,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Adapt, then act; SB3's ``PolicyPredictor`` contract.

        :param observation: ``(obs_dim,)`` or ``(n_envs, obs_dim)``, any float dtype; NaN/inf raise ``ValueError``.
        :param state: passed through unchanged (the policies are not recurrent).
        :param episode_start: ``(n_envs,)`` bools; in ``persistent`` mode those envs restart from the pretrained
            parameters. Copied, since SB3 mutates it in place.
        :param deterministic: ``False`` samples from the adapted policy when it is stochastic (SAC, PPO).
        :return: env-space actions ``(n_envs, act_dim)`` (or ``(act_dim,)`` for an unbatched observation), ``state``.
        """
        start = time.perf_counter()
        budget = self.config.time_budget_ms
        self._deadline = None if budget is None else start + budget / 1e3
        with torch.inference_mode(False), torch.enable_grad():
            # the gate (adapters/validation.py): inputs and a finite base action, before any state changes
            obs, vectorized, starts, self._base = predict_inputs(self.adapter, observation, episode_start,
                                                                 deterministic, self.world_model.obs_dim, self.device)
            self._prepare(obs.shape[0], starts)
            actions, info = self._act(obs, deterministic)
        ms = 1e3 * (time.perf_counter() - start)
        self.last_info = [{**row, "ms": ms} for row in info]
        self._log()
        return (actions if vectorized else actions[0]), state

    def reset(self) -> None:
        """A fresh start: every env back to the pretrained parameters, noise generators reseeded, info cleared."""
        self.restore()
        self._bank, self.last_info, self._calls = None, [], 0
        if self._reality is not None:
            self._reality.forget()

    def restore(self) -> None:
        """Put the pretrained parameters back into the policy, bit for bit, and drop all adapted ones."""
        with torch.inference_mode(False), torch.no_grad():
            torch._foreach_copy_(self.adapter.params, self._snapshot)
            if self._bank is not None:
                self._bank.reset_rows(np.arange(self._bank.n), self._snapshot)

    def __enter__(self) -> ITPOPolicyWrapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def adapted_parameters(self, env: int = 0) -> dict[str, torch.Tensor]:
        """Copies of env ``env``'s current adapted parameters (the pretrained ones before any call)."""
        if self._bank is None:
            return {n: s.clone() for n, s in zip(self.adapter.names, self._snapshot, strict=True)}
        if not 0 <= env < self._bank.n:
            raise IndexError(f"env={env} is out of range for {self._bank.n} envs")
        return {n: p[env].detach().clone() for n, p in zip(self.adapter.names, self._bank.params, strict=True)}

    @contextmanager
    def use_adapted(self, env: int = 0) -> Iterator[None]:
        """Temporarily load env ``env``'s adapted parameters into the policy itself (inspect or call it);
        the pretrained ones are back on exit, whatever happens inside."""
        adapted = list(self.adapted_parameters(env).values())
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch._foreach_copy_(self.adapter.params, adapted)
            self._lent = True
            yield
        finally:
            self._lent = False
            self.restore_module()

    def restore_module(self) -> None:
        """Copy the pretrained snapshot into the policy's parameters (adapted state is kept)."""
        with torch.inference_mode(False), torch.no_grad():
            torch._foreach_copy_(self.adapter.params, self._snapshot)

    # ----------------------------------------------------------------- internals
    def _prepare(self, n: int, starts: np.ndarray | None) -> None:
        if self._lent:
            raise RuntimeError("predict() inside use_adapted(): the policy holds adapted weights; leave the block first")
        self._check_snapshot()
        if self._bank is None or self._bank.n != n:
            if self._bank is not None:
                warnings.warn(f"predict got {n} envs after {self._bank.n}: restarting every env from the pretrained "
                              "policy with fresh noise generators", stacklevel=3)
            self._bank = ParameterBank(self._snapshot, n, self.config.noise_seed)
            if self._reality is not None:
                self._reality.forget()
        elif self.config.persistence == "reset_each_step":
            self._bank.reset_rows(np.arange(n), self._snapshot)
        elif starts is not None and starts.any():
            self._bank.reset_rows(np.flatnonzero(starts), self._snapshot)
        if self._reality is not None and starts is not None and starts.any():
            self._reality.forget(np.flatnonzero(starts))  # no real transition leads into an episode's first state

    def _check_snapshot(self) -> None:
        """If someone changed the policy since wrapping (more training), adopt its weights as the new pretrained
        ones instead of silently overwriting them with a stale snapshot."""
        if all(torch.equal(p, s) for p, s in zip(self.adapter.params, self._snapshot, strict=True)):
            return
        warnings.warn("the policy's weights changed outside the wrapper; taking them as the new pretrained weights "
                      "and restarting adaptation", stacklevel=4)
        self._snapshot = [p.detach().clone() for p in self.adapter.params]
        self._bank, self._anchors = None, None

    def _act(self, obs: torch.Tensor, deterministic: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if self._reality is None:
            return self._act_adapted(obs, deterministic, None)
        errors = self._reality.errors(obs)
        allowed = self._reality.allowed(errors)
        actions, info = self._act_adapted(obs, deterministic, allowed)
        self._reality.record(obs, actions)
        for row, err, ok in zip(info, errors.tolist(), allowed.tolist(), strict=True):
            row["model_error"], row["off_model"] = err, not ok
        return actions, info

    def _act_adapted(self, obs: torch.Tensor, deterministic: bool,
                     allowed: torch.Tensor | None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The base action, adaptation of the ``allowed`` envs (all when ``None``), the gates and trust regions."""
        base = self._base  # the pretrained policy's action, from predict's gate (finite)
        if self.config.steps == 0 or (allowed is not None and not bool(allowed.any())):
            return self._finish(base, base, None, obs.shape[0])
        assert self._bank is not None
        n, m = obs.shape[0], self.config.particles
        s0 = obs.repeat_interleave(m, dim=0)
        noise = self._draw(n)
        held_out = self._draw(n) if self.config.gate in ("held_out", "paired") else None
        with _imagined_inputs_unchecked(self.world_model):
            final, stats = self._run(obs, s0, noise, held_out, deterministic, allowed)
        bound = self.config.max_action_change
        if bound is not None:  # the trust region on the executed action (AdaptConfig.max_action_change)
            # in [-1, 1] units whatever the policy's own: a policy acting in env units gets the same
            # fraction of the Box's half-width, so one default means the same on every Box
            limit = torch.full_like(self._half, bound) if self.adapter.squashed else bound * self._half
            final = base + (final - base).clamp(-limit, limit)
        if self.config.gate == "paired":  # a rejected env executes the base action (its update was undone)
            final = torch.where(stats.accepted[:, None], final, base)
        if allowed is not None:  # off-model envs execute the base action (their update was undone)
            final = torch.where(allowed[:, None], final, base)
        return self._finish(base, final, stats, n)

    def _draw(self, n: int) -> torch.Tensor:
        assert self._bank is not None
        cfg = self.config
        banks = [self.world_model.draw_noise(cfg.particles, cfg.horizon, g) for g in self._bank.generators]
        return banks[0] if n == 1 else torch.cat(banks, dim=self._noise_dim)

    def _to_env(self, a: torch.Tensor) -> torch.Tensor:
        # == SB3's low + 0.5 (a + 1)(high - low), fused into one op: this sits inside every imagined step.
        return torch.addcmul(self._mid, self._half, a) if self.adapter.squashed else a.clamp(self._low, self._high)

    def _run(self, obs: torch.Tensor, s0: torch.Tensor, noise: torch.Tensor, held_out: torch.Tensor | None,
             deterministic: bool, allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, _Step]:
        """Adapt every env's row of the parameter bank with the functional step (``itpo_wrap.step``); the
        policy module itself is never written, so it holds the pretrained weights throughout."""
        assert self._bank is not None
        n, bank = obs.shape[0], self._bank.params
        step = self._step_for(n)
        stats = self._adapt(step, bank, s0, noise, held_out, n, allowed)
        with torch.no_grad():
            if deterministic:
                final = self.adapter.batched_forward(bank, obs.unsqueeze(1)).squeeze(1)
            else:
                final = torch.cat([self.adapter.sample(obs[i : i + 1], [b[i] for b in bank]) for i in range(n)])
        return final, stats

    def _anchor(self, n: int) -> tuple[torch.Tensor, ...]:
        """The pretrained parameters stacked for ``n`` envs (contiguous, so a compiled step sees one layout)."""
        if self._anchors is None or self._anchors[0] != n:
            self._anchors = (n, tuple(s.unsqueeze(0).expand(n, *s.shape).contiguous() for s in self._snapshot))
        return self._anchors[1]

    def _step_for(self, n: int) -> AscentStep:
        """The step for ``n`` envs, built on first use (a compiled one compiles on its first call)."""
        if n not in self._steps:
            if len(self._steps) >= 4:  # the env count keeps changing: do not hoard steps
                self._steps.clear()
            self._steps[n] = AscentStep(self.adapter, self._to_env, self.world_model, self.config, n, self.backend,
                                        self.device)
        return self._steps[n]

    def _adapt(self, step: AscentStep, bank: list[torch.Tensor], s0: torch.Tensor, noise: torch.Tensor,
               held_out: torch.Tensor | None, n: int, allowed: torch.Tensor | None = None) -> _Step:
        """The ascent plus the optional gate, written into ``bank``; returns the stats extended with
        parameter changes and gate decisions."""
        cfg = self.config
        start = [b.detach().clone() for b in bank]
        anchor = self._anchor(n)
        adapted, stats = step.run(bank, s0, noise, deadline=self._deadline, anchor=anchor)
        with torch.no_grad():
            torch._foreach_copy_(bank, list(adapted))
            if not bool(stats.ok.all()):
                A.select_rows_(bank, ~stats.ok, start)  # a non-finite step leaves no trace in the parameters
        accepted = torch.ones(n, dtype=torch.bool, device=s0.device)

        def policy(x: torch.Tensor) -> torch.Tensor:
            return step.policy(bank, x)

        if cfg.gate == "paired" and held_out is not None and stats.steps_taken > 0:
            with torch.no_grad():
                step.mark_step()
                new = step.returns_fn(tuple(bank), s0, held_out).clone()  # a CUDA-graph replay reuses its output
                step.mark_step()
                accepted = A.paired_gate(new, step.returns_fn(anchor, s0, held_out), cfg)
                A.select_rows_(bank, ~accepted, start)
        elif cfg.gate == "held_out" and held_out is not None:
            accepted = A.held_out_gate(policy, bank, start, self.world_model, s0, held_out, cfg, n)
        elif cfg.gate == "disagreement":
            accepted = A.disagreement_gate(policy, bank, start, self.world_model, s0, noise, cfg, n)
        if allowed is not None and not bool(allowed.all()):
            with torch.no_grad():
                A.select_rows_(bank, ~allowed, start)  # the reality check: no update where the model was wrong
        with torch.no_grad():
            change = A.per_env_norm([v - s for v, s in zip(bank, start, strict=True)], n)
            drift = A.per_env_norm([v - s.unsqueeze(0) for v, s in zip(bank, self._snapshot, strict=True)], n)
        return _Step(stats, accepted, change, drift)

    def _finish(self, base: torch.Tensor, final: torch.Tensor, step: _Step | None,
                n: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Fallbacks (non-finite anything -> the base action, that env's parameters -> pretrained), numpy
        actions mapped to the Box exactly as SB3 does, and the per-env info rows."""
        if step is not None and step.stats.steps_taken == 0:
            # a spent time budget: envs still at the pretrained parameters act exactly as the base policy does
            # (the stacked N-env forward can differ from the plain one in the last bit)
            final = torch.where((step.param_drift == 0)[:, None], base, final)
        finite_action = torch.isfinite(final).all(1)
        finite_adapt = step.stats.ok if step is not None else torch.ones_like(finite_action)
        ok = finite_action & finite_adapt
        if not bool(ok.all()):
            final = torch.where(ok[:, None], final, base)
            if self._bank is not None:
                self._bank.reset_rows(np.flatnonzero(~ok.cpu().numpy()), self._snapshot)
        reasons = [None if f else "non-finite objective or gradient" for f in finite_adapt.tolist()]
        reasons = [r or (None if f else "non-finite action") for r, f in zip(reasons, finite_action.tolist(), strict=True)]
        actions = to_env_numpy(final.cpu().numpy(), self._low_np, self._high_np, self.adapter.squashed)
        base_np = to_env_numpy(base.cpu().numpy(), self._low_np, self._high_np, self.adapter.squashed)
        return actions, _info_rows(actions, base_np, reasons, step, n)

    def _log(self) -> None:
        self._calls += 1
        if self.logger is None:
            return
        for row in self.last_info:
            for key, value in row.items():
                if isinstance(value, (bool, int, float)) and value is not None and np.isfinite(value):
                    self.logger.record_mean(f"adapt/{key}", float(value))
        if self.log_interval is not None and self._calls % self.log_interval == 0:
            self.logger.dump(step=self._calls)


def _info_rows(
    actions: np.ndarray, base: np.ndarray, reasons: list[str | None], step: _Step | None, n: int
) -> list[dict[str, Any]]:
    """``last_info``: one dict per env. J values are the imagined return of METHOD.md section 3; ``param_change``
    is this call's update, ``param_drift`` the distance from the pretrained parameters; distances are L2."""
    change = np.linalg.norm(actions.astype(np.float64) - base, axis=1)
    keys = ("j_before", "j_after", "grad_norm", "param_change", "param_drift")
    if step is None:
        values = np.full((n, len(keys)), np.nan)
        values[:, 3:] = 0.0
        accepted = np.ones(n, dtype=bool)
    else:
        cols = [step.stats.j_before, step.stats.j_after, step.stats.grad_norm, step.param_change, step.param_drift]
        values = torch.stack([c.detach().double().cpu() for c in cols], 1).numpy()
        accepted = step.accepted.cpu().numpy()
    return [
        {**dict(zip(keys, map(float, values[i]), strict=True)), "action_change": float(change[i]),
         "adapt_steps": 0 if step is None else step.stats.steps_taken,
         "fallback": reasons[i] is not None, "fallback_reason": reasons[i], "gate_rejected": bool(not accepted[i])}
        for i in range(n)
    ]


def _check_fitness(world_model: object, mode: str) -> None:
    """``AdaptConfig.model_check``: warn about (or refuse) a world model whose recorded held-out accuracy
    fails the limits of :mod:`itpo_wrap.world_model.trust`; checked before any state is set."""
    if mode == "off":
        return
    fitness = fitness_of(world_model)
    if fitness is None:
        return
    problems = fitness.problems()
    if not problems:
        return
    msg = (f"this world model is not fit to plan with: {'; '.join(problems)} ({fitness.source}). Adaptation "
           "would optimise against its errors and can make the policy worse; retrain it (more data or "
           "updates, `itpo eval-world-model` to check), or wrap with AdaptConfig(steps=0) to act as the base")
    if mode == "strict":
        raise ValueError(msg + "; model_check='strict' refuses it (model_check='warn' only warns)")
    warnings.warn(msg, UserWarning, stacklevel=3)


def _reality_check(world_model: WorldModelLike, limit: float | None) -> RealityCheck | None:
    """``AdaptConfig.max_model_error``'s monitor; a model without a state scale gets none, with a warning."""
    if limit is None:
        return None
    try:
        return RealityCheck(world_model, limit)
    except ValueError as err:
        warnings.warn(f"{err}; adapting without the reality check", UserWarning, stacklevel=3)
        return None


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
