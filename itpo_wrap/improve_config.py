"""Frozen, validated settings of ``itpo improve`` (:mod:`itpo_wrap.improve`).

One validation gate, as :class:`~itpo_wrap.config.AdaptConfig`'s: ``ImproveConfig.__post_init__`` rejects
every bad value with a message naming it and the fix, so a bad value fails before a run folder is made.
The imagined return J is predict()'s: horizon, particles, discount and termination default to
``AdaptConfig()``'s, and :meth:`ImproveConfig.objective_config` hands them to the same functions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from itpo_wrap.config import AdaptConfig, FieldChecks, ModelCheck, Termination, finite_number

BCTarget = Literal["base", "data", "none"]
_BC_TARGETS = ("base", "data", "none")
_DEFAULT = AdaptConfig()

#: fields a resumed run may change: cadence and budget, not the experiment (a longer ``steps`` continues it)
MAY_DIFFER = ("steps", "log_every", "checkpoint_every", "env_seeds")


@dataclass(frozen=True)
class ImproveConfig(FieldChecks):
    """Settings of the offline first-order improvement through the world model (``docs/improve.md``).

    The policy loss per batch of ``B`` dataset start states ``s_i``, each with ``M`` particles on a fresh
    fixed noise bank (TD3+BC's form, Fujimoto & Gu 2021 eq. 3, with J in place of Q)::

        loss = -lambda * mean_i J(s_i) + mean_i ||pi(s_i) - a_i||^2,   lambda = alpha / mean_i |J(s_i)|

    ``a_i`` the base policy's own action at ``s_i`` (``bc_target="base"``) or the dataset's action
    (``"data"``), in the policy's units; ``lambda`` is computed without gradient, so the return's scale
    (hundreds in Hopper, thousands in HalfCheetah) does not set the step (PWM's return normalisation).

    :param steps: optimiser steps; ``0`` returns the base policy unchanged. The default, 1000 steps of 64
        states x 8 particles, takes 1.5 minutes with a MeanFlow model on one CPU core; on the tuning seeds of
        two datasets it scored as well as 2000 steps or better (``docs/improve.md``).
    :param batch_size: dataset start states per step ``B``.
    :param lr: Adam learning rate.
    :param alpha: weight of the return against the behaviour-cloning term (TD3+BC's alpha; larger: further
        from the data). Ignored with ``bc_target="none"``.
    :param bc_target: the behaviour-cloning target: ``"base"`` (the base policy's action, a proximal term),
        ``"data"`` (the dataset's action) or ``"none"`` (pure ascent on J, kept near the data only by
        ``max_drift``; the loss is then ``-mean J / mean |J|``).
    :param grad_clip: global L2 norm of the policy gradient (PWM: 1.0); ``None`` disables it.
    :param max_drift: after every step the parameters are projected onto ``||psi - psi_0|| <= max_drift *
        ||psi_0||`` around the base's ``psi_0`` (as ``AdaptConfig.max_drift``); ``None``: no bound.
    :param horizon: imagined rollout length ``H`` (``AdaptConfig``'s default).
    :param particles: rollouts per start state ``M``, each with its own noise (``AdaptConfig``'s default).
    :param discount: ``gamma`` of the imagined return.
    :param termination: ``"soft"`` or ``"hard"``, as ``AdaptConfig.termination``.
    :param holdout_fraction: share of the dataset's episodes held out (never trained on); half of them give
        the validation states, the other half the verdict states.
    :param validation_states: held-out start states for choosing the best step and for the verdict (each).
    :param verdict_z: the verdict: the improved policy is kept only if its imagined return on the verdict
        states, with noise no step saw, beats the base's by more than this many standard errors of the
        paired gain (as ``AdaptConfig.gate_z``); else the base is returned and nothing is saved. With an env
        (``improve_policy(make_env=...)``) the same number of standard errors, paired by seed, is what a
        validated step must beat the base by in the real env (:mod:`itpo_wrap.improve_field`).
    :param env_seeds: tuning seeds of the real-env check (used only when an env is given): one full episode
        per seed for the base and for every validated step; at least two distinct seeds, none of them your
        evaluation seeds.
    :param eval_every: steps between validations (the best validated step is kept).
    :param checkpoint_every: steps between resumable checkpoints.
    :param log_every: steps between metric rows.
    :param seed: seed of the split, the start-state batches and every noise bank.
    :param model_check: ``"warn"``, ``"strict"`` or ``"off"``, as ``AdaptConfig.model_check``: a world model
        whose recorded held-out accuracy fails the limits of :mod:`itpo_wrap.world_model.trust` is warned
        about or refused before anything runs.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    alpha: float = 2.5
    bc_target: BCTarget = "base"
    grad_clip: float | None = 1.0
    max_drift: float | None = 0.05
    horizon: int = _DEFAULT.horizon
    particles: int = _DEFAULT.particles
    discount: float = _DEFAULT.discount
    termination: Termination = _DEFAULT.termination
    holdout_fraction: float = 0.1
    validation_states: int = 256
    verdict_z: float = _DEFAULT.gate_z
    eval_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    model_check: ModelCheck = "warn"
    env_seeds: tuple[int, ...] = tuple(range(10))

    def __post_init__(self) -> None:
        self._check_int("steps", 0)
        for name in ("batch_size", "horizon", "particles", "eval_every", "checkpoint_every", "log_every"):
            self._check_int(name, 1)
        self._check_int("validation_states", 2)
        self._check_int("seed", 0)
        self._check_positive("lr", "e.g. 1e-4")
        self._check_positive("alpha", "TD3+BC uses 2.5")
        for name, example in (("grad_clip", "PWM clips at 1.0"), ("max_drift", "e.g. 0.05 of the base's norm")):
            if getattr(self, name) is not None:
                self._check_positive(name, f"{example}, or None to disable it")
        if not finite_number(self.discount) or not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount={self.discount!r} must be in (0, 1] (0.99 for MuJoCo)")
        if not finite_number(self.holdout_fraction) or not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction={self.holdout_fraction!r} must be in (0, 1), e.g. 0.1 of the episodes")
        if not finite_number(self.verdict_z) or self.verdict_z < 0:
            raise ValueError(f"verdict_z={self.verdict_z!r} must be a finite float >= 0 (standard errors, e.g. 2.0)")
        seeds = self.env_seeds
        if (not isinstance(seeds, tuple) or len(seeds) < 2 or len(set(seeds)) != len(seeds)
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)):
            raise ValueError(f"env_seeds={seeds!r} must be a tuple of at least 2 distinct ints >= 0 (tuning seeds, "
                             "e.g. tuple(range(10)); never the seeds you evaluate on)")
        self._check_choice("bc_target", _BC_TARGETS)
        self._check_choice("termination", ("hard", "soft"))
        self._check_choice("model_check", ("warn", "strict", "off"))

    def objective_config(self) -> AdaptConfig:
        """The ``AdaptConfig`` whose objective fields (and ``gate_z``, read by the paired verdict) are these:
        what :func:`itpo_wrap.objective.particle_returns` and :func:`~itpo_wrap.objective.paired_gate` take."""
        return AdaptConfig(horizon=self.horizon, particles=self.particles, discount=self.discount,
                           termination=self.termination, gate_z=self.verdict_z, model_check=self.model_check)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (the run folder's ``config.json``, the checkpoint's record)."""
        return dataclasses.asdict(self)
