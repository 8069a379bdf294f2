"""Issue 21, pairings: the mismatch table (every mismatched pair refused with a named reason), zoo
additions checked before they replace anything, inference-mode policies, and critics that carry the
action units they were trained in (an env whose Box is not [-1, 1])."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from itpo_lab import zoo_write
from itpo_wrap import zoo
from itpo_wrap.config import AdaptConfig
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.networks import TanhActor
from itpo_wrap.pairing import tag
from itpo_wrap.world_model.config import DiffusionConfig, MeanFlowConfig, NetConfig
from itpo_wrap.world_model.diffusion import DiffusionDynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM
from tests.test_zoo import _policy

CFG = AdaptConfig(horizon=1, particles=2, steps=1, backend="eager")
ZOO = ("hopper-medium-replay", "walker2d-medium-replay", "halfcheetah-medium-replay")
needs_zoo = pytest.mark.skipif(not set(ZOO) <= set(zoo.list()), reason="needs the checkout zoo")


def _toy_bundle(path: Path, *, env_id: str | None = "Pendulum-v1", kind: str = "meanflow", obs: int = 3,
                act: int = 1, bound: float = 2.0) -> Path:
    torch.manual_seed(0)
    net = NetConfig(hidden_dim=16, num_blocks=1)
    dyn = (MeanFlowDynamics(obs, act, MeanFlowConfig(net=net)) if kind == "meanflow" else
           DiffusionDynamics(obs, act, DiffusionConfig(num_train_timesteps=10, num_inference_steps=2, net=net)))
    norm = [StateNormalizer(np.zeros(d), np.ones(d)) for d in (obs, act, obs)]
    WorldModel(dyn, RewardHead(obs, act, (8,)), TerminationHead(obs, (8,), True), None, *norm,
               action_low=np.full(act, -bound), action_high=np.full(act, bound), env_id=env_id).save(path)
    return path


def _pendulum_entry(root: Path, tmp: Path) -> None:
    zoo_write.add_policy("pendulum-medium", "td3_bc", _policy(tmp / "td3_bc.pt", "td3_bc"), kind="offline",
                   dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", root=root)
    zoo_write.add_world_model("pendulum-medium", "meanflow", _toy_bundle(tmp / "wm.pt"), root=root)


def _zoo_copy(tmp: Path, name: str, files: tuple[str, ...]) -> Path:
    """A private copy of part of a checkout zoo entry (the table edits files)."""
    out = tmp / "zoo" / name
    out.mkdir(parents=True)
    for f in ("entry.json", *files):
        shutil.copyfile(Path(zoo.zoo_path()) / name / f, out / f)
    return out.parent


def _edited_kind(src: Path, dest: Path, stamp: bool) -> Path:
    """A meanflow bundle whose kind label says diffusion (issue 21: a TypeError naming neither file nor cause)."""
    payload = torch.load(src, weights_only=True)
    payload["dynamics"]["kind"] = "diffusion"
    if not stamp:
        payload.pop("digest", None)
    torch.save(payload, dest)
    return dest


# ----------------------------------------------------------------- 4. the mismatch table
def _wm(name: str, kind: str = "meanflow") -> Any:
    return zoo.load(name, policy="td3_bc").load_world_model(kind)


def _wrap(policy: object, wm: object) -> None:
    ITPOPolicyWrapper(policy, wm, CFG)


TABLE: list[tuple[str, Callable[[Path], object], str]] = [
    ("Walker2d world model, Hopper TD3+BC actor",
     lambda t: _wrap(zoo.load(ZOO[0], policy="td3_bc").policy, _wm(ZOO[1])),
     r"the policy \(.*hopper-medium-replay/td3_bc.pt\) has env 'Hopper-v5' but the world model "
     r"\(.*walker2d-medium-replay/wm_meanflow.pt\) has 'Walker2d-v5'; pair the policy"),
    ("HalfCheetah world model, Hopper TD3+BC actor",
     lambda t: _wrap(zoo.load(ZOO[0], policy="td3_bc").policy, _wm(ZOO[2])),
     r"has env 'Hopper-v5' but the world model .* has 'HalfCheetah-v5'"),
    ("Walker2d world model, HalfCheetah actor (same widths)",
     lambda t: _wrap(zoo.load(ZOO[2], policy="td3_bc").policy, _wm(ZOO[1])),
     r"has env 'HalfCheetah-v5' but the world model .* has 'Walker2d-v5'"),
    ("Walker2d world model, an untagged 11-wide actor",
     lambda t: _wrap(TanhActor(11, 3), _wm(ZOO[1])), r"observes 11 dims but the world model 17"),
    ("Walker2d world model, an actor that declares no width",
     lambda t: _wrap(nn.Sequential(nn.Linear(11, 3), nn.Tanh()), _wm(ZOO[1])),
     r"cannot act on a \(1, 17\) observation, the world model's width"),
    ("actor trained on Box [-2, 2], world model on [-1, 1]",
     lambda t: _wrap(_tagged_actor(), MLPWM(obs_dim=4, act_dim=2, bound=1.0)),
     r"the policy has the action Box \[\[-2.0, -2.0\], \[2.0, 2.0\]\] but the world model has \[\[-1.0, -1.0\]"),
    ("MeanFlow bundle copied into the diffusion slot",
     lambda t: _swapped_slot(t).load_world_model("diffusion"),
     r"wm_diffusion.pt has dynamics kind='meanflow' but 'diffusion' was expected; this file holds another kind"),
    ("Walker2d bundle copied into a Hopper entry",
     lambda t: _foreign_bundle(t).load_world_model("meanflow"),
     r"wm_meanflow.pt has env_id='Walker2d-v5' but 'Hopper-v5' was expected; load the bundle trained for this env"),
    ("Walker2d policy copied into a Hopper entry",
     lambda t: _foreign_policy(t),
     r"zoo entry 'hopper-medium-replay' is for 'Hopper-v5' but its policy 'td3_bc' \(td3_bc.pt\) was trained on "
     r"'Walker2d-v5'"),
    ("bundle whose kind label was edited (no digest)",
     lambda t: WorldModel.load(_edited_kind(Path(zoo.zoo_path()) / ZOO[0] / "wm_meanflow.pt", t / "e.pt", False)),
     r"world model bundle '.*e.pt' is malformed: the dynamics is labelled 'diffusion' but its config has fields "
     r"\[.*'time_mean'.*\] that a diffusion config does not have \(they are meanflow settings\): the kind was edited"),
    ("bundle whose kind label was edited (stamped)",
     lambda t: WorldModel.load(_edited_kind(_toy_bundle(t / "toy.pt"), t / "e.pt", True)),
     r"corrupt: digest mismatch in '.*e.pt'"),
    ("WorldModel.load expecting another Box",
     lambda t: WorldModel.load(_toy_bundle(t / "toy.pt"), action_low=[-1.0], action_high=[1.0]),
     r"has the action Box \[\[-2.0\], \[2.0\]\] but \[\[-1.0\], \[1.0\]\] was expected"),
    ("WorldModel.load expecting another kind",
     lambda t: WorldModel.load(_toy_bundle(t / "toy.pt"), kind="diffusion"),
     r"has dynamics kind='meanflow' but 'diffusion' was expected"),
    ("critic scaling with another Box than its world model's",
     lambda t: WorldModel.load(_toy_bundle(t / "toy.pt")).set_critic(CriticHead(3, 1, (8,), scale_actions=True)),
     r"the critic has the action Box \[\[-1.0\], \[1.0\]\] but the world model .* has \[\[-2.0\], \[2.0\]\]"),
]


def _tagged_actor() -> TanhActor:
    actor = TanhActor(4, 2, (8,))
    tag(actor, env_id=None, action_low=[-2.0, -2.0], action_high=[2.0, 2.0])
    return actor


def _swapped_slot(tmp: Path) -> Any:
    root = _zoo_copy(tmp, ZOO[0], ("td3_bc.pt", "wm_meanflow.pt"))
    shutil.copyfile(root / ZOO[0] / "wm_meanflow.pt", root / ZOO[0] / "wm_diffusion.pt")
    return zoo.load(ZOO[0], policy="td3_bc", root=root)


def _foreign_bundle(tmp: Path) -> Any:
    root = _zoo_copy(tmp, ZOO[0], ("td3_bc.pt",))
    shutil.copyfile(Path(zoo.zoo_path()) / ZOO[1] / "wm_meanflow.pt", root / ZOO[0] / "wm_meanflow.pt")
    return zoo.load(ZOO[0], policy="td3_bc", root=root)


def _foreign_policy(tmp: Path) -> Any:
    root = _zoo_copy(tmp, ZOO[0], ())
    shutil.copyfile(Path(zoo.zoo_path()) / ZOO[1] / "td3_bc.pt", root / ZOO[0] / "td3_bc.pt")
    return zoo.load(ZOO[0], policy="td3_bc", root=root)


@needs_zoo
@pytest.mark.parametrize(("case", "make", "reason"), TABLE, ids=[row[0] for row in TABLE])
def test_mismatch_table_refuses_with_a_named_reason(case: str, make: Callable[[Path], object], reason: str,
                                                    tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=reason):
        make(tmp_path)


@needs_zoo
def test_matched_pairs_still_wrap_and_act() -> None:
    for name in ZOO:
        entry = zoo.load(name, policy="td3_bc")
        for kind in ("diffusion", "meanflow"):
            w = ITPOPolicyWrapper(entry.policy, entry.load_world_model(kind), CFG)
            assert np.isfinite(w.predict(np.zeros(entry.actor.obs_dim), deterministic=True)[0]).all()


# ----------------------------------------------------------------- 7. zoo additions, inference mode
@pytest.mark.parametrize(("bundle", "reason"), [
    ({"env_id": "Hopper-v5"}, r"has env 'Hopper-v5' but the 'meanflow' slot of zoo entry 'pendulum-medium' has "
                              r"'Pendulum-v1'"),
    ({"kind": "diffusion"}, r"has dynamics kind 'diffusion' but the 'meanflow' slot .* has 'meanflow'"),
    ({"env_id": None, "obs": 4}, r"has observation width 4 but the entry's 'meanflow' bundle \(wm_meanflow.pt\) has 3"),
    ({"env_id": None, "bound": 1.0}, r"has the action Box \[\[-1.0\], \[1.0\]\] but the entry's 'meanflow' bundle"),
], ids=["another env", "another kind", "another width", "another Box"])
def test_add_world_model_refuses_a_bundle_that_does_not_belong(bundle: dict[str, Any], reason: str,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _pendulum_entry(root, tmp_path)
    folder = root / "pendulum-medium"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match=reason):
        zoo_write.add_world_model("pendulum-medium", "meanflow", _toy_bundle(tmp_path / "other.pt", **bundle), root=root)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing replaced, nothing rewritten


def test_add_policy_refuses_a_checkpoint_of_another_env_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    with pytest.raises(ValueError, match=r"was trained on 'Pendulum-v1', not 'Hopper-v5'"):
        zoo_write.add_policy("hopper-medium", "td3_bc", _policy(tmp_path / "p.pt", "td3_bc"), kind="offline",
                       dataset_id="itpo/hopper/medium-v0", env_id="Hopper-v5", root=root)
    assert not root.exists()
    with pytest.raises(ValueError, match="outside the entry folder"):  # copy=False records only files inside
        zoo_write.add_policy("pendulum-medium", "td3_bc", tmp_path / "p.pt", kind="offline", copy=False,
                       dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", root=root)


@pytest.mark.parametrize("part", ["policy", "world model"])
def test_inference_mode_tensors_are_refused_at_wrapping(part: str) -> None:
    with torch.inference_mode():
        made = TanhActor(4, 2, (8,)) if part == "policy" else MLPWM(bound=2.0)
    actor, wm = (made, MLPWM(bound=2.0)) if part == "policy" else (TanhActor(4, 2, (8,)), made)
    with pytest.raises(ValueError, match=rf"the {part}'s tensor .* was created under torch.inference_mode\(\)"):
        ITPOPolicyWrapper(actor, wm, CFG)


# ----------------------------------------------------------------- 8. critic units on a Box of [-2, 2]
def test_zoo_critic_takes_env_actions_in_the_units_it_was_trained_in(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _pendulum_entry(root, tmp_path)
    entry = zoo.load("pendulum-medium", root=root)
    wm = entry.load_world_model("meanflow")
    s = torch.randn(64, 3)
    a = (torch.rand(64, 1) * 4 - 2).requires_grad_(True)  # env units, Box [-2, 2]
    value = wm.value(s, a)
    (grad,) = torch.autograd.grad(value.sum(), a)
    scaled = (a.detach() / 2.0).requires_grad_(True)  # what the trainer fed the critic: [-1, 1]
    expected = entry.critic.q_min(s, scaled)
    (grad_scaled,) = torch.autograd.grad(expected.sum(), scaled)
    torch.testing.assert_close(value, expected.detach())
    torch.testing.assert_close(grad, grad_scaled / 2.0)  # chain rule through the scaling, not 2x too large
    unscaled = entry.critic.q_min(s, a.detach())  # the bug: env actions fed as they are
    assert (unscaled - expected).abs().max() > 1e-3
    # the critic carries its units: without explicit bounds the copy scales the same way
    torch.testing.assert_close(CriticHead.from_twin_q(entry.critic)(s, a.detach()), expected.detach())


def test_entry_json_records_stay_inside_after_conversion() -> None:
    for name in zoo.list():
        entry = json.loads((Path(zoo.zoo_path()) / name / "entry.json").read_text())
        files = [p["file"] for p in entry["policies"].values()] + [w["file"] for w in entry.get("world_models", {}).values()]
        assert all("/" not in f and not f.endswith(".zip") for f in files), (name, files)
