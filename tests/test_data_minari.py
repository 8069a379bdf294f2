"""Minari round trip, episode-boundary semantics, and the offline not-found error."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from itpo_lab.data.collect import random_episodes
from itpo_wrap.data import DatasetNotFoundError, load_dataset, normalized_score, write_dataset


def _write(did: str, episodes: list[dict[str, np.ndarray]], env_id: str) -> None:
    write_dataset(did, episodes, env_id=env_id, ref_min_score=-10.0, ref_max_score=90.0,
                  algorithm_name="uniform random actions", description="test data")


def test_round_trip_preserves_every_array_and_metadata(minari_root: Path) -> None:
    episodes = random_episodes("Hopper-v5", transitions=150, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every metadata field filled: Minari must not warn
        _write("itpo/hopper/tiny-v0", episodes, "Hopper-v5")
    assert (minari_root / "itpo/hopper/tiny-v0/data").is_dir()
    data = load_dataset("itpo/hopper/tiny-v0")
    assert data.env_id == "Hopper-v5"
    assert (data.ref_min_score, data.ref_max_score) == (-10.0, 90.0)
    assert data.observations.dtype == np.float32 and data.actions.dtype == np.float32
    assert data.num_episodes == len(episodes)
    assert len(data) == sum(len(ep["actions"]) for ep in episodes)
    flat_obs = np.concatenate([ep["observations"][:-1] for ep in episodes]).astype(np.float32)
    flat_next = np.concatenate([ep["observations"][1:] for ep in episodes]).astype(np.float32)
    np.testing.assert_array_equal(data.observations, flat_obs)
    np.testing.assert_array_equal(data.next_observations, flat_next)
    np.testing.assert_allclose(data.episode_returns(), [ep["rewards"].sum() for ep in episodes], rtol=1e-5)
    # The same dataset loads by folder path too.
    by_path = load_dataset(minari_root / "itpo/hopper/tiny-v0")
    np.testing.assert_array_equal(by_path.actions, data.actions)


def test_terminating_env_marks_terminations_and_no_bootstrap() -> None:
    episodes = random_episodes("Hopper-v5", transitions=100, seed=0)
    assert all(ep["terminations"][-1] for ep in episodes), "random Hopper episodes end by falling"
    _write("itpo/hopper/term-v0", episodes, "Hopper-v5")
    data = load_dataset("itpo/hopper/term-v0")
    ends = np.flatnonzero(np.diff(data.episode_ids)) if data.num_episodes > 1 else np.array([], dtype=int)
    last_rows = np.append(ends, len(data) - 1)
    assert data.terminations[last_rows].all() and not data.truncations.any()
    assert data.terminations.sum() == len(episodes)
    assert data.dones[last_rows].tolist() == [1.0] * len(last_rows)
    # Within an episode next_obs is the following row's obs; across a boundary it is the terminal state,
    # not the next episode's reset state.
    inner = np.setdiff1d(np.arange(len(data) - 1), ends)
    np.testing.assert_array_equal(data.next_observations[inner], data.observations[inner + 1])
    for end, ep in zip(last_rows, episodes, strict=True):
        np.testing.assert_array_equal(data.next_observations[end], ep["observations"][-1].astype(np.float32))
    assert not data.next_action_valid[last_rows].any()
    np.testing.assert_array_equal(data.next_actions[inner], data.actions[inner + 1])


def test_truncating_env_marks_timeouts_at_1000_steps() -> None:
    episodes = random_episodes("HalfCheetah-v5", transitions=2000, seed=1)
    assert [len(ep["actions"]) for ep in episodes] == [1000, 1000]
    _write("itpo/halfcheetah/trunc-v0", episodes, "HalfCheetah-v5")
    data = load_dataset("itpo/halfcheetah/trunc-v0")
    assert not data.terminations.any()
    assert np.flatnonzero(data.truncations).tolist() == [999, 1999]
    assert data.dones.sum() == 0.0  # a timeout bootstraps: the TD mask stays 1
    reset_obs = gym.make("HalfCheetah-v5").reset(seed=2)[0]
    np.testing.assert_array_equal(data.observations[1000], reset_obs.astype(np.float32))
    assert not np.array_equal(data.next_observations[999], data.observations[1000])


def test_missing_dataset_offline_error_names_id_root_and_fix(minari_root: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("itpo/hopper/medium-v0")
    msg = str(err.value)
    assert "itpo/hopper/medium-v0" in msg and str(minari_root) in msg and "MINARI_DATASETS_PATH" in msg
    assert "itpo-lab collect --env hopper --levels medium" in msg
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mujoco/hopper/expert-v0", download=True)  # no network / no minari[hf] here
    msg = str(err.value)
    assert "mujoco/hopper/expert-v0" in msg and "download failed" in msg and "minari download" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_folder_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="not a Minari dataset"):
        load_dataset(tmp_path)


def test_normalized_score_is_d4rl_x100_scale() -> None:
    np.testing.assert_allclose(normalized_score([-10.0, 40.0, 90.0], -10.0, 90.0), [0.0, 50.0, 100.0])
    with pytest.raises(ValueError, match="must exceed"):
        normalized_score(1.0, 5.0, 5.0)


def test_write_refuses_to_overwrite_unless_asked() -> None:
    episodes = random_episodes("Hopper-v5", transitions=20, seed=0)
    _write("itpo/hopper/dup-v0", episodes, "Hopper-v5")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _write("itpo/hopper/dup-v0", episodes, "Hopper-v5")
