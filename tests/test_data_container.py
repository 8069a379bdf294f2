"""OfflineDataset invariants and normalizer round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itpo_wrap.data import OfflineDataset, RewardNormalizer, StateNormalizer


def _episodes(n: int = 4, t: int = 5) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"observations": rng.normal(size=(t + 1, 3)), "actions": rng.normal(size=(t, 2)),
             "rewards": rng.normal(size=t), "terminations": np.eye(t, dtype=bool)[-1] if i % 2 else np.zeros(t, bool),
             "truncations": np.zeros(t, bool)} for i in range(n)]


def test_episode_without_end_flag_becomes_truncated() -> None:
    data = OfflineDataset.from_episodes(_episodes())
    ends = [4, 9, 14, 19]
    assert data.truncations[ends].tolist() == [True, False, True, False]
    assert data.terminations[ends].tolist() == [False, True, False, True]


def test_split_by_episode_has_no_leak_and_covers_all() -> None:
    data = OfflineDataset.from_episodes(_episodes(10))
    train, hold = data.split_episodes(0.3, seed=1)
    assert set(np.unique(train.episode_ids)).isdisjoint(np.unique(hold.episode_ids))
    assert len(train) + len(hold) == len(data) and hold.num_episodes == 3


def test_mismatched_columns_are_refused() -> None:
    eps = _episodes(1)
    eps[0]["observations"] = eps[0]["observations"][:-1]
    with pytest.raises(ValueError, match="T\\+1"):
        OfflineDataset.from_episodes(eps)


def test_state_normalizer_round_trip_numpy_and_torch() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    x[:, 3] = 1.0  # constant dimension: std is floored, no division by zero
    norm = StateNormalizer.fit(x)
    z = norm.normalize(x)
    assert np.all(np.isfinite(z)) and abs(float(z[:, :3].mean())) < 1e-5
    np.testing.assert_allclose(norm.denormalize(z), x, atol=1e-5)
    zt = norm.normalize(torch.from_numpy(x))
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-6)
    restored = StateNormalizer.identity(4)
    restored.load_state_dict(norm.state_dict())
    np.testing.assert_array_equal(restored.normalize(x), z)
    with pytest.raises(ValueError, match="dim"):
        StateNormalizer.identity(3).load_state_dict(norm.state_dict())


def test_reward_normalizer_round_trip_and_modes() -> None:
    r = np.random.default_rng(0).normal(1.0, 4.0, size=1000)
    norm = RewardNormalizer.fit(r, mode="std")
    assert np.std(norm.normalize(r)) == pytest.approx(1.0, rel=1e-6)
    other = RewardNormalizer()
    other.load_state_dict(norm.state_dict())
    np.testing.assert_allclose(other.denormalize(other.normalize(r)), r)
    rr = RewardNormalizer.fit(r, mode="return_range", episode_returns=np.array([0.0, 500.0]))
    assert rr.scale == pytest.approx(2.0)
    with pytest.raises(ValueError, match="mode"):
        RewardNormalizer.fit(r, mode="minmax")
