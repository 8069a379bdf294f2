"""Does a critic know its actor's value? ``min_i Q_i(s_t, pi(s_t))`` against the discounted return the actor
then actually collects from ``s_t`` in the real env.

Two uses. ITPO scores imagined rollouts with this critic as the terminal value (METHOD.md, the surrogate
return), so a critic that overestimates by 2x pulls every adaptation toward its errors. And ReBRAC's
critic penalty ``beta_2`` (eq. 2) exists to keep Q from overestimating out-of-data actions: betas tuned on
D4RL that no longer fit our datasets would show up here first, as a ratio far from 1 (too little
penalty: overestimation; too much: a pessimistic critic), before they show up in the score.

Truncated episodes: ``G_t`` of a state near the time limit misses the rewards after it, which the critic
(trained to bootstrap through timeouts) does count, so only states with at least
``ceil(log(tail_tolerance) / log(gamma))`` steps left (459 for gamma 0.99) are compared; the missing tail is
then at most ``tail_tolerance`` of the value scale. States of episodes that terminate are always exact.
Note that ReBRAC's Q includes its own penalty, so it sits somewhat below the return by design.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_lab.offline.evaluation import rollout


@dataclasses.dataclass(frozen=True)
class ValueCalibration:
    """Critic predictions and realised discounted returns at the compared states.

    :param predicted: ``min(Q1, Q2)(s_t, pi(s_t))`` for every compared state.
    :param realised: the discounted return-to-go ``G_t`` actually collected from those states.
    :param start_predicted: the prediction at each episode's first state.
    :param start_realised: ``G_0`` of each episode (always compared unless the episode is truncated early).
    :param gamma: the discount used for ``G_t``.
    """

    predicted: np.ndarray
    realised: np.ndarray
    start_predicted: np.ndarray
    start_realised: np.ndarray
    gamma: float

    @property
    def ratio(self) -> float:
        """Mean prediction over mean realised return across compared states (1 = calibrated on average)."""
        return float(np.mean(self.predicted) / np.mean(self.realised))

    @property
    def start_ratio(self) -> float:
        """The same at the episodes' first states."""
        return float(np.mean(self.start_predicted) / np.mean(self.start_realised))

    @property
    def correlation(self) -> float:
        """Pearson correlation of prediction and realised return across compared states (does Q rank states?)."""
        if len(self.predicted) < 2 or np.std(self.predicted) == 0 or np.std(self.realised) == 0:
            return float("nan")
        return float(np.corrcoef(self.predicted, self.realised)[0, 1])

    def summary(self) -> dict[str, float]:
        """JSON-ready figures (what the zoo records)."""
        return {"states": int(len(self.predicted)), "episodes": int(len(self.start_realised)), "gamma": self.gamma,
                "q_mean": float(np.mean(self.predicted)), "return_mean": float(np.mean(self.realised)),
                "ratio": self.ratio, "start_q_mean": float(np.mean(self.start_predicted)),
                "start_return_mean": float(np.mean(self.start_realised)), "start_ratio": self.start_ratio,
                "correlation": self.correlation}


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = sum_k gamma^k r_{t+k}`` for every step of one episode (backwards recursion, float64)."""
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


@torch.no_grad()
def value_calibration(
    actor: Callable[[torch.Tensor], torch.Tensor],
    critic: Callable[[torch.Tensor, torch.Tensor], Any],
    env: str | Callable[[], Any],
    episodes: int = 10,
    seed: int = 1000,
    gamma: float = 0.99,
    tail_tolerance: float = 0.01,
) -> ValueCalibration:
    """Roll ``actor`` out deterministically and compare its critic with the returns it collects.

    :param actor: raw observations ``(1, obs_dim)`` -> actions in ``[-1, 1]`` (a zoo entry's ``.actor``).
    :param critic: ``critic(obs, act)`` -> ``(q1, q2)`` or one tensor, actions in ``[-1, 1]`` (``.critic``).
    :param env: a Gymnasium id or a zero-argument factory.
    :param episodes: episodes, reset with ``seed + i`` (the evaluation seeds of the zoo by default).
    :param seed: first reset seed.
    :param gamma: the critic's discount (0.99 for every zoo trainer).
    :param tail_tolerance: largest ignored share of the value for states near a time limit (see module doc).
    :return: a :class:`ValueCalibration`.
    """
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma={gamma} must be in (0, 1)")
    if not 0.0 < tail_tolerance < 1.0:
        raise ValueError(f"tail_tolerance={tail_tolerance} must be in (0, 1)")
    tail = math.ceil(math.log(tail_tolerance) / math.log(gamma))
    predicted: list[float] = []
    realised: list[float] = []
    start_q: list[float] = []
    start_g: list[float] = []
    qs: list[float] = []
    rewards: list[float] = []
    # the same episodes as evaluate_actor (shared loop): Q is read at each (s_t, pi(s_t)) the env then steps
    with contextlib.closing(rollout(actor, env, episodes, seed)) as steps:
        for step in steps:
            q = critic(step.obs, step.action)
            q = torch.min(*q) if isinstance(q, tuple | list) else q
            qs.append(float(q.reshape(-1)[0]))
            rewards.append(step.reward)
            if not (step.terminated or step.truncated):
                continue
            g = discounted_returns(np.asarray(rewards), gamma)
            keep = len(g) if step.terminated else max(len(g) - tail, 0)
            predicted += qs[:keep]
            realised += list(g[:keep])
            if keep > 0:
                start_q.append(qs[0])
                start_g.append(float(g[0]))
            qs, rewards = [], []
    if not predicted:
        raise ValueError(f"no state had {tail} steps left before the time limit in {episodes} episodes; "
                         "raise tail_tolerance or use an env with longer episodes")
    return ValueCalibration(np.asarray(predicted), np.asarray(realised), np.asarray(start_q), np.asarray(start_g), gamma)


def calibrate_policy_file(
    path: str | Path, episodes: int = 10, seed: int = 1000, gamma: float | None = None
) -> tuple[ValueCalibration, dict[str, Any]]:
    """:func:`value_calibration` of an offline trainer's ``policy.pt`` in the env it was trained for.

    :param path: an offline policy checkpoint (``run_dir/policy.pt`` or a zoo entry's ``.pt``).
    :param episodes: episodes, reset with ``seed + i``.
    :param seed: first reset seed.
    :param gamma: the critic's discount; ``None``: the one in the checkpoint's config (else 0.99).
    :return: ``(calibration, meta)``, ``meta`` as from :func:`load_offline_policy`.
    """
    from itpo_wrap.formats.offline_policy import load_offline_policy

    actor, critic, meta = load_offline_policy(path)
    if gamma is None:
        gamma = float(meta.get("config", {}).get("gamma", 0.99))
    return value_calibration(actor, critic, str(meta["env_id"]), episodes=episodes, seed=seed, gamma=gamma), meta
