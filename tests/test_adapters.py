"""``make_adapter``: SB3 and torch policies become one differentiable view whose deterministic action,
mapped to the Box, is bit for bit SB3's ``predict``; unsupported policies are refused with the list."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from torch import nn

from itpo_wrap.adapters import PolicyAdapter, make_adapter, register_adapter, supported_policies, to_env_numpy
from itpo_wrap.networks import TanhActor


def small() -> dict:
    return {"net_arch": [16, 16]}  # fresh each time: SB3 mutates policy_kwargs


@pytest.fixture(scope="module")
def pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


def _obs(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3))  # float64, as gymnasium gives


@pytest.mark.parametrize("algo", [SAC, TD3, DDPG, PPO, A2C])
def test_sb3_action_equals_predict_bit_for_bit(algo: type, pendulum: gym.Env) -> None:
    model = algo("MlpPolicy", pendulum, policy_kwargs=small(), seed=0, device="cpu")
    for owner in (model, model.policy):
        adapter = make_adapter(owner)
        obs = _obs()
        with torch.no_grad():
            a = adapter.forward(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        mine = to_env_numpy(a, adapter.action_low, adapter.action_high, adapter.squashed)
        theirs, _ = model.predict(obs, deterministic=True)
        assert np.array_equal(mine, theirs)


def test_sac_adapts_only_the_mean_path(pendulum: gym.Env) -> None:
    model = SAC("MlpPolicy", pendulum, policy_kwargs=small(), seed=0, device="cpu")
    adapter = make_adapter(model)
    assert adapter.squashed and adapter.stochastic and adapter.obs_dim == 3
    assert not any("log_std" in n for n in adapter.names) and any("mu" in n for n in adapter.names)
    actor_ids = {id(p) for p in model.policy.actor.parameters()}
    assert all(id(p) in actor_ids for p in adapter.params)  # live handles: adapting them adapts the model
    sample = adapter.sample(torch.zeros(64, 3))
    assert sample.shape == (64, 1) and sample.std() > 0  # deterministic=False samples


def test_ppo_adapts_no_value_network(pendulum: gym.Env) -> None:
    model = PPO("MlpPolicy", pendulum, policy_kwargs=small(), seed=0, device="cpu")
    adapter = make_adapter(model)
    assert not adapter.squashed  # SB3 clips PPO's Gaussian mean to the Box
    assert not any("value" in n or "log_std" in n for n in adapter.names)


@pytest.mark.parametrize("algo", [SAC, TD3, PPO])
def test_batched_forward_equals_each_copy(algo: type, pendulum: gym.Env) -> None:
    model = algo("MlpPolicy", pendulum, policy_kwargs=small(), seed=0, device="cpu")
    adapter = make_adapter(model)
    stacked = [torch.stack([p.detach() + 0.01 * i for i in range(3)]) for p in adapter.params]
    obs = torch.randn(3, 4, 3)
    out = adapter.batched_forward(stacked, obs)
    for i in range(3):
        one = torch.func.functional_call(adapter.module, {n: s[i] for n, s in zip(adapter.names, stacked, strict=True)},
                                         (obs[i],))
        assert torch.allclose(out[i], one, atol=1e-6)


def test_torch_actor_with_normalizer_variants() -> None:
    actor = TanhActor(3, 1, (8,))
    plain = make_adapter(actor)
    assert plain.names == [n for n, _ in actor.named_parameters()] and plain.squashed
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    obs = torch.randn(4, 3)
    expected = actor((obs - torch.tensor(mean, dtype=torch.float32)) / 2.0)
    for normalizer in ((mean, std), lambda o: (o - torch.tensor(mean, dtype=torch.float32)) / 2.0):
        adapter = make_adapter(actor, obs_normalizer=normalizer)
        assert all(n.startswith("actor.") for n in adapter.names)
        assert torch.allclose(adapter.forward(obs), expected)
    assert not make_adapter(actor, squashed=False).squashed
    with pytest.raises(ValueError, match="std has entries <= 0"):
        make_adapter(actor, obs_normalizer=(mean, np.zeros(3)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DQN("MlpPolicy", "CartPole-v1", policy_kwargs=small(), device="cpu"), "Discrete"),
        (lambda: PPO("MlpPolicy", "CartPole-v1", policy_kwargs=small(), device="cpu"), "Discrete"),
        (lambda: "not a policy", "Supported"),
        (lambda: np.zeros(3), "Supported"),
    ],
)
def test_unsupported_policies_name_what_is_supported(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=match) as err:
        make_adapter(make())
    assert "SAC" in str(err.value) and "nn.Module" in str(err.value)


def test_torch_only_options_are_refused_for_sb3(pendulum: gym.Env) -> None:
    model = TD3("MlpPolicy", pendulum, policy_kwargs=small(), device="cpu")
    with pytest.raises(ValueError, match="torch actors only"):
        make_adapter(model, obs_normalizer=(np.zeros(3), np.ones(3)))


def test_parameterless_module_is_refused() -> None:
    with pytest.raises(ValueError, match="no parameters"):
        make_adapter(nn.Tanh())


def test_register_adapter_takes_precedence() -> None:
    class Custom:
        def __init__(self) -> None:
            self.net = nn.Linear(3, 1)

    register_adapter("my Custom policies", lambda p: isinstance(p, Custom),
                     lambda p, **_: PolicyAdapter(p.net, dict(p.net.named_parameters()), squashed=True, kind="custom"))
    try:
        assert make_adapter(Custom()).kind == "custom"
        assert supported_policies()[0] == "my Custom policies"
    finally:
        from itpo_wrap import adapters

        adapters._REGISTRY.pop(0)
