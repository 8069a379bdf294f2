"""The real-env check of ``itpo improve`` (:mod:`itpo_wrap.improve_field`): a step that wins in the env is kept,
a step the world model likes but the env punishes is refused even though the offline verdict accepted it,
and the choice rule never prefers a candidate that did not beat the base by its standard errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_wrap.improve import improve_policy
from itpo_wrap.improve_config import ImproveConfig
from itpo_wrap.improve_field import choose_step, paired_gain, snapshot_steps
from tests.test_adapt_toys import LinearQuadraticWM
from tests.test_improve import _linear, _toy, _toy_data


class LQEnv(gym.Env):  # type: ignore[type-arg]
    """The toy world model as a real env: ``s' = A s + B a`` (``actions_matter``) or ``s' = A s`` (the model's
    action effect is a delusion), ``r = -a'Ra - s'Qs``, 20 steps from a seeded normal start."""

    def __init__(self, wm: LinearQuadraticWM, actions_matter: bool = True) -> None:
        self.wm, self.actions_matter = wm, actions_matter
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.s = torch.zeros(3)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.s = torch.as_tensor(self.np_random.normal(size=3), dtype=torch.float32)
        self.t = 0
        return self.s.numpy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = torch.as_tensor(action, dtype=torch.float32)[None]
        s = self.s[None]
        reward = float(self.wm.reward(s, a)[0])
        nxt = self.wm.next(s, a if self.actions_matter else torch.zeros_like(a))
        self.s, self.t = nxt[0], self.t + 1
        return self.s.numpy(), reward, False, self.t >= 20, {}


def test_the_rule_keeps_the_best_candidate_that_beat_the_base_by_its_errors() -> None:
    base = [10.0, 12.0, 11.0, 13.0]
    returns = {0: base,
               100: [b + 1.0 for b in base],                       # +1 on every seed: se 0, kept as a winner
               200: [b + d for b, d in zip(base, [9.0, -7.0, 8.0, -6.0], strict=True)],  # higher mean, noisy: not
               300: [b + 0.5 for b in base]}                       # beats the base, but below step 100
    assert choose_step(returns, 2.0) == 100
    assert choose_step({0: base, 100: list(base)}, 0.0) == 0        # equal to the base: the base
    assert choose_step({0: base, 100: [b - 1 for b in base]}, 0.0) == 0
    gain, se = paired_gain([2.0, 4.0], [1.0, 1.0])
    assert gain == 2.0 and se == pytest.approx(1.0)


def test_a_step_that_wins_in_the_real_env_is_kept(tmp_path: Path) -> None:
    wm = LinearQuadraticWM()
    cfg = _toy(env_seeds=tuple(range(16)))
    result = improve_policy(_linear(), wm, _toy_data(), cfg, run_dir=tmp_path / "run", progress=False,
                            make_env=lambda: LQEnv(wm))
    field = result.field
    assert field is not None and sorted(field.returns) == [0, 50, 100, 150, 200, 250, 300]
    assert snapshot_steps(tmp_path / "run", 300) == [50, 100, 150, 200, 250, 300]
    assert result.accepted and result.best_step == field.chosen > 0
    gain, se = field.gain(field.chosen)
    assert gain > cfg.verdict_z * se and "in the real env" in result.message
    # the returned policy holds exactly the chosen step's parameters: replaying it gives the recorded returns
    from itpo_wrap.improve_field import field_check
    replay = field_check(lambda step: result.policy, wm, lambda: LQEnv(wm), [], cfg.env_seeds, cfg.verdict_z)
    assert replay.returns[0] == field.returns[field.chosen]
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["field"]["chosen"] == field.chosen and summary["field"]["seeds"] == list(range(16))


def test_what_the_model_likes_but_the_env_punishes_is_refused(tmp_path: Path) -> None:
    wm = LinearQuadraticWM()
    policy = _linear()
    result = improve_policy(policy, wm, _toy_data(), _toy(env_seeds=(0, 1, 2)), run_dir=tmp_path / "run",
                            progress=False, make_env=lambda: LQEnv(wm, actions_matter=False))
    # offline the same run is a clear win (the model believes the actions steer the state) ...
    offline = improve_policy(_linear(), wm, _toy_data(), _toy(), progress=False)
    assert offline.accepted and offline.verdict.accepted
    # ... in the env every action only costs -a'Ra: no step beats the base (zero action), nothing is kept
    assert result.field is not None and result.field.chosen == 0 and not result.accepted
    assert all(np.mean(r) < np.mean(result.field.returns[0]) for s, r in result.field.returns.items() if s)
    assert result.policy is policy and result.best_step == 0 and "refused" in result.message
    assert torch.count_nonzero(policy.weight) == 0
    with pytest.raises(ValueError, match="nothing to save"):
        result.save(tmp_path / "x.pt")


def test_bad_env_seeds_fail_naming_the_value() -> None:
    for bad in ((), (3,), (1, 1), (0, -1), [0, 1], (0, 1.5)):
        with pytest.raises(ValueError, match="env_seeds=.* must be a tuple of at least 2 distinct ints"):
            ImproveConfig(env_seeds=bad)  # type: ignore[arg-type]
