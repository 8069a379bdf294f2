"""The WorldModel bundle: protocol conformance, save/load round trip, refusals, input validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import itpo_wrap
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.world_model import (
    CriticHead,
    DiffusionConfig,
    DiffusionDynamics,
    MeanFlowConfig,
    MeanFlowDynamics,
    MLPDynamics,
    NetConfig,
    RewardHead,
    TerminationHead,
    WorldModel,
    WorldModelLike,
)

torch.set_num_threads(1)
TINY = NetConfig(hidden_dim=16, num_blocks=1, time_embed_dim=4)
OBS, ACT = 4, 2


def make_wm(kind: str = "diffusion", critic: bool = True, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    dyn = {"diffusion": lambda: DiffusionDynamics(OBS, ACT, DiffusionConfig(num_train_timesteps=10, num_inference_steps=3, net=TINY)),
           "meanflow": lambda: MeanFlowDynamics(OBS, ACT, MeanFlowConfig(net=TINY)),
           "meanflow_gated": lambda: MeanFlowDynamics(OBS, ACT, MeanFlowConfig(net=dataclasses.replace(TINY, x_gate=True))),
           "mlp": lambda: MLPDynamics(OBS, ACT)}[kind]()
    with torch.no_grad():
        for p in dyn.parameters():
            p.add_(0.2 * torch.randn_like(p))
    rng = np.random.default_rng(seed)
    norm = [StateNormalizer(rng.normal(size=d), rng.uniform(0.5, 2, size=d)) for d in (OBS, ACT, OBS)]
    return WorldModel(dyn, RewardHead(OBS, ACT, (8,)), TerminationHead(OBS, (8,)),
                      CriticHead(OBS, ACT, (8,)) if critic else None, *norm,
                      action_low=-np.ones(ACT), action_high=np.ones(ACT), env_id="Toy-v0",
                      baseline=MLPDynamics(OBS, ACT), info={"note": "test"})


@pytest.mark.parametrize("kind", ["diffusion", "meanflow", "mlp"])
def test_satisfies_protocol_and_shapes(kind: str) -> None:
    wm = make_wm(kind)
    assert isinstance(wm, WorldModelLike)
    s, a = torch.randn(5, OBS), torch.rand(5, ACT) * 2 - 1
    bank = wm.draw_noise(5, 3, torch.Generator().manual_seed(0))
    assert bank.shape[0] == 3
    assert wm.next(s, a, bank[0]).shape == (5, OBS)
    assert wm.reward(s, a).shape == (5,) and wm.value(s, a).shape == (5,)
    term = wm.terminated(s)
    assert term.shape == (5,) and term.dtype == torch.bool
    assert wm.action_low.shape == (ACT,) and wm.obs_dim == OBS and wm.act_dim == ACT


@pytest.mark.parametrize("kind", ["diffusion", "meanflow"])
def test_frozen_time_feature_cache_matches_and_follows_weights(kind: str) -> None:
    wm, other = make_wm(kind, seed=0), make_wm(kind, seed=1)
    s, a = torch.randn(3, OBS), torch.randn(3, ACT)
    bank = wm.draw_noise(3, 1)
    cached = wm.next(s, a, bank[0])  # frozen: cached time features
    wm.dynamics.requires_grad_(True)  # trainable: recomputed every call
    assert torch.equal(cached, wm.next(s, a, bank[0]))
    wm.dynamics.requires_grad_(False)
    wm.dynamics.load_state_dict(other.dynamics.state_dict())  # bumps versions: the cache is rebuilt
    wm.load_state_dict(other.state_dict())
    torch.testing.assert_close(wm.next(s, a, bank[0]), other.next(s, a, bank[0]))


def test_gradients_reach_inputs_not_weights() -> None:
    wm = make_wm()
    s = torch.randn(3, OBS, requires_grad=True)
    a = torch.randn(3, ACT, requires_grad=True)
    bank = wm.draw_noise(3, 1)
    (wm.next(s, a, bank[0]).sum() + wm.reward(s, a).sum() + wm.value(s, a).sum()).backward()
    assert s.grad is not None and a.grad is not None and s.grad.abs().sum() > 0
    assert all(p.grad is None for p in wm.parameters())


@pytest.mark.parametrize("kind", ["diffusion", "meanflow"])
def test_save_load_round_trip(tmp_path, kind: str) -> None:
    wm = make_wm(kind)
    path = tmp_path / "wm.pt"
    wm.save(path)
    back = WorldModel.load(path, env_id="Toy-v0", obs_dim=OBS, act_dim=ACT)
    s, a = torch.randn(6, OBS), torch.randn(6, ACT)
    bank = wm.draw_noise(6, 2, torch.Generator().manual_seed(1))
    assert torch.equal(wm.next(s, a, bank[1]), back.next(s, a, bank[1]))
    assert torch.equal(wm.reward(s, a), back.reward(s, a))
    assert torch.equal(wm.value(s, a), back.value(s, a))
    assert torch.equal(wm.terminated(s), back.terminated(s))
    assert torch.equal(wm.baseline_next(s, a), back.baseline_next(s, a))
    assert back.info == {"note": "test"} and back.env_id == "Toy-v0"
    assert type(back.dynamics) is type(wm.dynamics) and back.dynamics.cfg == wm.dynamics.cfg
    # the file holds only tensors and plain values: weights_only loading works on it
    assert isinstance(torch.load(path, weights_only=True), dict)


def test_load_refuses_mismatches(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wm.pt"
    make_wm(critic=False).save(path)
    with pytest.raises(ValueError, match=r"env_id='Toy-v0' but 'Hopper-v5' was expected"):
        WorldModel.load(path, env_id="Hopper-v5")
    with pytest.raises(ValueError, match=r"obs_dim=4 but 11 was expected"):
        WorldModel.load(path, obs_dim=11)
    with pytest.raises(ValueError, match=r"act_dim=2 but 3 was expected"):
        WorldModel.load(path, act_dim=3)
    monkeypatch.setattr(itpo_wrap._version, "__version__", "9.9.9")
    with pytest.raises(ValueError, match=r"version='0.*' but '9.9.9' was expected.*allow_version_mismatch"):
        WorldModel.load(path)
    assert WorldModel.load(path, allow_version_mismatch=True).critic is None


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="train-world-model"):
        WorldModel.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="corrupt or was not written by WorldModel.save"):
        WorldModel.load(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not an itpo-wrap world model bundle"):
        WorldModel.load(foreign)


def test_bad_inputs_raise_clear_errors() -> None:
    wm = make_wm()
    s, a = torch.randn(2, OBS), torch.randn(2, ACT)
    with pytest.raises(ValueError, match=r"s has shape \(2, 5\) but this world model \(Toy-v0\) expects \(B, 4\)"):
        wm.next(torch.randn(2, 5), a)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        wm.next(torch.randn(OBS), a)
    with pytest.raises(ValueError, match=r"a has shape \(2, 3\).*expects \(B, 2\)"):
        wm.reward(s, torch.randn(2, 3))
    with pytest.raises(ValueError, match="a has batch 3 but s has batch 2"):
        wm.next(s, torch.randn(3, ACT))
    bad = s.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="s contains NaN or inf \\(first at row 1"):
        wm.next(bad, a)
    with pytest.raises(ValueError, match="a contains NaN or inf"):
        wm.value(s, torch.full((2, ACT), float("inf")))
    with pytest.raises(TypeError, match="torch.as_tensor"):
        wm.next(np.zeros((2, OBS)), a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="draw it with draw_noise"):
        wm.next(s, a, torch.zeros(2, 1, OBS))
    assert wm.next(s.double(), a.double()).dtype == torch.float32  # float64 observations are cast


def test_value_without_critic_and_critic_dims() -> None:
    wm = make_wm(critic=False)
    with pytest.raises(RuntimeError, match="set_critic"):
        wm.value(torch.zeros(1, OBS), torch.zeros(1, ACT))
    with pytest.raises(ValueError, match=r"critic takes \(obs_dim, act_dim\)=\(3, 2\)"):
        wm.set_critic(CriticHead(3, ACT, (8,)))
    wm.set_critic(CriticHead(OBS, ACT, (8,)))
    assert wm.value(torch.zeros(1, OBS), torch.zeros(1, ACT)).shape == (1,)


def test_bundle_checks_widths() -> None:
    with pytest.raises(ValueError, match="action bounds"):
        WorldModel(MLPDynamics(OBS, ACT), RewardHead(OBS, ACT, (8,)), TerminationHead(OBS, (8,)), None,
                   StateNormalizer.identity(OBS), StateNormalizer.identity(ACT), StateNormalizer.identity(OBS),
                   action_low=np.ones(ACT), action_high=-np.ones(ACT))
    with pytest.raises(ValueError, match="obs width 3 differs"):
        WorldModel(MLPDynamics(OBS, ACT), RewardHead(OBS, ACT, (8,)), TerminationHead(OBS, (8,)), None,
                   StateNormalizer.identity(3), StateNormalizer.identity(ACT), StateNormalizer.identity(OBS),
                   action_low=-np.ones(ACT), action_high=np.ones(ACT))
