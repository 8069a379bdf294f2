"""Fixed reference scores of our datasets: what 0 and 100 of a normalized score mean.

Normalized score = ``100 * (R - ref_min_score) / (ref_max_score - ref_min_score)`` (D4RL's formula, x100).
The references are **ours**, not D4RL's: 0 is the mean return of uniform random actions and 100 the mean
return of our own CPU-budget SB3 SAC expert (``policies/behavior/<env>/expert.zip``) on the Gymnasium
MuJoCo v5 envs. They were measured once, by ``itpo-lab collect --env <env> --levels all --summary`` with its
defaults (seed 0, at least 200,000 transitions per sampled level), and are recorded in
``policies/behavior/<env>/datasets.json`` (the ``random`` and ``expert`` rows' ``return_mean``) and in every
zoo entry. They are constants from then on: a rerun with another budget or seed must not move the scale
(one did: 2,684.5 instead of 2,781.9 for Hopper), so :func:`itpo_lab.data.collect.collect` writes these
values and only logs what it measures.

Measurement, per env (numbers in :data:`REFERENCE_SCORES`):

- ``ref_min_score``: uniform actions over the action Box from ``numpy.random.default_rng(0)``; episode
  ``i`` resets with seed ``i``; whole episodes until at least 200,000 transitions.
- ``ref_max_score``: non-deterministic samples (``predict(deterministic=False)``) of the expert checkpoint,
  ``torch.manual_seed(1_000_000)``, one torch thread; episode ``i`` resets with seed ``1_000_000 + i``;
  whole episodes until at least 200,000 transitions.

D4RL's references (``d4rl/infos.py``, the same for its v0/v1/v2 gym-mujoco datasets) stand beside ours
for reading only: they belong to other envs (gym MuJoCo v2-era) and another expert, so our scores do not
compare with D4RL tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

# The base seed and transition floor of the measuring run (``CollectConfig`` defaults at the time);
# ``collect`` offsets the expert's seeds by this much so the levels never share env resets.
MEASURED_SEED = 0
MEASURED_TRANSITIONS = 200_000
EXPERT_SEED_OFFSET = 1_000_000


@dataclasses.dataclass(frozen=True)
class ReferenceScores:
    """The fixed reference returns of one env, how they were measured, and D4RL's beside them.

    :param env: short env name, e.g. ``"hopper"``.
    :param env_id: the Gymnasium id the returns were measured on, e.g. ``"Hopper-v5"``.
    :param ref_min_score: mean return of uniform random actions (normalized score 0).
    :param ref_max_score: mean return of our SAC expert's stochastic samples (normalized score 100).
    :param random_episodes: episodes averaged for ``ref_min_score``.
    :param random_transitions: transitions in those episodes.
    :param expert_step: training step of the expert checkpoint (``policies/behavior/<env>/expert.zip``).
    :param expert_episodes: episodes averaged for ``ref_max_score``.
    :param expert_transitions: transitions in those episodes.
    :param d4rl_ref_min_score: D4RL's random reference return for the same task (``d4rl/infos.py``).
    :param d4rl_ref_max_score: D4RL's expert reference return for the same task (``d4rl/infos.py``).
    """

    env: str
    env_id: str
    ref_min_score: float
    ref_max_score: float
    random_episodes: int
    random_transitions: int
    expert_step: int
    expert_episodes: int
    expert_transitions: int
    d4rl_ref_min_score: float
    d4rl_ref_max_score: float

    def __post_init__(self) -> None:
        if not self.ref_max_score > self.ref_min_score:
            raise ValueError(f"{self.env}: ref_max_score={self.ref_max_score} must exceed "
                             f"ref_min_score={self.ref_min_score}")

    @property
    def scores(self) -> tuple[float, float]:
        """``(ref_min_score, ref_max_score)``, the pair ``zoo_write.add_policy(ref_scores=...)`` takes."""
        return self.ref_min_score, self.ref_max_score

    def measurement(self) -> str:
        """One sentence on how ``ref_min_score`` and ``ref_max_score`` were measured."""
        return (
            f"{self.env_id}: ref_min_score {self.ref_min_score:.1f} = mean return of {self.random_episodes:,} "
            f"episodes ({self.random_transitions:,} transitions) of uniform random actions (reset seeds "
            f"{MEASURED_SEED}.., NumPy seed {MEASURED_SEED}); ref_max_score {self.ref_max_score:.1f} = mean return "
            f"of {self.expert_episodes:,} episodes ({self.expert_transitions:,} transitions) sampled stochastically "
            f"from our SB3 SAC expert (policies/behavior/{self.env}/expert.zip, {self.expert_step:,} training "
            f"steps; reset seeds {MEASURED_SEED + EXPERT_SEED_OFFSET:,}.., torch seed "
            f"{MEASURED_SEED + EXPERT_SEED_OFFSET:,})."
        )


# Exact float64 values of policies/behavior/<env>/datasets.json (random / expert return_mean), which every
# committed dataset summary and zoo entry stores; tests/test_reference_scores.py holds them equal.
# D4RL's values: Farama-Foundation/D4RL d4rl/infos.py, REF_MIN_SCORE / REF_MAX_SCORE['<env>-random-v0'].
REFERENCE_SCORES: Mapping[str, ReferenceScores] = MappingProxyType({
    "halfcheetah": ReferenceScores(
        env="halfcheetah", env_id="HalfCheetah-v5",
        ref_min_score=-282.67165779817776, ref_max_score=5968.070479545608,
        random_episodes=200, random_transitions=200_000,
        expert_step=200_000, expert_episodes=200, expert_transitions=200_000,
        d4rl_ref_min_score=-280.178953, d4rl_ref_max_score=12135.0,
    ),
    "hopper": ReferenceScores(
        env="hopper", env_id="Hopper-v5",
        ref_min_score=17.722237026792133, ref_max_score=2781.906217863273,
        random_episodes=8_986, random_transitions=200_013,
        expert_step=180_000, expert_episodes=208, expert_transitions=200_398,
        d4rl_ref_min_score=-20.272305, d4rl_ref_max_score=3234.3,
    ),
    "walker2d": ReferenceScores(
        env="walker2d", env_id="Walker2d-v5",
        ref_min_score=1.7344220641709664, ref_max_score=3268.2269291274933,
        random_episodes=9_441, random_transitions=200_004,
        expert_step=210_000, expert_episodes=215, expert_transitions=200_454,
        d4rl_ref_min_score=1.629008, d4rl_ref_max_score=4592.3,
    ),
})


class UnknownEnvError(KeyError):
    """An env without fixed reference scores (a ``KeyError`` whose message reads as a sentence)."""

    def __str__(self) -> str:
        # KeyError's own __str__ quotes its argument, which garbles a sentence
        return str(self.args[0]) if self.args else ""


def reference_scores(env: str) -> ReferenceScores:
    """The fixed reference scores of ``env``.

    :param env: short name (``"hopper"``) or Gymnasium id (``"Hopper-v5"``).
    :return: the env's :class:`ReferenceScores`.
    :raises KeyError: ``env`` has no fixed references; the message names it and the known envs.
    """
    if env in REFERENCE_SCORES:
        return REFERENCE_SCORES[env]
    for ref in REFERENCE_SCORES.values():
        if env == ref.env_id:
            return ref
    known = ", ".join(f"{name} ({ref.env_id})" for name, ref in REFERENCE_SCORES.items())
    raise UnknownEnvError(
        f"no fixed reference scores for env {env!r}; known: {known}. A new env needs its random and expert "
        f"returns measured once (itpo-lab collect --summary) and added to itpo_lab/data/reference.py"
    )


def normalization_note() -> str:
    """One paragraph for docs: what 0 and 100 mean here, D4RL's references beside ours, and not to compare."""
    refs = list(REFERENCE_SCORES.values())
    ours = ", ".join(f"{r.env_id} {r.ref_min_score:.1f} / {r.ref_max_score:.1f}" for r in refs)
    d4rl = ", ".join(f"{r.env} {r.d4rl_ref_min_score:.1f} / {r.d4rl_ref_max_score:.1f}" for r in refs)
    share = ", ".join(f"{r.ref_max_score / r.d4rl_ref_max_score:.0%} ({r.env})" for r in refs)
    steps = sorted(r.expert_step for r in refs)
    return (
        "Normalized score = 100 x (return - ref_min_score) / (ref_max_score - ref_min_score), with fixed "
        "reference returns of our own (`itpo_lab/data/reference.py`): 0 is the mean return of uniform random "
        "actions and 100 the mean return of our own CPU-budget SAC expert (stable-baselines3 SAC after "
        f"{steps[0]:,}-{steps[-1]:,} env steps, stochastic actions), each measured once over at least "
        f"{MEASURED_TRANSITIONS:,} transitions (seed {MEASURED_SEED}) on the Gymnasium MuJoCo v5 envs; "
        f"random / expert: {ours}. D4RL's references (`d4rl/infos.py`, random / expert) are {d4rl}; our "
        f"expert returns {share} of D4RL's expert, on other env versions (v5, not D4RL's v2), so 100 here is "
        "not D4RL's 100: do not compare these scores with D4RL tables."
    )
