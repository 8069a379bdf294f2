"""A new dynamics kind is one file plus one registry line (issue 22): this file defines a noisy MLP kind,
registers it with one ``register_kind`` call, trains it through ``itpo train-world-model`` (whose
``--dynamics`` choices and per-kind flags come from the registry), loads the bundle back with
``WorldModel.load`` and wraps a policy with it. No library file names the kind."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper
from itpo_wrap.networks import TanhActor
from itpo_wrap.training import commands
from itpo_wrap.world_model import CriticHead, Dynamics, NetConfig, WorldModel
from itpo_wrap.world_model.kinds import KINDS, get_kind, kind_names, register_kind
from itpo_wrap.world_model.persistence import read_payload
from tests.test_training_world_model import ACT, OBS, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
NAME = "noisy_toy_mlp"


@dataclasses.dataclass(frozen=True)
class NoisyToyConfig:
    """The toy kind's settings: a plain MLP's width (through ``net``, so ``--hidden`` reaches it) and the
    scale of the noise added to its prediction."""

    noise_scale: float = 0.01
    net: NetConfig = dataclasses.field(default_factory=lambda: NetConfig(hidden_dim=16, num_blocks=1))

    def __post_init__(self) -> None:
        if isinstance(self.net, dict):  # as stored in a bundle
            object.__setattr__(self, "net", NetConfig(**self.net))


class NoisyToyDynamics(Dynamics):
    """``d = MLP([s, a]) + noise_scale * z``: one noise vector per sample, trained by regression of the mean."""

    kind = NAME

    def __init__(self, obs_dim: int, act_dim: int, cfg: NoisyToyConfig | None = None) -> None:
        super().__init__(obs_dim, act_dim)
        self.cfg = cfg or NoisyToyConfig()
        width = self.cfg.net.hidden_dim
        self.mlp = nn.Sequential(nn.Linear(obs_dim + act_dim, width), nn.SiLU(), nn.Linear(width, obs_dim))

    @property
    def num_noise(self) -> int:
        return 1

    def sample(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        z = torch.randn(s.shape[0], self.obs_dim, dtype=s.dtype, device=s.device) if noise is None else noise[:, 0]
        return self.mlp(torch.cat([s, a], dim=-1)) + self.cfg.noise_scale * z

    def loss(self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse = (self.mlp(torch.cat([s, a], dim=-1)) - delta).pow(2).mean()
        return mse, {"mse": mse.detach()}


@pytest.fixture
def toy_kind() -> Iterator[None]:
    register_kind(NAME, NoisyToyConfig, NoisyToyDynamics, "a noisy MLP defined in a test")  # the one line
    yield
    KINDS.pop(NAME)  # leave the registry as the library ships it for the other tests


def test_a_kind_registered_in_one_file_trains_saves_loads_and_wraps(toy_kind: None, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_dataset(n_episodes=6, length=12)
    monkeypatch.setattr(commands, "_load_dataset", lambda _: data)
    parser = argparse.ArgumentParser(prog="itpo")
    commands.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "wm_toy.pt"
    args = parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", NAME, "--out", str(out),
                              "--hidden", "24", "--steps", "20", "--reward-steps", "10", "--termination-steps", "5",
                              "--workers", "1", "--no-progress"])
    assert args.func(args) == 0  # the CLI's --dynamics choices were generated from the registry

    wm = WorldModel.load(out, kind=NAME)
    assert isinstance(wm.dynamics, NoisyToyDynamics) and wm.dynamics.cfg == NoisyToyConfig(
        net=NetConfig(hidden_dim=24, num_blocks=1))
    assert wm.baseline is not None and wm.baseline.cfg.net.hidden_dim == 24  # the baseline reuses its net
    assert read_payload(out)["info"]["train_config"]["dynamics"] == NAME
    bank = wm.draw_noise(3, 1, torch.Generator().manual_seed(0))
    s, a = torch.as_tensor(data.observations[:3]), torch.zeros(3, ACT)
    assert torch.equal(wm.next(s, a, bank[0]), wm.next(s, a, bank[0]))  # fixed noise: deterministic

    wm.set_critic(CriticHead(OBS, ACT, hidden=(16,)))
    actor = TanhActor(OBS, ACT, hidden=(16,))
    wrapped = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=2, horizon=2, particles=2, device="cpu",
                                                       model_check="off"))
    action, _ = wrapped.predict(data.observations[:2], deterministic=True)
    assert action.shape == (2, ACT) and np.all(np.isfinite(action))

    with pytest.raises(ValueError, match=r"--train-timesteps set .*NoisyToyConfig"):  # not a setting of this kind
        commands.config_from_args(parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", NAME,
                                                     "--out", "x.pt", "--train-timesteps", "20"]))


def test_no_library_file_names_the_toy_kind() -> None:
    """The claim above holds only if the library knows the kind from the registry call alone."""
    named = [p for p in (ROOT / "itpo_wrap").rglob("*.py") if NAME in p.read_text() or "NoisyToy" in p.read_text()]
    assert not named and NAME not in kind_names()


def test_registry_refuses_a_mislabelled_kind_and_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"NoisyToyDynamics.kind is 'noisy_toy_mlp'; set kind = 'other'"):
        register_kind("other", NoisyToyConfig, NoisyToyDynamics, "")
    with pytest.raises(ValueError, match=r"unknown; choose one of \('diffusion', 'meanflow', 'mlp'\)"):
        get_kind("nope")


def test_a_removed_meanflow_option_loads_at_its_no_op_value_only() -> None:
    kind = get_kind("meanflow")
    old = {"boundary_ratio": 0.0, "prediction": "x", "tilt_eta": 0.0, "tilt_sigma": 0.2, "flow_ratio": 0.75}
    cfg = kind.config_from_dict(old)
    assert cfg.teacher_ratio == 0.0 and cfg.flow_ratio == 0.75  # no teacher_ratio stored: the default of then
    for field, value in (("boundary_ratio", 0.25), ("prediction", "u"), ("tilt_eta", 1.0)):
        with pytest.raises(ValueError, match=f"sets {field}={value!r}, an option this itpo-wrap no longer has"):
            kind.config_from_dict({**old, field: value})


def test_the_train_config_switches_kinds_with_replace_and_stores_the_resolved_settings() -> None:
    from itpo_wrap.training import WorldModelTrainConfig
    from itpo_wrap.world_model import MeanFlowConfig

    cfg = dataclasses.replace(WorldModelTrainConfig(), dynamics="meanflow")
    assert cfg.kind_config() == MeanFlowConfig()
    assert cfg.to_dict()["dynamics_config"] == dataclasses.asdict(MeanFlowConfig())
    with pytest.raises(TypeError, match="must be a DiffusionConfig for dynamics='diffusion', got MeanFlowConfig"):
        WorldModelTrainConfig(dynamics="diffusion", dynamics_config=MeanFlowConfig())
