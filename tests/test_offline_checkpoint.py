"""itpo_lab.offline: policy checkpoints, evaluation, action scaling, the training-loop plumbing."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_lab.offline import (
    TrainLoop,
    TransitionTensors,
    evaluate_actor,
    load_offline_policy,
    normalize_return,
    rollout,
    save_offline_policy,
)
from itpo_wrap.adapters import to_env_numpy, to_policy_numpy
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.networks import TanhActor, TwinQ
from itpo_wrap.training.metrics import read_metrics


def _nets() -> tuple[TanhActor, TwinQ]:
    torch.manual_seed(0)
    mean, std = np.array([0.1, -0.2, 0.3]), np.array([1.5, 0.5, 2.0])
    return (TanhActor(3, 1, [32, 32], obs_mean=mean, obs_std=std),
            TwinQ(3, 1, [32, 32], layernorm=True, obs_mean=mean, obs_std=std))


def _save(path: Path, actor: TanhActor, critic: TwinQ) -> Path:
    return save_offline_policy(path, actor, critic, algorithm="rebrac", config={"batch_size": 1024, "hidden": [32, 32]},
                               dataset_id="itpo/hopper/medium-v0", env_id="Pendulum-v1",
                               action_low=np.array([-2.0]), action_high=np.array([2.0]), updates=123,
                               info={"eval": {"score_mean": 50.0}})


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    actor, critic = _nets()
    path = _save(tmp_path / "sub" / "policy.pt", actor, critic)
    raw = torch.load(path, weights_only=True)  # loadable without unpickling code
    assert raw["format"] == "itpo-offline-policy" and raw["library_version"]
    actor2, critic2, meta = load_offline_policy(path)
    obs, act = torch.randn(8, 3), torch.rand(8, 1) * 2 - 1
    assert torch.equal(actor(obs), actor2(obs))
    assert all(torch.equal(x, y) for x, y in zip(critic(obs, act), critic2(obs, act), strict=True))
    assert critic2.arch() == critic.arch() and not actor2.training
    assert meta["algorithm"] == "rebrac" and meta["updates"] == 123 and meta["env_id"] == "Pendulum-v1"
    assert meta["config"]["batch_size"] == 1024 and meta["info"]["eval"]["score_mean"] == 50.0
    assert torch.allclose(meta["obs_normalizer"]["std"], torch.tensor([1.5, 0.5, 2.0]))


def test_layernorm_after_activation_order_and_round_trip(tmp_path: Path) -> None:
    """The ReBRAC reference's Dense -> ReLU -> LayerNorm order: built as asked, saved and reloaded with it,
    and its weights refuse to load into the other order (different state-dict keys)."""
    torch.manual_seed(0)
    post = TwinQ(3, 1, [32, 32], layernorm=True, layernorm_after_activation=True)
    pre = TwinQ(3, 1, [32, 32], layernorm=True)
    assert [type(m).__name__ for m in post.q1][:3] == ["Linear", "ReLU", "LayerNorm"]
    assert [type(m).__name__ for m in pre.q1][:3] == ["Linear", "LayerNorm", "ReLU"]
    assert "layernorm_after_activation" not in pre.arch()  # older checkpoints' arch is unchanged
    with pytest.raises(RuntimeError, match="state_dict"):
        pre.load_state_dict(post.state_dict())
    actor = TanhActor(3, 1, [32, 32], layernorm=True, layernorm_after_activation=True)
    actor2, critic2, _ = load_offline_policy(_save(tmp_path / "p.pt", actor, post))
    obs, act = torch.randn(8, 3), torch.rand(8, 1) * 2 - 1
    assert critic2.layernorm_after_activation and actor2.layernorm_after_activation
    assert torch.equal(actor(obs), actor2(obs))
    assert all(torch.equal(x, y) for x, y in zip(post(obs, act), critic2(obs, act), strict=True))


def test_checkpoint_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="td3_bc.py"):
        load_offline_policy(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_offline_policy(tmp_path / "junk.pt")
    torch.save({"loop": {"update": 5}, "actor": {}}, tmp_path / "train.pt")
    with pytest.raises(ValueError, match="policy.pt"):
        load_offline_policy(tmp_path / "train.pt")
    with pytest.raises(TypeError, match="TanhActor"):
        save_offline_policy(tmp_path / "x.pt", torch.nn.Linear(3, 1), _nets()[1], algorithm="x", config={},  # type: ignore[arg-type]
                            dataset_id="", env_id=None, action_low=np.zeros(1), action_high=np.ones(1), updates=0)


def test_action_scaling_round_trip_and_tensors() -> None:
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)
    a = np.array([[-2.0, 0.0], [1.0, 5.0], [2.0, 10.0]], np.float32)
    s = to_policy_numpy(a, low, high)
    assert np.allclose(s, [[-1, -1], [0.5, 0], [1, 1]])
    assert np.allclose(to_env_numpy(s, low, high, squashed=True), a)
    ep = {"observations": np.zeros((4, 3)), "actions": a, "rewards": np.ones(3),
          "terminations": np.array([0, 0, 1]), "truncations": np.zeros(3)}
    ds = OfflineDataset.from_episodes([ep], action_space=gym.spaces.Box(low, high))
    t = TransitionTensors(ds)
    assert torch.allclose(t.actions, torch.as_tensor(s)) and t.terminations.flatten().tolist() == [0, 0, 1]
    assert t.next_action_valid.flatten().tolist() == [1, 1, 0]
    assert torch.allclose(t.next_actions[0], t.actions[1])
    batch = t.sample(5, torch.Generator().manual_seed(0))
    assert batch.observations.shape == (5, 3) and batch.rewards.shape == (5, 1)
    unbounded = OfflineDataset.from_episodes([{**ep, "actions": a * 3}])
    with pytest.raises(ValueError, match="env_id or action_space"):
        TransitionTensors(unbounded)


def test_evaluate_actor_is_seeded_and_normalized() -> None:
    actor = _nets()[0]
    r1 = evaluate_actor(actor, "Pendulum-v1", episodes=2, seed=7, ref_min_score=-1500.0, ref_max_score=-150.0,
                        max_episode_steps=30)
    r2 = evaluate_actor(actor, lambda: gym.make("Pendulum-v1"), episodes=2, seed=7, max_episode_steps=30)
    assert np.array_equal(r1.returns, r2.returns) and r1.lengths.tolist() == [30, 30]
    assert np.allclose(r1.normalized_scores, 100 * (r1.returns + 1500) / 1350)
    assert np.isnan(r2.mean_score) and set(r1.row()) >= {"eval/return_mean", "eval/score_mean"}
    assert normalize_return(np.array([-150.0]), -1500.0, -150.0)[0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="episodes"):
        evaluate_actor(actor, "Pendulum-v1", episodes=0)


def test_rollout_is_the_loop_evaluate_actor_counts_and_closes_its_env() -> None:
    """The shared episode loop: its rewards sum to evaluate_actor's returns, the cap reports truncation,
    and closing the generator early closes the env and restores the actor's train mode."""
    import contextlib

    actor = _nets()[0]
    actor.train()
    steps = list(rollout(actor, "Pendulum-v1", episodes=2, seed=7, max_episode_steps=30))
    result = evaluate_actor(actor, "Pendulum-v1", episodes=2, seed=7, max_episode_steps=30)
    assert [sum(1 for s in steps if s.episode == i) for i in (0, 1)] == [30, 30]
    per_episode = [sum(s.reward for s in steps if s.episode == i) for i in (0, 1)]
    np.testing.assert_allclose(per_episode, result.returns, rtol=1e-12)
    assert [s.truncated for s in steps].count(True) == 2 and steps[-1].truncated and not steps[0].terminated
    assert steps[0].obs.shape == (1, 3) and steps[0].action.shape == (1, 1) and actor.training

    closed = []

    def make() -> gym.Env:
        env = gym.make("Pendulum-v1")
        original = env.close
        env.close = lambda: (closed.append(True), original())  # type: ignore[method-assign]
        return env

    with contextlib.closing(rollout(actor, make, episodes=3, seed=0)) as it:
        next(it)
        assert not actor.training  # eval mode while rolling out
    assert closed == [True] and actor.training
    with pytest.raises(ValueError, match="episodes=0"):
        rollout(actor, make, episodes=0, seed=0)  # eager: before any env is made
    with pytest.raises(ValueError, match="needs a Box action space"):
        next(rollout(actor, "CartPole-v1", episodes=1, seed=0))


