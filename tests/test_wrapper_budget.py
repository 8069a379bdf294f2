"""``AdaptConfig.time_budget_ms``: no ascent step starts once a call's budget is spent, so a call is late by at
most one step, a spent budget gives the action the call started from, and ``last_info`` reports the steps."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from itpo_wrap import step as S
from itpo_wrap.config import AdaptConfig
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM
from tests.test_wrapper import _actor, _obs

CFG = AdaptConfig(horizon=3, particles=4, steps=4, step_size=0.05, persistence="reset_each_step")


class _Clock:
    """A fake ``time.perf_counter``: each reading advances by ``tick`` seconds, whatever the machine does."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize("n_envs", [1, 3])
def test_a_generous_budget_changes_nothing(n_envs: int) -> None:
    obs = _obs(n_envs, 1)
    free, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), CFG).predict(obs, deterministic=True)
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), dataclasses.replace(CFG, time_budget_ms=1e9))
    budgeted, _ = w.predict(obs, deterministic=True)
    assert np.array_equal(free, budgeted)
    assert [row["adapt_steps"] for row in w.last_info] == [CFG.steps] * n_envs


@pytest.mark.parametrize("n_envs", [1, 3])
def test_a_spent_budget_gives_the_base_action_exactly(n_envs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    obs = _obs(n_envs, 2)
    base, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0)).predict(obs, deterministic=True)
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), dataclasses.replace(CFG, time_budget_ms=1.0))
    monkeypatch.setattr(S.time, "perf_counter", _Clock(tick=1.0))  # every reading is a second later
    actions, _ = w.predict(obs, deterministic=True)
    assert np.array_equal(actions, base)
    assert all(row["adapt_steps"] == 0 and row["param_change"] == 0.0 for row in w.last_info)


def test_steps_stop_at_the_first_check_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # readings 1 ms apart: the call's start (0 ms, deadline 2.5 ms), then one per step check; the checks at
    # 1 and 2 ms pass and the one at 3 ms stops: 2 steps of 4, the same action as a 2-step config
    obs = _obs(1, 3)
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), dataclasses.replace(CFG, time_budget_ms=2.5, backend="eager"))
    readings = itertools.count()
    monkeypatch.setattr(S.time, "perf_counter", lambda: 1e-3 * next(readings))  # the one `time` module
    actions, _ = w.predict(obs, deterministic=True)
    assert w.last_info[0]["adapt_steps"] == 2
    monkeypatch.undo()
    two, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), dataclasses.replace(CFG, steps=2, backend="eager")).predict(
        obs, deterministic=True)
    assert np.array_equal(actions, two)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_budgets_are_refused_with_the_fix(bad: object) -> None:
    with pytest.raises(ValueError, match="time_budget_ms=.* must be a finite float > 0"):
        AdaptConfig(time_budget_ms=bad)  # type: ignore[arg-type]
