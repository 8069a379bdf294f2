"""Paired statistics the score experiment reports.

A paired comparison runs the base and the wrapped policy on the *same* env seeds, so the difference of
two episodes with one seed removes the start-state luck both share; its confidence interval is far
narrower than that of two independent means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile ``t_{0.975, df}`` (the half-width factor of a 95% interval).

    :param df: degrees of freedom, ``n - 1`` for ``n`` paired episodes.
    :return: ``scipy.stats.t.ppf(0.975, df)``; e.g. 2.262 for ``df = 9`` (10 seeds).
    """
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (at least two paired episodes)")
    # imported here, not at the top: scipy.stats takes ~1.5 s to import
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
