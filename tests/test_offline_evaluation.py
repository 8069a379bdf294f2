"""The lab's evaluation runs its episodes in the product's runner (``itpo_wrap.rollout.run_episode``): the
same episodes, step for step and bit for bit, as the plain loop it had before (written out below)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_lab.offline import evaluate_actor, rollout
from itpo_lab.offline.calibration import discounted_returns, value_calibration
from itpo_wrap.networks import TanhActor, TwinQ


def _reference(actor: Any, env_id: str, episodes: int, seed: int, cap: int | None) -> list[tuple]:
    """The lab's former episode loop: reset with seed + i, float32 obs, SB3's mapping, cap as truncation."""
    env = gym.make(env_id)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    rows = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        steps, done = 0, False
        while not done:
            obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
            with torch.no_grad():
                action = actor(obs_t)
            a = (low + 0.5 * (action.reshape(-1).numpy().astype(np.float32) + 1.0) * (high - low)).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(a)
            steps += 1
            truncated = bool(truncated) or (cap is not None and steps >= cap)
            done = bool(terminated) or truncated
            rows.append((i, obs_t.clone(), action, float(reward), bool(terminated), truncated))
    env.close()
    return rows


@pytest.mark.parametrize(("env_id", "obs_dim", "act_dim", "episodes", "seed", "cap"), [
    ("Pendulum-v1", 3, 1, 3, 7, None),   # full 200-step episodes, time limit truncation
    ("Pendulum-v1", 3, 1, 2, 3, 37),     # the cap truncates
    ("Hopper-v5", 11, 3, 3, 11, 300),    # a random actor falls: terminations
])
def test_same_episodes_as_the_plain_loop(env_id: str, obs_dim: int, act_dim: int, episodes: int, seed: int,
                                         cap: int | None) -> None:
    torch.manual_seed(seed)
    actor = TanhActor(obs_dim, act_dim, [16, 16]).eval()
    expected = _reference(actor, env_id, episodes, seed, cap)
    steps = list(rollout(actor, env_id, episodes=episodes, seed=seed, max_episode_steps=cap))
    assert len(steps) == len(expected)
    for got, want in zip(steps, expected, strict=True):
        assert (got.episode, got.reward, got.terminated, got.truncated) == (want[0], want[3], want[4], want[5])
        assert torch.equal(got.obs, want[1]) and torch.equal(got.action, want[2])
    result = evaluate_actor(actor, env_id, episodes=episodes, seed=seed, max_episode_steps=cap)
    returns = [sum(r[3] for r in expected if r[0] == i) for i in range(episodes)]
    lengths = [sum(1 for r in expected if r[0] == i) for i in range(episodes)]
    assert result.returns.tolist() == returns and result.lengths.tolist() == lengths  # exact, not approximate
    if env_id == "Hopper-v5":
        assert any(r[4] for r in expected)  # the case covers terminations


@torch.no_grad()
def test_calibration_reads_the_same_steps() -> None:
    """value_calibration's critic values and realised returns are those of the plain loop's steps, exactly."""
    torch.manual_seed(0)
    actor, critic = TanhActor(11, 3, [16, 16]).eval(), TwinQ(11, 3, [16, 16]).eval()
    calib = value_calibration(actor, critic, "Hopper-v5", episodes=3, seed=5, gamma=0.5)
    expected = _reference(actor, "Hopper-v5", 3, 5, None)
    predicted: list[float] = []
    realised: list[float] = []
    for i in range(3):
        episode = [r for r in expected if r[0] == i]
        assert episode[-1][4]  # a random actor falls: every state is compared (no time-limit tail dropped)
        predicted += [float(torch.min(*critic(r[1], r[2])).reshape(-1)[0]) for r in episode]
        realised += discounted_returns(np.array([r[3] for r in episode]), 0.5).tolist()
    assert calib.predicted.tolist() == predicted and calib.realised.tolist() == realised
