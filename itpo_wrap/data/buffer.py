"""A flat, typed container of offline transitions (float32), independent of Minari.

Everything downstream (world-model training, the offline trainers in ``policies/``) reads this
container, so it is deliberately plain numpy: no torch, no Minari, no Gymnasium imports.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class OfflineDataset:
    """Transitions flattened over episodes, in env units (not normalized).

    Row ``i`` is the transition ``(observations[i], actions[i]) -> (rewards[i],
    next_observations[i])``. ``terminations[i]`` means the MDP ended (no bootstrap from
    ``next_observations[i]``); ``truncations[i]`` means the episode was cut by a time limit (or the
    data ran out), so bootstrapping is still allowed. ``next_actions[i]`` is the action the
    behaviour policy took at ``next_observations[i]`` (ReBRAC's critic penalty needs it); at the
    last row of an episode no such action exists and the row's own action is repeated
    (``next_action_valid`` is ``False`` there).

    :param observations: ``(N, obs_dim)`` float32.
    :param actions: ``(N, act_dim)`` float32, in the env's action units.
    :param rewards: ``(N,)`` float32.
    :param next_observations: ``(N, obs_dim)`` float32.
    :param next_actions: ``(N, act_dim)`` float32.
    :param terminations: ``(N,)`` bool.
    :param truncations: ``(N,)`` bool.
    :param episode_ids: ``(N,)`` int64, the source episode of each row.
    :param next_action_valid: ``(N,)`` bool.
    :param dataset_id: the Minari id or path it came from (``""`` for synthetic data).
    :param env_id: the Gymnasium id of the env, when known.
    :param observation_space: the Gymnasium observation space, when known.
    :param action_space: the Gymnasium action space, when known.
    :param ref_min_score: return of a random policy (D4RL's normalization floor), when known.
    :param ref_max_score: return of an expert policy (D4RL's normalization ceiling), when known.
    :param metadata: any further dataset metadata (Minari's ``spec`` fields, author, ...).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    next_actions: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    next_action_valid: np.ndarray
    dataset_id: str = ""
    env_id: str | None = None
    observation_space: Any = None
    action_space: Any = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.observations)
        for name in ("actions", "rewards", "next_observations", "next_actions", "terminations",
                     "truncations", "episode_ids", "next_action_valid"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise ValueError(f"OfflineDataset.{name} has {len(arr)} rows but observations has {n}")
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise ValueError(
                f"observations and actions must be 2-D (N, dim); got {self.observations.shape} and {self.actions.shape}"
            )

    @classmethod
    def from_episodes(
        cls,
        episodes: list[dict[str, np.ndarray]],
        **info: Any,
    ) -> OfflineDataset:
        """Flatten episodes given as dicts with ``observations`` (T+1 rows, Minari's layout),
        ``actions``, ``rewards``, ``terminations``, ``truncations`` (T rows each).

        :param episodes: the episodes, in order; their index becomes the episode id.
        :param info: the remaining fields (``dataset_id``, ``env_id``, spaces, reference scores).
        """
        if not episodes:
            raise ValueError("from_episodes() got no episodes; a dataset needs at least one")
        cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "observations", "actions", "rewards", "next_observations", "next_actions", "terminations",
            "truncations", "episode_ids", "next_action_valid")}
        for ep_id, ep in enumerate(episodes):
            obs = np.asarray(ep["observations"], dtype=np.float32)
            act = np.asarray(ep["actions"], dtype=np.float32)
            t = len(act)
            if obs.shape[0] != t + 1:
                raise ValueError(
                    f"episode {ep_id}: observations must have T+1={t + 1} rows (Minari layout), got {obs.shape[0]}"
                )
            term = np.asarray(ep["terminations"], dtype=bool).reshape(t)
            trunc = np.asarray(ep["truncations"], dtype=bool).reshape(t).copy()
            if not (term[-1] or trunc[-1]):
                # Data ended mid-episode (e.g. a replay buffer cut at a checkpoint): bootstrapping is
                # still correct there, so this is a truncation, not a termination.
                trunc[-1] = True
            next_act = np.concatenate([act[1:], act[-1:]], axis=0)
            valid = np.ones(t, dtype=bool)
            valid[-1] = False
            cols["observations"].append(obs[:-1])
            cols["next_observations"].append(obs[1:])
            cols["actions"].append(act)
            cols["next_actions"].append(next_act)
            cols["rewards"].append(np.asarray(ep["rewards"], dtype=np.float32).reshape(t))
            cols["terminations"].append(term)
            cols["truncations"].append(trunc)
            cols["episode_ids"].append(np.full(t, ep_id, dtype=np.int64))
            cols["next_action_valid"].append(valid)
        flat: dict[str, Any] = {k: np.concatenate(v, axis=0) for k, v in cols.items()}
        return cls(**flat, **info)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode_ids)))

    @property
    def dones(self) -> np.ndarray:
        """``terminations`` as float32: the ``(1 - done)`` mask of a TD target (timeouts bootstrap)."""
        return self.terminations.astype(np.float32)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in episode-id order."""
        ids, inverse = np.unique(self.episode_ids, return_inverse=True)
        return np.bincount(inverse, weights=self.rewards.astype(np.float64), minlength=len(ids))

    def select_episodes(self, episode_ids: np.ndarray) -> OfflineDataset:
        """The rows of the given episodes (used for held-out splits)."""
        mask = np.isin(self.episode_ids, episode_ids)
        return self._subset(mask)

    def split_episodes(self, holdout_fraction: float, seed: int = 0) -> tuple[OfflineDataset, OfflineDataset]:
        """Split by whole episodes into (train, held-out), so no episode leaks across the split.

        :param holdout_fraction: share of episodes held out, in (0, 1).
        :param seed: seed of the episode permutation.
        """
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction={holdout_fraction} must be in (0, 1)")
        ids = np.unique(self.episode_ids)
        if len(ids) < 2:
            raise ValueError(f"split_episodes() needs at least 2 episodes, the dataset has {len(ids)}")
        perm = np.random.default_rng(seed).permutation(ids)
        n_hold = min(len(ids) - 1, max(1, int(round(holdout_fraction * len(ids)))))
        hold = np.sort(perm[:n_hold])
        return self._subset(~np.isin(self.episode_ids, hold)), self._subset(np.isin(self.episode_ids, hold))

    def _subset(self, mask: np.ndarray) -> OfflineDataset:
        arrays = {f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        return dataclasses.replace(self, **arrays)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform minibatch of rows (with replacement), as a dict of arrays."""
        idx = rng.integers(0, len(self), size=batch_size)
        return {
            "observations": self.observations[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "next_observations": self.next_observations[idx],
            "next_actions": self.next_actions[idx],
            "terminations": self.terminations[idx],
        }
