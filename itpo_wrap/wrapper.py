"""``ITPOPolicyWrapper``: inference-time policy optimisation inside SB3's ``predict`` contract.

Per call and per env: a fresh noise bank (``M`` particles x ``H`` steps) from that env's own generator,
``E`` ascent steps on J (METHOD.md section 3), the gates, then the adapted policy's action at the real
observation: the whole step is :class:`~itpo_wrap.adapt.AdaptationStep`'s. The wrapper is SB3's ``predict``
contract and the per-env state around the step: the validated inputs, every env's adapted parameters,
``episode_start`` resets, the reality check's last transitions, ``last_info``. Parameter storage, and why
the module is always pretrained:

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
from typing import Any

import numpy as np
import torch

from itpo_wrap.adapt import AdaptationStep
from itpo_wrap.adapters import PolicyAdapter, make_adapter
from itpo_wrap.adapters.bank import ParameterBank
from itpo_wrap.adapters.validation import check_world_model, predict_inputs
from itpo_wrap.backends import Backend
from itpo_wrap.config import AdaptConfig
from itpo_wrap.reality import RealityCheck
from itpo_wrap.world_model.protocol import WorldModelLike
from itpo_wrap.world_model.trust import fitness_of


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
            self.device, low, high = check_world_model(self.adapter, world_model, self.config)
            self._snapshot = [p.detach().clone() for p in self.adapter.params]
            self._step = AdaptationStep(self.config, world_model, self.adapter, self._snapshot, (low, high),
                                        self.device)
        self._bank: ParameterBank | None = None
        self._calls, self._lent = 0, False
        self.last_info: list[dict[str, Any]] = []
        self._deadline: float | None = None  # AdaptConfig.time_budget_ms of the call in progress
        self._reality = _reality_check(world_model, self.config.max_model_error)

    # ----------------------------------------------------------------- public API
    @property
    def backend(self) -> Backend:
        """The backend the ascent runs on (``AdaptConfig.backend`` with ``"auto"`` resolved)."""
        return self._step.backend

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
        self._bank = None
        self._step.set_pretrained(self._snapshot)

    def _act(self, obs: torch.Tensor, deterministic: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The step (``itpo_wrap.adapt``) on every env's row of the parameter bank, whose rows it then updates;
        with the reality check, which envs may adapt and the transition to score next time."""
        assert self._bank is not None
        reality = self._reality
        errors = reality.errors(obs) if reality is not None else None
        allowed = reality.allowed(errors) if reality is not None and errors is not None else None
        result = self._step(obs, self._base, self._bank, deterministic=deterministic, allowed=allowed,
                            deadline=self._deadline)
        if result.params is not None:
            with torch.no_grad():
                torch._foreach_copy_(self._bank.params, result.params)
        if reality is not None and errors is not None and allowed is not None:
            reality.record(obs, result.actions)
            for row, err, ok in zip(result.info, errors.tolist(), allowed.tolist(), strict=True):
                row["model_error"], row["off_model"] = err, not ok
        return result.actions, result.info

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