def test_train_loop_cadence_keep_and_truncate(tmp_path: Path) -> None:
    loop = TrainLoop(tmp_path, total_updates=10, checkpoint_every=3, eval_every=4, log_every=2, keep=2, progress=False)
    assert loop.resume({"a": 1}) is None
    for u in loop:
        if loop.due_log(u):
            loop.log(u, {"loss": torch.tensor(float(u))})
        if loop.due_eval(u):
            loop.log_eval(u, {"eval/return_mean": 1.0})
        if loop.due_checkpoint(u):
            loop.save(u, {"config": {"a": 1}, "x": torch.tensor([u])})
    loop.close()
    assert [p.name for p in loop.checkpoints()] == ["update_000000009.pt", "update_000000010.pt"]
    log = tmp_path / "metrics.csv"  # the library's one layout: components train and eval
    assert [(r["step"], r["return_mean"]) for r in read_metrics(log, "eval")] == [(4, 1.0), (8, 1.0), (10, 1.0)]
    assert [(r["step"], r["loss"]) for r in read_metrics(log, "train")][-1] == (10, 10.0)
    # Pretend the run died after update 9: the newest checkpoint is 9, rows past it are dropped.
    loop.checkpoints()[-1].unlink()
    again = TrainLoop(tmp_path, total_updates=12, checkpoint_every=3, eval_every=4, log_every=2, progress=False)
    state = again.resume({"a": 1})
    assert state is not None and again.start == 9 and state["x"].item() == 9
    assert [r["step"] for r in read_metrics(log, "train")] == [2, 4, 6, 8]
    assert [r["step"] for r in read_metrics(log, "eval")] == [4, 8]
    assert list(again) == [10, 11, 12]
    again.close()
    with pytest.raises(ValueError, match="a: 1 -> 2"):
        TrainLoop(tmp_path, total_updates=12, checkpoint_every=3, eval_every=0, progress=False).resume({"a": 2})
    with pytest.raises(ValueError, match="past total_updates"):
        TrainLoop(tmp_path, total_updates=5, checkpoint_every=3, eval_every=0, progress=False).resume({"a": 1})


