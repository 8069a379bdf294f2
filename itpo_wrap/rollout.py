"""Seeded episodes of any SB3-style ``predict`` in a Gymnasium env, with time per step, and the paired
statistics the score experiment reports.

A paired comparison runs the base and the wrapped policy on the *same* env seeds, so the difference of
two episodes with one seed removes the start-state luck both share; its confidence interval is far
narrower than that of two independent means.
"""

from __future__ import annotations

import math
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


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile ``t_{0.975, df}`` (the half-width factor of a 95% interval).

    :param df: degrees of freedom, ``n - 1`` for ``n`` paired episodes.
    :return: ``scipy.stats.t.ppf(0.975, df)``; e.g. 2.262 for ``df = 9`` (10 seeds).
    """
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (at least two paired episodes)")
    # imported here, not at the top: scipy.stats takes ~1.5 s to import and every benchmarks/run.py process
    # imports this module for run_episode alone
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class PairedDifference:
    """``treatment - control`` over paired episodes: mean, sample std, 95% t interval, count."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    wins: int

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def paired_difference(treatment: Sequence[float], control: Sequence[float]) -> PairedDifference:
    """Paired difference with a 95% Student-t confidence interval.

    :param treatment: per-seed scores of the wrapped policy.
    :param control: per-seed scores of the base policy, same seeds in the same order.
    """
    t, c = np.asarray(treatment, np.float64), np.asarray(control, np.float64)
    if t.shape != c.shape or t.ndim != 1:
        raise ValueError(f"paired samples must be 1-D of equal length, got {t.shape} and {c.shape}")
    d = t - c
    n = d.size
    if n == 0:
        raise ValueError("no paired episodes")
    mean = float(d.mean())
    if n == 1:
        return PairedDifference(mean, float("nan"), float("nan"), float("nan"), 1, int(d[0] > 0))
    std = float(d.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return PairedDifference(mean, std, mean - half, mean + half, n, int((d > 0).sum()))
