"""itpo_lab.offline.calibration: a critic that knows the true value is calibrated (ratio 1), a doubled one
reads 2, and states too close to a time limit are left out."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_lab.offline.calibration import discounted_returns, value_calibration

GAMMA = 0.99


class Countdown(gym.Env):
    """Observation [t]; reward 1 + t/100 per step (so values differ by state); ends at step ``length``,
    as a termination or (``truncate=True``) as a time limit."""

    def __init__(self, length: int, truncate: bool = False) -> None:
        self.length, self.truncate, self.t = length, truncate, 0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        reward = 1.0 + self.t / 100
        self.t += 1
        end = self.t >= self.length
        return np.array([self.t], np.float32), reward, end and not self.truncate, end and self.truncate, {}


def true_value(t: torch.Tensor, length: int) -> torch.Tensor:
    rewards = 1.0 + np.arange(length) / 100
    g = torch.as_tensor(discounted_returns(rewards, GAMMA), dtype=torch.float32)
    return g[t.long().clamp(max=length - 1)]


def actor(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], 1)


def test_discounted_returns_match_the_sum() -> None:
    r = np.random.default_rng(0).normal(size=30)
    brute = [sum(GAMMA ** k * r[t + k] for k in range(len(r) - t)) for t in range(len(r))]
    np.testing.assert_allclose(discounted_returns(r, GAMMA), brute, rtol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_exact_critic_reads_one_and_a_doubled_one_two(scale: float) -> None:
    def critic(obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = scale * true_value(obs[:, 0], 50).reshape(-1, 1)
        return q, q + 5.0  # the min is taken

    result = value_calibration(actor, critic, lambda: Countdown(50), episodes=2, gamma=GAMMA)
    assert len(result.predicted) == 100 and len(result.start_realised) == 2
    assert result.ratio == pytest.approx(scale, rel=1e-5) and result.start_ratio == pytest.approx(scale, rel=1e-5)
    assert result.correlation == pytest.approx(1.0, abs=1e-6)


def test_states_near_a_time_limit_are_left_out() -> None:
    # tail = ceil(log 0.01 / log 0.99) = 459 steps: of a 600-step truncated episode only t < 141 count
    result = value_calibration(actor, lambda o, a: torch.ones(1, 1), lambda: Countdown(600, truncate=True),
                               episodes=1, gamma=GAMMA)
    assert len(result.predicted) == 600 - 459
    with pytest.raises(ValueError, match="no state had 459 steps left"):
        value_calibration(actor, lambda o, a: torch.ones(1, 1), lambda: Countdown(100, truncate=True), episodes=1)


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="gamma=1.0"):
        value_calibration(actor, lambda o, a: torch.ones(1, 1), lambda: Countdown(5), gamma=1.0)
    with pytest.raises(ValueError, match="episodes=0"):
        value_calibration(actor, lambda o, a: torch.ones(1, 1), lambda: Countdown(5), episodes=0)
    with pytest.raises(ValueError, match="needs a Box action space"):
        value_calibration(actor, lambda o, a: torch.ones(1, 1), "CartPole-v1")


def test_cli_records_into_the_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`itpo-lab critic-calibration --record` on a copy of a shipped entry writes the figures and the card line."""
    import shutil

    from itpo_lab.cli import main
    from itpo_wrap import zoo

    src = zoo.zoo_path() / "hopper-medium-replay"
    dst = tmp_path / "hopper-medium-replay"
    dst.mkdir()
    for f in ("entry.json", "td3_bc.pt"):
        shutil.copyfile(src / f, dst / f)
    entry = json.loads((dst / "entry.json").read_text())
    entry.update(world_model=None, world_models={})
    entry["policies"] = {"td3_bc": entry["policies"]["td3_bc"]}
    (dst / "entry.json").write_text(json.dumps(entry))
    monkeypatch.setenv("ITPO_ZOO_PATH", str(tmp_path))
    assert main(["critic-calibration", "--entry", "hopper-medium-replay", "--episodes", "1", "--record"]) == 0
    cal = zoo.read_entry("hopper-medium-replay", tmp_path)["policies"]["td3_bc"]["critic_calibration"]
    assert cal["episodes"] == 1 and cal["seed"] == 1000 and cal["states"] > 0 and np.isfinite(cal["ratio"])
    assert "itpo-lab critic-calibration --entry hopper-medium-replay --policy td3_bc" in (dst / "MODEL_CARD.md").read_text()


def test_cli_policy_file_matches_the_entry_route(capsys: pytest.CaptureFixture[str]) -> None:
    """`--policy-file` (a run that is not a zoo entry) gives the figures the entry route gives for the same file."""
    from itpo_lab.cli import main
    from itpo_wrap import zoo

    file = zoo.zoo_path() / "hopper-medium-replay" / "td3_bc.pt"
    assert main(["critic-calibration", "--entry", "hopper-medium-replay", "--policy", "td3_bc", "--episodes", "1"]) == 0
    by_entry = json.loads(capsys.readouterr().out)
    assert main(["critic-calibration", "--policy-file", str(file), "--episodes", "1"]) == 0
    by_file = json.loads(capsys.readouterr().out)
    assert by_file["dataset_id"] == zoo.load("hopper-medium-replay", policy="td3_bc").dataset_id
    for key in ("ratio", "states", "episodes"):
        assert by_file[key] == by_entry[key], key


def test_cli_policy_file_refuses_record() -> None:
    """A policy file has no entry to record into: a clear error, not a silent skip."""
    from itpo_lab.cli import main
    from itpo_wrap import zoo

    file = zoo.zoo_path() / "hopper-medium-replay" / "td3_bc.pt"
    with pytest.raises(SystemExit, match="drop --record"):
        main(["critic-calibration", "--policy-file", str(file), "--record"])
