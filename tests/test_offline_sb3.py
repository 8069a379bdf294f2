"""SB3 SAC / TD3 models as base policies with their own critics (itpo_wrap.formats.sb3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC, TD3

from itpo_lab.offline import load_sb3_base
from itpo_wrap.adapters import actor_predict


@pytest.mark.parametrize("cls", [SAC, TD3])
def test_sb3_base_matches_predict_and_critic(cls: type, tmp_path: Path) -> None:
    model = cls("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    model.save(tmp_path / "expert.zip")
    actor, critic, meta = load_sb3_base(tmp_path / "expert.zip", env_id="Pendulum-v1")
    assert meta["algorithm"] == f"sb3_{cls.__name__.lower()}" and meta["action_low"] == [-2.0]
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    a = actor(torch.as_tensor(obs))
    assert a.requires_grad and a.abs().max() <= 1.0  # differentiable, scaled
    expected, _ = meta["model"].predict(obs, deterministic=True)
    ours, _ = actor_predict(actor, np.full(1, -2.0, np.float32), np.full(1, 2.0, np.float32))(obs)
    assert np.array_equal(ours, expected)  # the same bits as SB3's own predict
    q1, q2 = critic(torch.as_tensor(obs), a)
    ref = meta["model"].policy.critic(torch.as_tensor(obs), a)
    assert q1.shape == (5, 1) and torch.equal(q1, ref[0]) and torch.equal(q2, ref[1])
    assert torch.equal(critic.q_min(torch.as_tensor(obs), a), torch.min(q1, q2).squeeze(-1))
    # Parameters are shared with the SB3 model: adapting the view adapts the model.
    first = next(actor.parameters())
    assert any(first is p for p in meta["model"].policy.actor.parameters())


def test_sb3_errors(tmp_path: Path) -> None:
    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, device="cpu").save(tmp_path / "ppo.zip")
    with pytest.raises(ValueError, match="not SAC or TD3"):
        load_sb3_base(tmp_path / "ppo.zip")
    TD3("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8], "n_critics": 1}, device="cpu").save(tmp_path / "td3.zip")
    with pytest.raises(ValueError, match="n_critics=1"):
        load_sb3_base(tmp_path / "td3.zip")
    with pytest.raises(FileNotFoundError, match="model.save"):
        load_sb3_base(tmp_path / "none.zip")
    with pytest.raises(ValueError, match="'ppo' is not supported"):
        load_sb3_base(tmp_path / "td3.zip", algorithm="ppo")
