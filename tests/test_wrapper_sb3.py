"""The wrapper inside SB3's ``evaluate_policy``: a real SAC briefly trained here on Pendulum-v1 and a torch
actor, with 1 env and a ``DummyVecEnv`` of 4; zero steps reproduce the base policy's episodes exactly,
and a model saved after an adapted evaluation is the pretrained one."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

SMALL = AdaptConfig(horizon=2, particles=2, steps=2, step_size=1e-3)


@pytest.fixture(scope="module")
def sac() -> SAC:
    torch.set_num_threads(1)
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [32, 32]}, learning_starts=100,
                batch_size=64, seed=0, device="cpu")
    return model.learn(300)


def _pendulum_wm() -> MLPWM:
    return MLPWM(obs_dim=3, act_dim=1, hidden=16, bound=2.0, seed=1)


def _vec(n: int, seed: int = 0) -> DummyVecEnv:
    env = DummyVecEnv([lambda: Monitor(gym.make("Pendulum-v1")) for _ in range(n)])
    env.seed(seed)
    return env


def _episodes(predictor: object, n_envs: int, episodes: int) -> list[float]:
    rewards, _ = evaluate_policy(predictor, _vec(n_envs), n_eval_episodes=episodes, return_episode_rewards=True)
    return list(rewards)  # type: ignore[arg-type]


def _state(model: SAC) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("n_envs", [1, 4])
def test_zero_steps_reproduce_sac_episodes_exactly(sac: SAC, n_envs: int) -> None:
    wrapper = ITPOPolicyWrapper(sac, _pendulum_wm(), AdaptConfig(steps=0))
    assert _episodes(wrapper, n_envs, n_envs) == _episodes(sac, n_envs, n_envs)


@pytest.mark.parametrize("n_envs", [1, 4])
def test_adapted_sac_evaluation_then_save_is_pretrained(sac: SAC, n_envs: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = _state(sac)
    wrapper = ITPOPolicyWrapper(sac, _pendulum_wm(), SMALL)
    rewards = _episodes(wrapper, n_envs, n_envs)
    assert len(rewards) == n_envs and np.isfinite(rewards).all()
    assert len(wrapper.last_info) == n_envs and not any(r["fallback"] for r in wrapper.last_info)
    assert max(r["param_drift"] for r in wrapper.last_info) > 0  # it did adapt
    sac.save(tmp_path / "after_eval")
    loaded = SAC.load(tmp_path / "after_eval", device="cpu")
    assert all(torch.equal(loaded.policy.state_dict()[k], v) for k, v in before.items())


def test_stochastic_predict_samples_from_the_adapted_sac(sac: SAC) -> None:
    for obs in (np.array([1.0, 0.0, 0.0]), np.array([[1.0, 0.0, 0.0]] * 2)):  # in-place and stacked paths
        wrapper = ITPOPolicyWrapper(sac, _pendulum_wm(), SMALL)
        draws = np.stack([wrapper.predict(obs, deterministic=False)[0] for _ in range(5)])
        assert np.all(np.abs(draws) <= 2.0) and draws.std() > 0


class _ActorPredictor:
    """The plain-torch base policy with SB3's predict contract, as a user would write it."""

    def __init__(self, actor: TanhActor) -> None:
        self.actor = actor

    def predict(self, obs, state=None, episode_start=None, deterministic=True):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            a = self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return -2.0 + (0.5 * (a + 1.0) * 4.0), state


@pytest.mark.parametrize("n_envs", [1, 4])
def test_torch_actor_in_evaluate_policy(n_envs: int) -> None:
    torch.manual_seed(0)
    actor = TanhActor(3, 1, (32, 32))
    pretrained = [p.detach().clone() for p in actor.parameters()]
    wm = _pendulum_wm()
    base = _episodes(_ActorPredictor(actor), n_envs, n_envs)
    assert _episodes(ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0)), n_envs, n_envs) == base
    adapted = _episodes(ITPOPolicyWrapper(actor, wm, SMALL), n_envs, n_envs)
    assert np.isfinite(adapted).all() and adapted != base
    assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), pretrained, strict=True))
