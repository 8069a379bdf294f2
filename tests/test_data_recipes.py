"""Recipes: deterministic regeneration, the behaviour selection rule, replay-buffer splitting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer

from itpo_lab.data.behavior import (
    load_episodes,
    replay_buffer_episodes,
    save_episodes,
    select_checkpoints,
)
from itpo_lab.data.collect import LEVELS, CollectConfig, collect, random_episodes
from itpo_wrap.data import load_dataset


@pytest.fixture(scope="module")
def behavior_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in behaviour folder: untrained SAC checkpoints and random 'replay' episodes."""
    d = tmp_path_factory.mktemp("behavior")
    expert = SAC("MlpPolicy", "Hopper-v5", seed=0, device="cpu")
    # An "expert" that beats uniform random: near-zero actions keep Hopper upright ~130 steps
    # (random falls in ~20), with a little sampling noise left so stochastic sampling still matters.
    with torch.no_grad():
        actor = expert.policy.actor
        actor.mu.weight.mul_(0.01)
        actor.mu.bias.zero_()
        actor.log_std.weight.zero_()
        actor.log_std.bias.fill_(-3.0)
    expert.save(d / "expert.zip")
    SAC("MlpPolicy", "Hopper-v5", seed=1, device="cpu").save(d / "medium.zip")
    save_episodes(d / "medium_replay.npz", random_episodes("Hopper-v5", transitions=120, seed=5))
    return d


