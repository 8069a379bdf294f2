"""Frozen, validated configuration for inference-time adaptation (METHOD.md section 3).

One validation gate: ``AdaptConfig.__post_init__`` rejects every bad value with a message naming it
and the fix, so ``itpo_wrap.adapt`` and ``itpo_wrap.wrapper`` trust their inputs. ``to_dict()`` is
what result rows and checkpoints should store next to scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Optimizer = Literal["sgd", "adam"]
Persistence = Literal["persistent", "reset_each_step"]
Gate = Literal["off", "held_out", "disagreement", "paired"]
BackendName = Literal["auto", "eager", "compile"]
Termination = Literal["hard", "soft"]
ModelCheck = Literal["warn", "strict", "off"]

_OPTIMIZERS = ("sgd", "adam")
_PERSISTENCE = ("persistent", "reset_each_step")
_GATES = ("off", "held_out", "disagreement", "paired")
_BACKENDS = ("auto", "eager", "compile")
_TERMINATIONS = ("hard", "soft")
_MODEL_CHECKS = ("warn", "strict", "off")


#: ``AdaptConfig``'s defaults before issue 20 where they differ from today's (besides the step size, which
#: every record names): what a settings record written then means by the fields it leaves out.
LEGACY_DEFAULTS: dict[str, Any] = {"persistence": "persistent", "gate": "off", "max_drift": None, "termination": "hard"}

#: Trust-region and monitor fields that settings records (result rows, zoo tuned records) name only when
#: they are set: a record that leaves one out ran without it, whatever ``AdaptConfig``'s default is today.
NAMED_WHEN_SET: tuple[str, ...] = ("max_drift", "max_action_change", "max_model_error")


def record_defaults(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a settings record means by the ``AdaptConfig`` fields it leaves out, where that is not today's
    default: ``None`` for :data:`NAMED_WHEN_SET`, and :data:`LEGACY_DEFAULTS` for a record from before issue 20
    (one that names no ``termination``). Apply as ``AdaptConfig(**{**record_defaults(r), **r})``.

    :param record: the fields a row or a zoo entry stored.
    """
    return {**{k: None for k in NAMED_WHEN_SET}, **(LEGACY_DEFAULTS if "termination" not in record else {})}


class FieldChecks:
    """The field checks the frozen configs share (``AdaptConfig``, ``ImproveConfig``): each raises a
    ``ValueError`` naming the field, its value and what it must be."""

    def _check_int(self, name: str, minimum: int) -> None:
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r} must be an int >= {minimum}")

    def _check_positive(self, name: str, example: str) -> None:
        value = getattr(self, name)
        if not finite_number(value) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a finite float > 0 ({example})")

    def _check_optional_positive(self, name: str, tail: str) -> None:
        """``None``, or a finite float > 0; ``tail`` ends the message (what the unit is, what ``None`` means)."""
        value = getattr(self, name)
        if value is not None and (not finite_number(value) or value <= 0):
            raise ValueError(f"{name}={value!r} must be a finite float > 0{tail}")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f"{name}={value!r} is unknown; choose one of {list(choices)}")


def finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class AdaptConfig(FieldChecks):
    """Settings of the per-step policy optimisation (METHOD.md section 3).

    The defaults are the safety layer's (issue 20, ``docs/safety.md``): one setting for every dataset, chosen
    on tuning seeds with environments left out (step 1e-4, ``reset_each_step``, the paired gate at two
    standard errors, soft termination, a 5% parameter trust region, and an action trust region of 0.2): on
    six tuning seeds of nine datasets no paired episode lost more than 2.4 normalized points, where the same
    setting without the action trust region lost one Walker2d episode by 93 (a fall). The library's earlier
    untuned setting (step 1e-4, persistent, no gate, a hard termination mask) lost up to 52 points.

    :param horizon: imagined rollout length ``H``.
    :param particles: rollouts per env ``M``, each with its own fixed noise.
    :param steps: gradient steps ``E`` per real env step; ``0`` gives the base policy's action exactly.
    :param step_size: ``alpha`` in ``psi <- psi + alpha * grad J`` (the paper's 1e-3 is too large for our bundles).
    :param optimizer: ``"sgd"`` (plain gradient ascent, as in the paper) or ``"adam"`` (moments are
        fresh at every real step, since each step is a new objective with a new noise bank).
    :param adam_betas: Adam's ``(beta1, beta2)``.
    :param adam_eps: Adam's epsilon.
    :param discount: ``gamma`` of the imagined return.
    :param grad_clip: clip each env's gradient to this global L2 norm; ``None`` (paper) disables it.
    :param noise_seed: seed of env ``0``'s noise generator; env ``i`` of a vectorised call uses
        ``noise_seed + i``, so a single-env wrapper seeded ``noise_seed + i`` reproduces env ``i``.
    :param persistence: ``"reset_each_step"`` (default) starts every step from the pretrained parameters;
        ``"persistent"`` (the paper) carries adapted parameters to the next step and resets them on
        ``episode_start``; untuned it lost 39-52 points on three of our datasets (``docs/safety.md``).
    :param device: ``"auto"`` (the policy's own device) or an explicit torch device string.
    :param gate: acceptance gate, ``"paired"`` (default, below), ``"off"`` (the paper), ``"held_out"`` (keep the step's update only if it
        raises J on a second, held-out noise bank) or ``"disagreement"`` (keep it only where the world
        model's ``disagreement(s, a)`` along the adapted rollout is at most ``gate_max_disagreement``).
        ``"paired"`` is the acceptance test of the safety layer: on a second, held-out noise bank each particle's
        imagined return under the adapted policy is paired with the same particle's under the **pretrained**
        policy; the adapted action is executed only when the mean paired gain exceeds ``gate_margin`` plus
        ``gate_z`` standard errors (the margin grows with the model's disagreement across particles), else
        the base action is, and this call's update is undone.
    :param gate_margin: the held-out gate demands ``J_adapted > J_start + gate_margin``; the paired gate a mean
        paired gain above ``gate_margin + gate_z * SE``.
    :param gate_z: standard errors of the paired gain the ``"paired"`` gate demands (``0``: any mean gain).
    :param gate_max_disagreement: threshold of the disagreement gate (required by it).
    :param max_action_change: a trust region on what is executed: each coordinate of the returned action
        differs from the base policy's action at the same observation by at most this much, in ``[-1, 1]``
        units (the squashed policy's own: SB3's SAC/TD3/DDPG and the zoo's actors; for a policy that acts
        in env units, such as d3rlpy's, this fraction of the Box's half-width). Default ``0.2``, a tenth of
        the action range (safety layer, round 2: on tuning seeds it was the one candidate with no
        catastrophic episode, ``docs/safety.md``). ``None`` (the paper: no trust region, a limitation it
        states) disables it; ``0`` returns the base action. It clips the executed action only: the adapted
        parameters are unchanged, so with ``persistence="persistent"`` they may still drift (``max_drift``
        bounds that).
    :param max_drift: a trust region in parameter space toward the pretrained weights: after every ascent
        step, env ``i``'s parameters are projected back onto the ball ``||psi - psi_0|| <= max_drift *
        ||psi_0||`` (L2 over all adapted parameters, relative to the pretrained norm), so however many steps
        ``persistent`` mode accumulates over an episode, the policy stays that close to the data's policy.
        ``None``: no bound (the paper).
    :param termination: how predicted terminations weigh the imagined return. ``"hard"``: rewards count until
        the termination head's probability crosses one half (no gradient through the event); ``"soft"``:
        each reward and the terminal value are also weighted by the predicted probability of having survived
        so far, ``prod_k (1 - p_term(s~_k))``, a differentiable discount that lets the gradient steer away from
        falls (needs the model's ``termination_probability``; models without it are treated as ``"hard"``).
    :param model_check: at construction, compare the world model's recorded held-out accuracy with the limits
        of ``itpo_wrap.world_model.trust`` (one-step error, dimensions worse than their mean, reward error,
        termination recall): ``"warn"`` names the failed numbers in a warning, ``"strict"`` refuses the model
        (``ValueError``), ``"off"`` skips the check. Models that record no accuracy are not judged.
    :param max_model_error: the reality check (``itpo_wrap.reality``): after each executed action the wrapper
        scores the world model's prediction of the real next state (zero noise; RMS over dimensions of the
        error in state stds, the units of its held-out ``one_step_rmse``); an env whose last transition the
        model missed by more than this executes the base policy's action (its update undone) until the model
        is right again. It is the one safety part judged by the env rather than by the model. Needs the
        model's ``obs_std`` (without it the check is off, with a warning) and consecutive calls to be
        consecutive env steps: pass ``episode_start`` (SB3's loops do), else the first step of an episode
        is compared with the last state of the previous one and acts as the base. ``None``: no check.
    :param track_j_after: evaluate J once more after the last step (no gradient) for diagnostics; one extra
        forward, about 5 to 9% of a call at E = 5.
    :param time_budget_ms: a latency budget per ``predict`` call, in milliseconds from the call's start:
        no further ascent step starts once it is spent, so a call is never late by more than one step (the
        one running when the budget ran out), and a budget spent before the first step returns the action
        of the parameters the call started from (the base action unless ``persistent`` mode carried an
        adapted policy over). ``last_info[i]["adapt_steps"]`` reports the steps taken. ``None`` (default):
        always ``steps`` steps. A budget makes results depend on the machine's speed, so leave it off for
        reproducible experiments.
    :param backend: how the ascent step runs (``itpo_wrap.step``): ``"eager"`` runs it as written (the
        reference: always available, no start-up cost); ``"compile"`` runs it through ``torch.compile`` as
        one graph per batch shape (forward, backward and update), 2-4x faster per call on a CPU once
        compiled, at a one-off compile of one to a few minutes per shape that inductor caches on disk, so
        later processes start in seconds; ``"auto"`` (default): ``"compile"`` where the compiler has what
        it needs (a C++ compiler on CPU, Triton on CUDA), else ``"eager"``. A world model the compiler
        cannot capture whole falls back to eager with a warning. ``docs/latency.md`` has the figures.
    """

    horizon: int = 5
    particles: int = 8
    steps: int = 5
    step_size: float = 1e-4
    optimizer: Optimizer = "sgd"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    discount: float = 0.99
    grad_clip: float | None = None
    noise_seed: int = 0
    persistence: Persistence = "reset_each_step"
    device: str = "auto"
    gate: Gate = "paired"
    gate_margin: float = 0.0
    gate_max_disagreement: float | None = None
    max_action_change: float | None = 0.2
    track_j_after: bool = True
    time_budget_ms: float | None = None
    backend: BackendName = "auto"
    gate_z: float = 2.0
    max_drift: float | None = 0.05
    termination: Termination = "soft"
    model_check: ModelCheck = "warn"
    max_model_error: float | None = None

    def __post_init__(self) -> None:
        self._check_int("horizon", 1)
        self._check_int("particles", 1)
        self._check_int("steps", 0)
        if not isinstance(self.noise_seed, int) or isinstance(self.noise_seed, bool) or self.noise_seed < 0:
            raise ValueError(f"noise_seed={self.noise_seed!r} must be a non-negative int")
        if not finite_number(self.step_size) or self.step_size <= 0:
            raise ValueError(f"step_size={self.step_size!r} must be a finite float > 0 (the default is 1e-4)")
        if not finite_number(self.discount) or not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount={self.discount!r} must be in (0, 1] (0.99 for MuJoCo)")
        self._check_optional_positive("grad_clip", ", or None to disable clipping")
        for name, choices in (("optimizer", _OPTIMIZERS), ("persistence", _PERSISTENCE), ("gate", _GATES),
                              ("backend", _BACKENDS), ("termination", _TERMINATIONS), ("model_check", _MODEL_CHECKS)):
            self._check_choice(name, choices)
        if not finite_number(self.gate_z) or self.gate_z < 0:
            raise ValueError(f"gate_z={self.gate_z!r} must be a finite float >= 0 (standard errors, e.g. 1.0)")
        self._check_optional_positive("max_model_error", " (state-std units, e.g. 0.3), or None to adapt whatever "
                                      "the model's error on real transitions")
        self._check_optional_positive("max_drift", " (a fraction of the pretrained parameters' L2 norm, e.g. 0.05), "
                                      "or None for no bound")
        b1, b2 = self.adam_betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"adam_betas={self.adam_betas!r} must both be in [0, 1), e.g. (0.9, 0.999)")
        if not finite_number(self.adam_eps) or self.adam_eps <= 0:
            raise ValueError(f"adam_eps={self.adam_eps!r} must be a finite float > 0")
        if not finite_number(self.gate_margin):
            raise ValueError(f"gate_margin={self.gate_margin!r} must be a finite float")
        if self.gate == "disagreement" and (
            self.gate_max_disagreement is None or not finite_number(self.gate_max_disagreement)
        ):
            raise ValueError(
                f"gate='disagreement' needs a finite gate_max_disagreement, got {self.gate_max_disagreement!r}"
            )
        if self.max_action_change is not None and (
            not finite_number(self.max_action_change) or self.max_action_change < 0
        ):
            raise ValueError(
                f"max_action_change={self.max_action_change!r} must be a finite float >= 0 (policy output units, "
                "e.g. 0.1 on a [-1, 1] action), or None for no trust region"
            )
        self._check_optional_positive("time_budget_ms", " (milliseconds per predict call, e.g. 20.0), or None for "
                                      "no budget")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device={self.device!r} must be 'auto' or a torch device string such as 'cpu'")

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values, for result rows and checkpoints."""
        return dataclasses.asdict(self)
