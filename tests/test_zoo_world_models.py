"""Zoo entries with world models: stored critic-less, loaded with the chosen policy's own critic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from itpo_lab import zoo_write
from itpo_wrap import zoo
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.world_model.config import MeanFlowConfig, NetConfig
from itpo_wrap.world_model.heads import RewardHead, TerminationHead
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel
from tests.test_zoo import _info, _policy


def _bundle(path: Path) -> Path:
    torch.manual_seed(0)
    dyn = MeanFlowDynamics(3, 1, MeanFlowConfig(net=NetConfig(hidden_dim=16, num_blocks=1)))
    norm = [StateNormalizer(np.zeros(d), np.ones(d)) for d in (3, 1, 3)]
    wm = WorldModel(dyn, RewardHead(3, 1, (8,)), TerminationHead(3, (8,), True), None, *norm,
                    action_low=np.array([-2.0]), action_high=np.array([2.0]), env_id="Pendulum-v1")
    wm.save(path)
    return path


def _entry(root: Path, tmp: Path) -> None:
    for name, seed, default in (("td3_bc", 0, False), ("rebrac", 1, True)):
        zoo_write.add_policy("pendulum-medium", name, _policy(tmp / f"{name}.pt", name, seed=seed), kind="offline",
                       dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", info=_info(40.0, name),
                       default=default, root=root, ref_scores=(-1500.0, -150.0))


def test_world_model_gets_the_loaded_policys_critic(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    # an entry written before issue 22: its command line is shown as stored
    info = {"command": "itpo train-world-model --dataset x", "wall_s": 600.0,
            "eval": {"one_step_rmse_state_std": 0.123}}
    zoo_write.add_world_model("pendulum-medium", "meanflow", _bundle(tmp_path / "wm.pt"), info=info, root=root)
    stored = json.loads((root / "pendulum-medium" / "entry.json").read_text())
    assert stored["world_models"]["meanflow"]["file"] == "wm_meanflow.pt" and stored["world_model"] == "wm_meanflow.pt"
    card = (root / "pendulum-medium" / "MODEL_CARD.md").read_text()
    assert "0.123" in card and "itpo train-world-model --dataset x" in card and "10.0 min" in card

    obs, act = torch.randn(5, 3), torch.rand(5, 1) * 4 - 2  # env units: Pendulum's Box is [-2, 2]
    for policy in ("rebrac", "td3_bc"):
        entry = zoo.load("pendulum-medium", policy=policy, root=root)
        assert entry.world_model_kinds == ["meanflow"]
        wm = entry.load_world_model("meanflow")
        q1, q2 = entry.critic(obs, act / 2.0)  # the trainers' critics take actions scaled to [-1, 1]
        torch.testing.assert_close(wm.value(obs, act), torch.min(q1, q2).squeeze(-1))
        assert entry.world_model is not None  # the default kind, cached
    with pytest.raises(KeyError, match="no 'diffusion' world model; it has \\['meanflow'\\]"):
        entry.load_world_model("diffusion")


def test_normalized_score_needs_reference_scores(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    entry = zoo.load("pendulum-medium", root=root)
    assert float(entry.normalized_score(-150.0)) == pytest.approx(100.0)
    assert float(entry.normalized_score(-825.0)) == pytest.approx(50.0)
    zoo_write.add_policy("pendulum-expert", "td3_bc", _policy(tmp_path / "x.pt", "td3_bc"), kind="offline",
                   dataset_id="itpo/pendulum/expert-v0", env_id="Pendulum-v1", root=root)
    with pytest.raises(ValueError, match="records no reference scores"):
        zoo.load("pendulum-expert", root=root).normalized_score(0.0)


def test_add_world_model_errors(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    with pytest.raises(ValueError, match="kind='ensemble'"):
        zoo_write.add_world_model("pendulum-medium", "ensemble", tmp_path / "wm.pt", root=root)
    with pytest.raises(FileNotFoundError, match="no such file"):
        zoo_write.add_world_model("pendulum-medium", "meanflow", tmp_path / "missing.pt", root=root)
    with pytest.raises(KeyError, match="known entries"):
        zoo_write.add_world_model("nope", "meanflow", _bundle(tmp_path / "wm.pt"), root=root)


def test_tuned_step_size_is_recorded_and_loaded(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    zoo_write.add_world_model("pendulum-medium", "meanflow", _bundle(tmp_path / "wm.pt"), root=root)
    zoo_write.set_tuned_step_size("pendulum-medium", "meanflow", 1e-4, note="grid {1e-4, 1e-3} on seeds 0-2", root=root)
    assert zoo.load("pendulum-medium", root=root).tuned_step_sizes == {"meanflow": 1e-4}
    assert "Tuned ITPO settings: step_size=0.0001" in (root / "pendulum-medium" / "MODEL_CARD.md").read_text()
    with pytest.raises(KeyError, match="no 'diffusion' world model"):
        zoo_write.set_tuned_step_size("pendulum-medium", "diffusion", 1e-4, root=root)
    with pytest.raises(ValueError, match="step_size=0"):
        zoo_write.set_tuned_step_size("pendulum-medium", "meanflow", 0, root=root)


def test_tuned_settings_reach_adapt_config(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    zoo_write.add_world_model("pendulum-medium", "meanflow", _bundle(tmp_path / "wm.pt"), root=root)
    entry = zoo.load("pendulum-medium", root=root)
    assert entry.adapt_config("meanflow").step_size == 1e-4  # untuned: the zoo's default, not the paper's 1e-3
    zoo_write.set_tuned_settings("pendulum-medium", "meanflow", {"step_size": 3e-5, "persistence": "reset_each_step"},
                           note="grid", root=root)
    entry = zoo.load("pendulum-medium", root=root)
    cfg = entry.adapt_config("meanflow", device="cpu")
    assert (cfg.step_size, cfg.persistence, cfg.device) == (3e-5, "reset_each_step", "cpu")
    assert entry.adapt_config("meanflow", step_size=1e-3).step_size == 1e-3  # overrides win
    assert entry.tuned_step_sizes == {"meanflow": 3e-5}
    with pytest.raises(ValueError, match="not AdaptConfig fields"):
        zoo_write.set_tuned_settings("pendulum-medium", "meanflow", {"step_size": 1e-4, "stepsize": 1}, root=root)
    with pytest.raises(ValueError, match="persistence"):
        zoo_write.set_tuned_settings("pendulum-medium", "meanflow", {"step_size": 1e-4, "persistence": "sometimes"},
                               root=root)
    with pytest.raises(ValueError, match="must include 'step_size'"):
        zoo_write.set_tuned_settings("pendulum-medium", "meanflow", {"persistence": "persistent"}, root=root)


def test_mlp_ablation_uses_the_diffusion_bundles_baseline(tmp_path: Path) -> None:
    from itpo_wrap.world_model.config import DiffusionConfig
    from itpo_wrap.world_model.diffusion import DiffusionDynamics
    from itpo_wrap.world_model.dynamics import MLPDynamics

    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    net = NetConfig(hidden_dim=16, num_blocks=1)
    norm = [StateNormalizer(np.zeros(d), np.ones(d)) for d in (3, 1, 3)]
    wm = WorldModel(DiffusionDynamics(3, 1, DiffusionConfig(num_train_timesteps=10, num_inference_steps=2, net=net)),
                    RewardHead(3, 1, (8,)), TerminationHead(3, (8,), True), None, *norm, action_low=np.array([-2.0]),
                    action_high=np.array([2.0]), env_id="Pendulum-v1", baseline=MLPDynamics(3, 1))
    wm.save(tmp_path / "d.pt")
    zoo_write.add_world_model("pendulum-medium", "diffusion", tmp_path / "d.pt", root=root)
    mlp = zoo.load("pendulum-medium", root=root).load_world_model("mlp")
    assert mlp.dynamics is mlp.baseline and mlp.dynamics.kind == "mlp"
    s, a = torch.randn(4, 3), torch.rand(4, 1)
    torch.testing.assert_close(mlp.next(s, a, mlp.draw_noise(4, 1)[0]), mlp.baseline_next(s, a))