def _collect_into(root: Path, behavior_dir: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    summary = collect(CollectConfig(env="hopper", transitions=150, seed=seed, behavior_dir=str(behavior_dir)),
                      log=lambda _: None)
    return {lv: load_dataset(summary[lv]["dataset_id"]) for lv in LEVELS}


def test_regeneration_is_deterministic(tmp_path: Path, behavior_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _collect_into(tmp_path / "a", behavior_dir, 0, monkeypatch)
    second = _collect_into(tmp_path / "b", behavior_dir, 0, monkeypatch)
    other = _collect_into(tmp_path / "c", behavior_dir, 1, monkeypatch)
    for level in LEVELS:
        a, b = first[level], second[level]
        for name in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{level}.{name}")
        assert (a.ref_min_score, a.ref_max_score) == (b.ref_min_score, b.ref_max_score)
    assert not np.array_equal(first["medium"].actions[:50], other["medium"].actions[:50])
    # Level composition: medium-expert is medium then expert; sampled levels reach the transition floor.
    me = first["medium-expert"]
    assert len(me) == len(first["medium"]) + len(first["expert"])
    np.testing.assert_array_equal(me.actions[: len(first["medium"])], first["medium"].actions)
    assert all(len(first[lv]) >= 150 for lv in ("random", "medium", "expert"))
    # Reference scores are the env's fixed constants (itpo_lab/data/reference.py), never this run's means.
    from itpo_lab.data.reference import reference_scores

    for level in LEVELS:
        assert (first[level].ref_min_score, first[level].ref_max_score) == reference_scores("hopper").scores


def test_collect_needs_the_behaviour_artefacts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sac_behavior.py --env Hopper-v5"):
        collect(CollectConfig(env="hopper", transitions=10, behavior_dir=str(tmp_path)))


def test_config_rejects_unknown_env_and_level() -> None:
    with pytest.raises(ValueError, match="no recipe"):
        CollectConfig(env="ant")
    with pytest.raises(ValueError, match="unknown"):
        CollectConfig(env="hopper", levels=("medium", "umaze"))


def _rows(returns: list[float]) -> list[dict[str, float]]:
    return [{"step": 10_000.0 * (i + 1), "mean_return": r, "std_return": 0.0} for i, r in enumerate(returns)]


def test_selection_rule_picks_best_expert_and_medium_in_band() -> None:
    sel = select_checkpoints(_rows([100, 900, 1300, 2000, 3000, 2900]))
    assert (sel.expert_step, sel.expert_return) == (50_000, 3000)
    assert sel.medium_step == 30_000 and sel.medium_in_band  # 1300 is closest to 0.4 * 3000 inside [1000, 1500]
    sel = select_checkpoints(_rows([100, 200, 3000]))
    assert sel.medium_step == 20_000 and not sel.medium_in_band
    with pytest.raises(ValueError, match="not learned"):
        select_checkpoints(_rows([-5, -3]))


def test_replay_buffer_split_handles_timeouts_terminations_and_resume_gaps(tmp_path: Path) -> None:
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    buf = ReplayBuffer(20, env.observation_space, env.action_space, device="cpu")
    rng = np.random.default_rng(0)
    obs = rng.normal(size=11)
    # episode A: 3 steps then terminated; episode B: 2 steps then time-limit; episode C: 2 steps, then a
    # resume gap (next obs != following obs, no done); episode D: 2 steps, data stops mid-episode.
    plan = [(False, False), (False, False), (True, False), (False, False), (True, True),
            (False, False), ("gap", False), (False, False), (False, False)]
    for done, timeout in plan:
        nxt = rng.normal(size=11)
        buf.add(obs[None], nxt[None], rng.uniform(-1, 1, (1, 3)), np.array([1.0]),
                np.array([done is True]), [{"TimeLimit.truncated": timeout}])
        obs = rng.normal(size=11) if done else nxt
    eps = replay_buffer_episodes(buf, upto=100)
    assert [len(e["actions"]) for e in eps] == [3, 2, 2, 2]
    assert [bool(e["terminations"][-1]) for e in eps] == [True, False, False, False]
    assert [bool(e["truncations"][-1]) for e in eps] == [False, True, True, True]
    save_episodes(tmp_path / "r.npz", eps)
    back = load_episodes(tmp_path / "r.npz")
    for a, b in zip(eps, back, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert os.path.getsize(tmp_path / "r.npz") > 0


def test_export_behavior_writes_selected_checkpoints_and_replay_prefix(tmp_path: Path) -> None:
    from itpo_lab.data.behavior import export_behavior

    run = tmp_path / "run"
    run.mkdir()
    model = SAC("MlpPolicy", "Hopper-v5", seed=0, device="cpu", learning_starts=10_000, buffer_size=500)
    model.learn(300)  # random-phase steps only: fills the buffer fast
    model.save_replay_buffer(run / "replay_buffer.pkl")
    rows = ["step,mean_return,std_return,episodes,wall_s"]
    for step, ret in [(100, 10.0), (200, 45.0), (300, 100.0)]:
        model.save(run / f"ckpt_{step:07d}.zip")
        rows.append(f"{step},{ret},1.0,10,{step / 10}")
    (run / "eval.csv").write_text("\n".join(rows) + "\n")
    card = export_behavior(run, tmp_path / "out", "Hopper-v5")
    assert card["selection"]["expert_step"] == 300 and card["selection"]["medium_step"] == 200
    eps = load_episodes(tmp_path / "out" / "medium_replay.npz")
    assert sum(len(e["actions"]) for e in eps) == 200 == card["medium_replay"]["transitions"]
    for name in ("expert.zip", "medium.zip", "eval.csv", "card.json", "CARD.md"):
        assert (tmp_path / "out" / name).exists()
    assert "200 steps" in (tmp_path / "out" / "CARD.md").read_text()
    # how to remake the run, as data: the SAC script's Args with the budget the run reached
    args = card["provenance"]["args"]
    assert card["provenance"]["program"] == "policies/sac_behavior.py" and "command" not in card
    assert (args["env"], args["run_dir"], args["total_steps"], args["seed"]) == ("Hopper-v5", str(run), 300, 0)
    assert (f"python policies/sac_behavior.py --env Hopper-v5 --run-dir {run} --total-steps 300"
            in (tmp_path / "out" / "CARD.md").read_text())
