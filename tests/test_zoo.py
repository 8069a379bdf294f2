"""itpo_wrap.zoo on a temporary zoo folder: add, list, load, errors, SB3 entries, model cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from itpo_lab import zoo_write
from itpo_lab.offline import save_offline_policy
from itpo_wrap import zoo
from itpo_wrap.networks import TanhActor, TwinQ


def _policy(path: Path, algorithm: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return save_offline_policy(path, TanhActor(3, 1, [16]), TwinQ(3, 1, [16]), algorithm=algorithm, config={},
                               dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1",
                               action_low=np.array([-2.0]), action_high=np.array([2.0]), updates=10)


def _info(score: float, algorithm: str = "td3_bc") -> dict:
    # a record that names only some arguments (one older than the others): the rest are the script's defaults
    made_by = {"program": "policies/td3_bc.py", "args": {"dataset": "x"}}
    return {"algorithm": algorithm, "updates": 10, "wall_s": 90.0, "provenance": made_by,
            "eval": {"episodes": 10, "return_mean": -500.0, "return_std": 20.0, "score_mean": score, "score_std": 1.0}}


def test_entry_name() -> None:
    assert zoo.entry_name("itpo/hopper/medium-replay-v0") == "hopper-medium-replay"
    assert zoo.entry_name("itpo/walker2d/medium-expert-v0") == "walker2d-medium-expert"
    assert zoo.entry_name("halfcheetah-medium-v2") == "halfcheetah-medium"
    with pytest.raises(ValueError, match="namespace"):
        zoo.entry_name("nonsense")


def test_add_list_load(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    assert zoo.list(root) == []
    name = zoo.entry_name("itpo/pendulum/medium-v0")
    zoo_write.add_policy(name, "td3_bc", _policy(tmp_path / "a.pt", "td3_bc"), kind="offline",
                   dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", info=_info(40.0), root=root)
    zoo_write.add_policy(name, "rebrac", _policy(tmp_path / "b.pt", "rebrac", seed=1), kind="offline",
                   dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", info=_info(55.5, "rebrac"), default=True, root=root)
    assert zoo.list(root) == ["pendulum-medium"]
    entry = zoo.load("pendulum-medium", root=root)
    assert entry.policy_name == "rebrac" and entry.algorithm == "rebrac"
    assert entry.dataset_id == "itpo/pendulum/medium-v0" and entry.env_id == "Pendulum-v1"
    assert isinstance(entry.policy, TanhActor) and entry.policy is entry.actor and isinstance(entry.critic, TwinQ)
    assert entry.meta["algorithm"] == "rebrac" and entry.world_model is None
    other = zoo.load("pendulum-medium", policy="td3_bc", root=root)
    obs = torch.randn(4, 3)
    assert not torch.equal(other.actor(obs), entry.actor(obs))
    env = entry.make_env()
    assert env.spec is not None and env.spec.id == "Pendulum-v1"
    env.close()
    card = (root / "pendulum-medium" / "MODEL_CARD.md").read_text()
    assert "55.5 ± 1.0" in card and "python policies/td3_bc.py --dataset x" in card and "1.5 min" in card
    stored = json.loads((root / "pendulum-medium" / "entry.json").read_text())
    assert stored["policies"]["rebrac"]["file"] == "rebrac.pt" and stored["default_policy"] == "rebrac"


def test_unknown_names_list_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "zoo"
    zoo_write.add_policy("pendulum-medium", "td3_bc", _policy(tmp_path / "a.pt", "td3_bc"), kind="offline",
                   dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", root=root)
    monkeypatch.setenv("ITPO_ZOO_PATH", str(root))
    assert zoo.zoo_path() == root and zoo.list() == ["pendulum-medium"]
    with pytest.raises(KeyError, match=r"from \$ITPO_ZOO_PATH\); known entries: pendulum-medium\W*$"):
        zoo.load("hopper-medium")
    with pytest.raises(KeyError, match=r"has no policy 'rebrac'; it has \['td3_bc'\]"):
        zoo.load("pendulum-medium", policy="rebrac")
    with pytest.raises(ValueError, match="not 'itpo/other/medium-v0'"):
        zoo_write.add_policy("pendulum-medium", "x", tmp_path / "a.pt", kind="offline", dataset_id="itpo/other/medium-v0",
                       env_id="Pendulum-v1")
    with pytest.raises(ValueError, match="kind='onnx'"):
        zoo_write.add_policy("pendulum-medium", "x", tmp_path / "a.pt", kind="onnx", dataset_id="d", env_id="e")
    (root / "broken").mkdir()
    (root / "broken" / "entry.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        zoo.load("broken")


def test_sb3_zip_is_stored_converted_inside_each_entry(tmp_path: Path) -> None:
    # one expert zip for several entries: each entry gets its own weights-only copy, never a pickle or a path out
    root = tmp_path / "zoo"
    SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, device="cpu").save(tmp_path / "expert.zip")
    for level in ("medium", "medium-replay"):
        zoo_write.add_policy(f"pendulum-{level}", "sac_expert", tmp_path / "expert.zip", kind="sb3", copy=False,
                       dataset_id=f"itpo/pendulum/{level}-v0", env_id="Pendulum-v1",
                       info={"algorithm": "sb3_sac"}, root=root)
        assert sorted(p.name for p in (root / f"pendulum-{level}").iterdir()) == ["MODEL_CARD.md", "entry.json",
                                                                                  "sac_expert.pt"]
    entry = zoo.load("pendulum-medium-replay", root=root)
    assert isinstance(entry.policy, SAC) and entry.algorithm == "sb3_sac"
    obs = torch.randn(2, 3)
    q1, q2 = entry.critic(obs, entry.actor(obs))
    assert q1.shape == (2, 1) and q2.shape == (2, 1)


def test_world_model_is_loaded_lazily(tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    folder = zoo_write.add_policy("pendulum-medium", "td3_bc", _policy(tmp_path / "a.pt", "td3_bc"), kind="offline",
                            dataset_id="itpo/pendulum/medium-v0", env_id="Pendulum-v1", root=root)
    entry_json = json.loads((folder / "entry.json").read_text())
    entry_json["world_model"] = "world_model.pt"
    (folder / "entry.json").write_text(json.dumps(entry_json))
    entry = zoo.load("pendulum-medium", root=root)  # loading the entry does not touch the world model file
    if entry.world_model_file and __import__("importlib").util.find_spec("itpo_wrap.world_model.model"):
        with pytest.raises((FileNotFoundError, ValueError, OSError)):
            _ = entry.world_model


def test_zoo_root_order_explicit_env_checkout_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # explicit root > $ITPO_ZOO_PATH > the checkout's policies/zoo > the package's demo entry
    monkeypatch.delenv("ITPO_ZOO_PATH", raising=False)
    checkout = Path(zoo.__file__).resolve().parents[1] / "policies" / "zoo"
    assert zoo.zoo_path() == (checkout if checkout.is_dir() else zoo.PACKAGED_ZOO)
    monkeypatch.setenv("ITPO_ZOO_PATH", str(tmp_path))
    assert zoo.zoo_path() == tmp_path and zoo.list() == []
    assert zoo.list(zoo.PACKAGED_ZOO) == ["hopper-medium"]
    assert zoo.load("hopper-medium", root=zoo.PACKAGED_ZOO).directory == zoo.PACKAGED_ZOO / "hopper-medium"
    with pytest.raises(KeyError, match=r"\(set ITPO_ZOO_PATH or --zoo-dir to a zoo folder\)"):
        zoo.load("hopper-medium")


def test_export_entry_is_self_contained_and_refuses_unknown_parts(tmp_path: Path) -> None:
    if "hopper-medium" not in zoo.list():
        pytest.skip("needs the checkout zoo")
    out = zoo_write.export_entry("hopper-medium", tmp_path, policies=["sac_medium"], world_models=[])
    entry = zoo.read_entry("hopper-medium", tmp_path)
    assert entry["default_policy"] == "sac_medium" and entry["world_models"] == {} and entry["world_model"] is None
    assert entry["policies"]["sac_medium"]["file"] == "sac_medium.pt" and (out / "sac_medium.pt").is_file()
    assert entry["ref_min_score"] == zoo.read_entry("hopper-medium")["ref_min_score"]
    with pytest.raises(KeyError, match="cannot export 'hopper-medium': \\['nope'\\]"):
        zoo_write.export_entry("hopper-medium", tmp_path, policies=["nope"], world_models=[])
