"""itpo_wrap.rollout: seeded episodes and the paired statistics of the score experiment."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from itpo_lab.stats import paired_difference, t_quantile_975
from itpo_wrap.rollout import RecordingEnv, run_episode


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


def test_recording_env_keeps_the_episode_run_episode_ran() -> None:
    """RecordingEnv: the columns of the episode run_episode just ran (obs one longer, the env's own actions)."""
    env = RecordingEnv(gym.make("Pendulum-v1"))

    def predict(obs, state=None, episode_start=None, deterministic=True):
        return (-obs[:, :1]).astype(np.float32), state

    for cap in (None, 9):
        ep = run_episode(predict, env, seed=3, max_steps=cap)
        cols = env.episode()
        assert len(cols["observations"]) == ep.length + 1 and len(cols["actions"]) == ep.length
        assert sum(cols["rewards"].tolist()) == ep.episode_return  # the same float sum, in the same order
        np.testing.assert_array_equal(cols["actions"], -cols["observations"][:-1, :1])
        assert cols["truncations"][-1] == (cap is None) and not cols["terminations"].any()
    env.close()


def test_dataset_recipe_episodes_equal_a_plain_loop() -> None:
    """The lab's dataset recipes run in run_episode: the same arrays as a plain seeded loop, bit for bit."""
    from itpo_lab.data.collect import random_episodes

    episodes = random_episodes("Hopper-v5", 300, seed=4)
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(4)
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    for i, ep in enumerate(episodes):
        obs, _ = env.reset(seed=4 + i)
        cols: dict[str, list] = {"observations": [obs], "actions": [], "rewards": [], "terminations": [],
                                 "truncations": []}
        done = False
        while not done:
            action = np.asarray(rng.uniform(low, high), dtype=np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(cols, (obs, action, reward, terminated, truncated), strict=True):
                cols[key].append(value)
            done = terminated or truncated
        for key, values in cols.items():
            want = np.asarray(values)
            assert ep[key].dtype == want.dtype and np.array_equal(ep[key], want), (i, key)
        assert int(ep["seed"]) == 4 + i
    assert sum(len(ep["actions"]) for ep in episodes) >= 300
    env.close()