def test_train_loop_skips_corrupt_newest_checkpoint(tmp_path: Path) -> None:
    loop = TrainLoop(tmp_path, total_updates=4, checkpoint_every=2, eval_every=0, progress=False)
    for u in loop:
        if loop.due_checkpoint(u):
            loop.save(u, {"config": {}})
    loop.checkpoints()[-1].write_bytes(b"truncated")
    again = TrainLoop(tmp_path, total_updates=4, checkpoint_every=2, eval_every=0, progress=False)
    with pytest.warns(UserWarning, match="unreadable"):
        again.resume({})
    assert again.start == 2


def test_critic_loads_into_world_model_head() -> None:
    heads = pytest.importorskip("itpo_wrap.world_model.heads")
    _, critic = _nets()
    low, high = np.array([-2.0]), np.array([2.0])
    head = heads.CriticHead.from_twin_q(critic, action_low=low, action_high=high)
    obs, a_env = torch.randn(6, 3), torch.rand(6, 1) * 4 - 2
    a_scaled = torch.as_tensor(to_policy_numpy(a_env.numpy(), low.astype(np.float32), high.astype(np.float32)))
    assert torch.allclose(head(obs, a_env), critic.q_min(obs, a_scaled), atol=1e-5)


def test_fp32_output_layer_under_bf16_autocast() -> None:
    import copy

    from itpo_lab.offline import keep_output_layer_fp32

    _, critic = _nets()
    with torch.no_grad():
        critic.q1[-1].bias.fill_(300.0)
    obs, act = torch.randn(16, 3), torch.rand(16, 1)
    exact = critic(obs, act)[0]
    with torch.autocast("cpu", torch.bfloat16):
        rounded = critic(obs, act)[0]
    keep_output_layer_fp32(critic.q1)
    target = copy.deepcopy(critic)
    with torch.autocast("cpu", torch.bfloat16):
        kept, kept_target = critic(obs, act)[0], target(obs, act)[0]
    assert rounded.dtype == torch.bfloat16 and kept.dtype == torch.float32 and kept_target.dtype == torch.float32
    assert (kept - exact).abs().max() < 0.25 * (rounded.float() - exact).abs().max()
    assert set(critic.state_dict()) == set(TwinQ(3, 1, [32, 32], layernorm=True).state_dict())
    with pytest.raises(TypeError, match="nn.Linear"):
        keep_output_layer_fp32(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
