"""Roll out a torch actor in a Gymnasium env: returns and D4RL-style normalized scores.

Deterministic actions, one env, episode ``i`` reset with ``seed + i`` so two evaluations with the
same seed meet the same initial states (paired comparisons). The actor maps raw observations to
``[-1, 1]``; it acts through ``itpo_wrap.adapters.actor_predict`` (SB3's ``predict`` contract, actions
mapped to the Box as SB3 maps them) and its episodes run in the product's episode runner,
``itpo_wrap.rollout.run_episode``: the lab has no episode loop of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from itpo_wrap.adapters import actor_predict
from itpo_wrap.rollout import Episode, RecordingEnv, run_episode

ActorLike = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-episode returns and lengths; ``normalized_scores`` on the D4RL x100 scale (NaN without refs)."""

    returns: np.ndarray
    lengths: np.ndarray
    normalized_scores: np.ndarray
    seed: int

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def mean_score(self) -> float:
        return float(np.mean(self.normalized_scores))

    def row(self) -> dict[str, float]:
        """Summary as namespaced CSV fields (``eval/...``)."""
        return {
            "eval/return_mean": self.mean_return,
            "eval/return_std": float(np.std(self.returns)),
            "eval/score_mean": self.mean_score,
            "eval/score_std": float(np.std(self.normalized_scores)),
            "eval/length_mean": float(np.mean(self.lengths)),
        }


def normalize_return(returns: np.ndarray, ref_min_score: float | None, ref_max_score: float | None) -> np.ndarray:
    """D4RL's normalized score ``100 * (R - R_random) / (R_expert - R_random)`` (Fu et al. 2020) via
    ``itpo_wrap.data.normalized_score``; NaN when either reference is unknown."""
    from itpo_wrap.data.minari import normalized_score

    returns = np.asarray(returns, dtype=np.float64)
    if ref_min_score is None or ref_max_score is None:
        return np.full_like(returns, np.nan)
    return np.asarray(normalized_score(returns, ref_min_score, ref_max_score), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Step:
    """One env step of :func:`rollout`: what the actor saw and did, and what the env returned.

    :param episode: episode index ``i`` (reset with ``seed + i``).
    :param obs: the observation as the actor received it, ``(1, obs_dim)`` float32.
    :param action: the actor's output, ``(1, act_dim)`` in ``[-1, 1]`` (before the env's rescaling).
    :param reward: the env's reward for this step.
    :param terminated: the env ended the episode (a true terminal state).
    :param truncated: a time limit (the env's or ``max_episode_steps``) ended it.
    """

    episode: int
    obs: torch.Tensor
    action: torch.Tensor
    reward: float
    terminated: bool
    truncated: bool


def rollout(
    actor: ActorLike,
    env: str | Callable[[], Any],
    episodes: int,
    seed: int,
    max_episode_steps: int | None = None,
) -> Generator[Step, None, None]:
    """Step ``actor`` deterministically through ``episodes`` episodes, yielding one :class:`Step` at a time.

    The episodes :func:`evaluate_actor` counts and ``calibration.value_calibration`` reads, so the two
    always see the same ones: env made once, episode ``i`` run by ``itpo_wrap.rollout.run_episode`` from
    ``seed + i``. An episode's steps are yielded once it has finished. The env is closed and a module
    actor's train/eval mode restored when the generator finishes or is closed.

    :param actor: raw ``(1, obs_dim)`` float32 observations -> ``(1, act_dim)`` actions in ``[-1, 1]``.
    :param env: a Gymnasium id or a zero-argument factory returning an env.
    :param episodes: number of episodes, at least 1.
    :param seed: first reset seed.
    :param max_episode_steps: optional cap; reaching it reports ``truncated``.
    :return: a generator of :class:`Step` (close it to stop early).
    """
    # validated here, eagerly; the env is made lazily inside the generator so that a generator closed
    # before its first step leaves nothing open
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be at least 1")
    return _steps(actor, env, episodes, seed, max_episode_steps)


def _steps(actor: ActorLike, env: str | Callable[[], Any], episodes: int, seed: int,
           max_episode_steps: int | None) -> Generator[Step, None, None]:
    with contextlib.closing(_episodes(actor, env, episodes, seed, max_episode_steps)) as runs:
        for _, steps in runs:
            yield from steps


def _episodes(actor: ActorLike, env: str | Callable[[], Any], episodes: int, seed: int,
              max_episode_steps: int | None) -> Generator[tuple[Episode, list[Step]], None, None]:
    """Each episode as ``run_episode`` reports it, with its steps (see :func:`rollout`)."""
    import gymnasium as gym

    made = gym.make(env) if isinstance(env, str) else env()
    space = made.action_space
    if not isinstance(space, gym.spaces.Box):
        made.close()
        raise ValueError(f"rolling out an actor needs a Box action space (continuous actions); the env has {space}")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def watched(obs: torch.Tensor) -> torch.Tensor:
        action = actor(obs)
        seen.append((obs, action))
        return action

    predict = actor_predict(watched, space.low.astype(np.float32), space.high.astype(np.float32))
    recorder = RecordingEnv(made)
    was_training = getattr(actor, "training", False)
    if isinstance(actor, torch.nn.Module):
        actor.eval()
    try:
        for i in range(episodes):
            seen.clear()
            episode = run_episode(predict, recorder, seed + i, max_steps=max_episode_steps)
            env_steps = zip(*(recorder.columns[k] for k in ("rewards", "terminations", "truncations")), strict=True)
            steps = []
            for k, ((obs, action), (reward, terminated, truncated)) in enumerate(zip(seen, env_steps, strict=True)):
                capped = max_episode_steps is not None and k + 1 >= max_episode_steps
                steps.append(Step(i, obs, action, float(reward), bool(terminated), bool(truncated) or capped))
            yield episode, steps
    finally:
        made.close()
        if isinstance(actor, torch.nn.Module) and was_training:
            actor.train()


def evaluate_actor(
    actor: ActorLike,
    env: str | Callable[[], Any],
    episodes: int = 10,
    seed: int = 0,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    max_episode_steps: int | None = None,
) -> EvalResult:
    """Run ``episodes`` deterministic episodes of ``actor``.

    :param actor: any callable (e.g. ``TanhActor``) mapping a ``(1, obs_dim)`` float32 tensor of raw
        observations to ``(1, act_dim)`` actions in ``[-1, 1]``.
    :param env: a Gymnasium id (``"Hopper-v5"``) or a zero-argument factory returning an env.
    :param episodes: number of episodes (10 in D4RL/CORL reporting).
    :param seed: episode ``i`` is reset with ``seed + i``.
    :param ref_min_score: random-policy return for the normalized score.
    :param ref_max_score: expert return for the normalized score.
    :param max_episode_steps: optional cap (tests); the env's own TimeLimit applies anyway.
    :return: an :class:`EvalResult`.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be at least 1")
    with contextlib.closing(_episodes(actor, env, episodes, seed, max_episode_steps)) as runs:
        done = [episode for episode, _ in runs]
    returns = np.array([e.episode_return for e in done], dtype=np.float64)
    lengths = np.array([e.length for e in done], dtype=np.int64)
    return EvalResult(returns, lengths, normalize_return(returns, ref_min_score, ref_max_score), seed)
