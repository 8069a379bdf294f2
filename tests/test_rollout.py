"""itpo_wrap.rollout: seeded episodes and the paired statistics of the score experiment."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from itpo_lab.stats import paired_difference, t_quantile_975
from itpo_wrap.rollout import run_episode


def test_paired_difference_matches_hand_computation() -> None:
    treat, ctrl = [3.0, 5.0, 4.0, 6.0], [1.0, 4.0, 4.0, 3.0]
    d = np.array([2.0, 1.0, 0.0, 3.0])
    r = paired_difference(treat, ctrl)
    half = 3.18245 * d.std(ddof=1) / math.sqrt(4)  # t_{0.975, 3}
    assert r.mean == pytest.approx(1.5) and r.n == 4 and r.wins == 3
    assert (r.ci_low, r.ci_high) == pytest.approx((1.5 - half, 1.5 + half), abs=1e-5)
    # pairing removes the shared offset: a constant shift has a zero-width interval
    r2 = paired_difference([10.0, 20.0, 30.0], [9.0, 19.0, 29.0])
    assert r2.mean == pytest.approx(1.0) and r2.half_width == pytest.approx(0.0)


def test_paired_difference_errors_and_quantiles() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no paired"):
        paired_difference([], [])
    assert math.isnan(paired_difference([1.0], [0.0]).ci_low)
    # scipy's exact quantiles (the printed tables round to 3 decimals; df = 500 is not the normal 1.960)
    assert t_quantile_975(9) == pytest.approx(2.262, abs=5e-4)
    assert t_quantile_975(500) == pytest.approx(1.965, abs=5e-4)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile_975(0)


def test_run_episode_is_seeded_and_follows_the_sb3_contract() -> None:
    env = gym.make("Pendulum-v1")
    calls: list[tuple[tuple[int, ...], bool]] = []

    def predict(obs, state=None, episode_start=None, deterministic=True):
        calls.append((obs.shape, bool(episode_start[0])))
        return -obs[:, :1], state  # a crude damping controller

    a = run_episode(predict, env, seed=3)
    b = run_episode(predict, env, seed=3)
    c = run_episode(predict, env, seed=4)
    assert a.length == 200 and not a.terminated and a.episode_return == b.episode_return != c.episode_return
    assert calls[0] == ((1, 3), True) and all(not start for _, start in calls[1:200])
    assert a.ms_per_step > 0 and a.fallbacks == 0
    short = run_episode(predict, env, seed=3, max_steps=7, info_fn=lambda: [{"fallback": True}])
    assert short.length == 7 and short.fallbacks == 7
