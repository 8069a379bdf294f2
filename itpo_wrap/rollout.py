"""Seeded episodes of any SB3-style ``predict`` in a Gymnasium env, with time per step (what ``itpo tune``
and the score experiment run; the paired statistics over them are the lab's, :mod:`itpo_lab.stats`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    obs, _ = env.reset(seed=seed)
    total, steps, spent, fallbacks, state = 0.0, 0, 0.0, 0, None
    start = np.ones(1, dtype=bool)
    terminated = truncated = False
    while not (terminated or truncated):
        t0 = time.perf_counter()
        action, state = predict(np.asarray(obs)[None], state=state, episode_start=start, deterministic=deterministic)
        spent += time.perf_counter() - t0
        if info_fn is not None:
            fallbacks += sum(bool(row.get("fallback")) for row in info_fn())
        start = np.zeros(1, dtype=bool)
        obs, reward, terminated, truncated, _ = env.step(np.asarray(action)[0])
        total += float(reward)
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    return Episode(seed=seed, episode_return=total, length=steps, ms_per_step=1e3 * spent / max(steps, 1),
                   terminated=bool(terminated), fallbacks=fallbacks)
