"""The MPPI baseline: it plans toward a known optimum, respects bounds, warm-starts and validates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from itpo_lab.mppi import MPPIConfig, MPPIPlanner
from tests.test_adapt_toys import LinearQuadraticWM


class ZeroActor(nn.Module):
    def __init__(self, act_dim: int) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], self.act_dim) + 0 * self.dummy


def _planner(**kw) -> tuple[MPPIPlanner, LinearQuadraticWM]:
    wm = LinearQuadraticWM()
    cfg = MPPIConfig(**{"horizon": 1, "samples": 256, "elites": 32, "iterations": 6, "temperature": 0.05,
                        "policy_samples": 4, "discount": 0.9, **kw})
    return MPPIPlanner(ZeroActor(wm.act_dim), wm, cfg), wm  # type: ignore[arg-type]


def test_plans_toward_the_known_optimum() -> None:
    planner, wm = _planner()
    s = torch.tensor([0.5, -1.0, 0.3])
    a_star = wm.optimal_first_action(s, 0.9).numpy()
    assert np.all(np.abs(a_star) < 2.0), "the test needs an interior optimum"
    action, state = planner.predict(s.numpy()[None].astype(np.float64))
    assert action.shape == (1, 2) and state is None
    base_error = np.abs(a_star).max()  # the zero actor's action is 0
    assert np.abs(action[0] - a_star).max() < 0.1 * base_error


def test_bounds_warm_start_reset_and_determinism() -> None:
    planner, _ = _planner(horizon=3, iterations=2)
    obs = np.array([[40.0, -30.0, 10.0]])  # a far state: the unconstrained optimum is outside the Box
    a1, _ = planner.predict(obs, episode_start=np.array([True]))
    assert np.all(np.abs(a1) <= 2.0)
    assert planner._means[0] is not None and planner._means[0].shape == (3, 2)
    planner.predict(obs[0])  # unbatched
    planner.reset()
    a2, _ = planner.predict(obs, episode_start=np.array([True]))
    np.testing.assert_array_equal(a1, a2)


def test_config_and_input_validation() -> None:
    with pytest.raises(ValueError, match="elites=99"):
        MPPIConfig(samples=8, policy_samples=0, elites=99)
    with pytest.raises(ValueError, match="temperature=0"):
        MPPIConfig(temperature=0)
    planner, _ = _planner()
    with pytest.raises(ValueError, match="NaN"):
        planner.predict(np.array([[np.nan, 0.0, 0.0]]))
