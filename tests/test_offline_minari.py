"""The whole route on a real (tiny, temporary) Minari dataset: CLI arguments -> trainer reading the
dataset through itpo_wrap.data.load_dataset -> zoo entry; an SB3 base added next to it."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from itpo_lab.offline import parse_args
from itpo_wrap import zoo
from itpo_wrap.data import write_dataset
from itpo_wrap.networks import TanhActor
from tests.scripts import policy_script


def _episodes(n: int) -> list[dict[str, np.ndarray]]:
    env, rng, out = gym.make("Pendulum-v1"), np.random.default_rng(1), []
    for i in range(n):
        obs, _ = env.reset(seed=100 + i)
        cols: dict[str, list] = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        for t in range(50):  # cut at 50 steps: the last row is a truncation
            a = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, r, term, _, _ = env.step(a)
            for k, v in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                            (obs, a, r, term, t == 49), strict=True):
                cols[k].append(v)
        out.append({k: np.asarray(v) for k, v in cols.items()})
    return out


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_cli_to_zoo_on_a_minari_dataset(algo: str, tmp_path: Path) -> None:
    write_dataset("itpo/pendulum/medium-v0", _episodes(4), env_id="Pendulum-v1", ref_min_score=-1500.0,
                  ref_max_score=-150.0, algorithm_name="uniform random", description="test data")
    argv = ["--dataset", "itpo/pendulum/medium-v0", "--run-dir", str(tmp_path / "run"), "--total-updates", "40",
            "--batch-size", "32", "--hidden", "32", "--eval-every", "40", "--eval-episodes", "1", "--checkpoint-every", "20",
            "--no-progress", "--zoo-dir", str(tmp_path / "zoo")]
    if algo == "rebrac":
        argv += ["--actor-bc-coef", "0.1", "--critic-bc-coef", "0.1", "--bf16"]
    module = policy_script(algo)
    module.main(parse_args(module.Args, argv))
    entry = zoo.load("pendulum-medium", root=tmp_path / "zoo")
    assert entry.policy_name == algo and entry.env_id == "Pendulum-v1" and isinstance(entry.policy, TanhActor)
    assert entry.meta["dataset_id"] == "itpo/pendulum/medium-v0" and entry.meta["updates"] == 40
    card = (tmp_path / "zoo" / "pendulum-medium" / "MODEL_CARD.md").read_text()
    assert f"python policies/{algo}.py --dataset itpo/pendulum/medium-v0" in card and "--total-updates 40" in card
    score = entry.meta["info"]["eval"]["score_mean"]
    assert np.isfinite(score) and f"{score:.1f} ±" in card

    SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, device="cpu").save(tmp_path / "expert.zip")
    sb3_base = policy_script("sb3_base")
    sb3_base.main(parse_args(sb3_base.Args, ["--model", str(tmp_path / "expert.zip"), "--dataset",
                                             "itpo/pendulum/medium-v0", "--zoo-dir", str(tmp_path / "zoo"),
                                             "--eval-episodes", "1", "--no-copy"]))
    expert = zoo.load("pendulum-medium", policy="sac_expert", root=tmp_path / "zoo")
    assert isinstance(expert.policy, SAC) and expert.algorithm == "sb3_sac"
    obs = torch.zeros(1, 3)
    assert expert.critic(obs, expert.actor(obs))[0].shape == (1, 1)
    assert zoo.load("pendulum-medium", root=tmp_path / "zoo").policy_name == algo  # default unchanged
