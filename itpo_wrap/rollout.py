"""Seeded episodes of any SB3-style ``predict`` in a Gymnasium env, with time per step (what ``itpo tune``
and the score experiment run; the paired statistics over them are the lab's, :mod:`itpo_lab.stats`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PredictFn = Callable[..., tuple[np.ndarray, Any]]


@dataclass(frozen=True)
class Episode:
    """One finished episode.

    :ivar seed: the ``env.reset(seed=...)`` seed.
    :ivar episode_return: undiscounted return.
    :ivar length: steps taken.
    :ivar ms_per_step: mean wall-clock milliseconds of one ``predict`` call.
    :ivar terminated: ended by the env's termination (a fall), not the time limit.
    :ivar fallbacks: steps on which the wrapper fell back to the base action (0 for other policies).
    """

    seed: int
    episode_return: float
    length: int
    ms_per_step: float
    terminated: bool
    fallbacks: int = 0

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class RecordingEnv:
    """A Gymnasium env as :func:`run_episode` steps it, keeping the current episode as D4RL/Minari columns:
    ``observations`` (the reset one first, so one more than steps), ``actions`` (as the env received them),
    ``rewards``, ``terminations``, ``truncations``. ``reset`` starts a new episode.

    :param env: the env to step (not vectorised).
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.columns: dict[str, list[Any]] = {}

    def reset(self, **kwargs: Any) -> tuple[Any, Any]:
        obs, info = self.env.reset(**kwargs)
        self.columns = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, Any]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                           ("terminations", terminated), ("truncations", truncated)):
            self.columns[key].append(value)
        return obs, reward, terminated, truncated, info

    def episode(self) -> dict[str, np.ndarray]:
        """The current episode's columns as arrays."""
        return {key: np.asarray(values) for key, values in self.columns.items()}

    def close(self) -> None:
        self.env.close()


def run_episode(predict: PredictFn, env: Any, seed: int, *, deterministic: bool = True,
                info_fn: Callable[[], Sequence[dict[str, Any]]] | None = None,
                max_steps: int | None = None) -> Episode:
    """Run one episode from ``env.reset(seed=seed)``, calling ``predict`` as SB3's ``evaluate_policy``
    does: batched observation of one env, ``episode_start`` true on the first step.

    :param predict: ``predict(obs, state=None, episode_start=..., deterministic=...) -> (actions, state)``.
    :param env: a Gymnasium env (not vectorised).
    :param seed: reset seed.
    :param deterministic: passed to ``predict``.
    :param info_fn: returns the wrapper's ``last_info`` after each call (counts fallbacks); optional.
    :param max_steps: stop early (for smoke tests); the env's own time limit otherwise.
    """
    *_, episode = episode_rungs(predict, env, seed, (max_steps,), deterministic=deterministic, info_fn=info_fn)
    return episode


def episode_rungs(predict: PredictFn, env: Any, seed: int, caps: Sequence[int | None], *,
                  deterministic: bool = True,
                  info_fn: Callable[[], Sequence[dict[str, Any]]] | None = None) -> Iterator[Episode]:
    """One episode, yielded as it stands at each step cap: the episode :func:`run_episode` runs with
    ``max_steps=caps[0]``, then, continued, the one it runs with ``max_steps=caps[1]``, and so on (the
    rungs of a search that stops poor settings on truncated episodes, :mod:`itpo_wrap.tune_search`). An
    episode that ends before a cap is yielded as it ended, once per remaining cap.

    :param predict: as for :func:`run_episode`.
    :param env: a Gymnasium env (not vectorised).
    :param seed: reset seed.
    :param caps: increasing step caps, each >= 1; the last may be ``None`` (the env's own time limit).
    :param deterministic: passed to ``predict``.
    :param info_fn: as for :func:`run_episode`.
    """
    caps = list(caps)
    numbers = [c for c in caps if c is not None]
    if not caps or None in caps[:-1] or any(c < 1 for c in numbers) or numbers != sorted(set(numbers)):
        raise ValueError(f"caps={caps}: pass increasing step caps >= 1, the last one may be None (no cap)")
    obs, _ = env.reset(seed=seed)
    total, steps, spent, fallbacks, state = 0.0, 0, 0.0, 0, None
    start = np.ones(1, dtype=bool)
    terminated = truncated = False
    for cap in caps:
        while not (terminated or truncated) and (cap is None or steps < cap):
            t0 = time.perf_counter()
            action, state = predict(np.asarray(obs)[None], state=state, episode_start=start,
                                    deterministic=deterministic)
            spent += time.perf_counter() - t0
            if info_fn is not None:
                fallbacks += sum(bool(row.get("fallback")) for row in info_fn())
            start = np.zeros(1, dtype=bool)
            obs, reward, terminated, truncated, _ = env.step(np.asarray(action)[0])
            total += float(reward)
            steps += 1
        yield Episode(seed=seed, episode_return=total, length=steps, ms_per_step=1e3 * spent / max(steps, 1),
                      terminated=bool(terminated), fallbacks=fallbacks)
