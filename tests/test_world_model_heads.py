"""Heads: CriticHead copies of SB3 and TwinQ critics equal the originals; reward, termination, FQE."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_wrap.networks import TwinQ
from itpo_wrap.world_model import CriticHead, RewardHead, TerminationHead, fqe_loss

torch.set_num_threads(1)


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_critic_from_sb3_equals_min_of_sb3_critics(algo: str) -> None:
    import stable_baselines3 as sb3

    env = gym.make("Pendulum-v1")  # Box(-2, 2): the env -> [-1, 1] action mapping matters
    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    head = CriticHead.from_sb3(model)
    obs = torch.randn(7, 3)
    env_act = torch.rand(7, 1) * 4 - 2
    scaled = torch.as_tensor(model.policy.scale_action(env_act.numpy()))
    with torch.no_grad():
        qs = model.policy.critic(obs, scaled)
        expected = torch.min(torch.cat(qs, dim=1), dim=1).values
        torch.testing.assert_close(head(obs, env_act), expected)
    assert head.num_critics == len(qs) and head.hidden == (32, 32)
    # the copy is independent of the SB3 model and rebuilds from its arch
    rebuilt = CriticHead(**head.arch())
    rebuilt.load_state_dict(head.state_dict())
    torch.testing.assert_close(rebuilt(obs, env_act), head(obs, env_act))


def test_critic_from_sb3_refuses_models_without_q() -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, device="cpu")
    with pytest.raises(ValueError, match="has no Q critic.*fit_fqe"):
        CriticHead.from_sb3(model)


@pytest.mark.parametrize("post", [False, True], ids=["ln-before-act", "ln-after-act"])
def test_critic_from_twin_q_equals_q_min(post: bool) -> None:
    torch.manual_seed(0)
    q = TwinQ(5, 2, hidden=(16, 16), layernorm=True, obs_mean=np.arange(5.0), obs_std=np.full(5, 2.0),
              layernorm_after_activation=post)
    head = CriticHead.from_twin_q(q)
    rebuilt = CriticHead(**head.arch())  # the bundle's rebuild path keeps the layer order
    rebuilt.load_state_dict(head.state_dict())
    obs, act = torch.randn(4, 5), torch.rand(4, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(head(obs, act), q.q_min(obs, act))
        torch.testing.assert_close(rebuilt(obs, act), q.q_min(obs, act))
    scaled = CriticHead.from_twin_q(q, action_low=np.full(2, -2.0), action_high=np.full(2, 2.0))
    with torch.no_grad():
        torch.testing.assert_close(scaled(obs, act * 2), q.q_min(obs, act))


def test_reward_head_predicts_in_env_units() -> None:
    stats = {"reward_mean": np.float32(3.0), "reward_std": np.float32(2.0)}
    head = RewardHead(3, 1, (8,), stats)
    s, a = torch.randn(5, 3), torch.randn(5, 1)
    torch.testing.assert_close(head(s, a), head.normalized(s, a) * 2.0 + 3.0)
    loss, _ = head.loss(s, a, torch.full((5,), 3.0))
    assert torch.isfinite(loss)


def test_termination_head_never_terminates_skips_network() -> None:
    head = TerminationHead(3, (8,), never_terminates=True)
    out = head(torch.randn(4, 3))
    assert out.dtype == torch.bool and not bool(out.any())
    live = TerminationHead(3, (8,))
    loss, metrics = live.loss(torch.randn(6, 3), torch.tensor([0, 0, 1, 0, 0, 1]), pos_weight=3.0)
    assert torch.isfinite(loss) and 0.0 <= float(metrics["acc"]) <= 1.0


def test_fqe_loss_targets_bootstrap_only_without_termination() -> None:
    torch.manual_seed(0)
    critic = CriticHead(2, 1, (8,))
    target = copy.deepcopy(critic)
    batch = {"observations": torch.randn(3, 2), "actions": torch.zeros(3, 1), "rewards": torch.ones(3),
             "next_observations": torch.randn(3, 2), "terminations": torch.tensor([False, True, False])}

    def policy(o: torch.Tensor) -> torch.Tensor:
        return torch.zeros(o.shape[0], 1)

    loss, metrics = fqe_loss(critic, target, batch, policy, gamma=0.9)
    with torch.no_grad():
        y = 1.0 + 0.9 * torch.tensor([1.0, 0.0, 1.0]) * target(batch["next_observations"], torch.zeros(3, 1))
        expected = (critic.q_values(batch["observations"], batch["actions"]) - y).pow(2).mean(dim=1).sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
