"""policies/td3_bc.py and policies/rebrac.py on small synthetic Pendulum data: end-to-end runs,
exact resumes, TD targets that stop only at terminations, ReBRAC's beta table."""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_lab.offline import Batch, load_offline_policy, parse_args
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.networks import TanhActor, TwinQ
from itpo_wrap.training.metrics import read_metrics
from tests.scripts import load_script, policy_script


@pytest.fixture(scope="module")
def pendulum() -> OfflineDataset:
    """Six 200-step episodes of uniform random actions in Pendulum-v1 (Box [-2, 2])."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    episodes = []
    for i in range(6):
        obs, _ = env.reset(seed=i)
        cols: dict[str, list] = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            a = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, r, term, trunc, _ = env.step(a)
            for k, v in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                            (obs, a, r, term, trunc), strict=True):
                cols[k].append(v)
            done = term or trunc
        episodes.append({k: np.asarray(v) for k, v in cols.items()})
    return OfflineDataset.from_episodes(episodes, dataset_id="test/pendulum/random-v0", env_id="Pendulum-v1",
                                        action_space=env.action_space, ref_min_score=-1500.0, ref_max_score=-150.0)


def _args(algo: str, run_dir: Path, **kw):
    extra = {"actor_bc_coef": 0.1, "critic_bc_coef": 0.1} if algo == "rebrac" else {}
    base = dict(dataset="test/pendulum/random-v0", run_dir=str(run_dir), total_updates=200, batch_size=64, hidden=32,
                eval_every=100, eval_episodes=1, checkpoint_every=50, log_every=25, progress=False)
    return policy_script(algo).Args(**{**base, **extra, **kw})


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_trainer_end_to_end(algo: str, pendulum: OfflineDataset, tmp_path: Path) -> None:
    path = policy_script(algo).main(_args(algo, tmp_path), dataset=pendulum)
    actor, critic, meta = load_offline_policy(path)
    assert isinstance(actor, TanhActor) and isinstance(critic, TwinQ)
    assert meta["algorithm"] == algo and meta["updates"] == 200 and meta["env_id"] == "Pendulum-v1"
    assert meta["action_low"] == [-2.0] and meta["action_high"] == [2.0]
    if algo == "rebrac":  # ReBRAC: 3 hidden layers (256 by default, 32 here), LayerNorm critic, raw states
        assert actor.arch()["hidden"] == [32] * 3 and critic.arch()["hidden"] == [32] * 3
        assert critic.arch()["layernorm"] is True and actor.arch()["layernorm"] is False
        assert torch.equal(meta["obs_normalizer"]["std"], torch.ones(3)) and meta["config"]["betas_used"] == [0.1, 0.1]
        assert isinstance(meta["config"]["bf16"], bool)  # "auto" (None) is stored resolved
    else:  # TD3+BC: 2 hidden layers, fitted state normalizer
        assert actor.arch()["hidden"] == [32] * 2 and critic.arch()["layernorm"] is False
        assert torch.allclose(meta["obs_normalizer"]["mean"], torch.as_tensor(pendulum.observations.mean(0)), atol=1e-4)
    rows = read_metrics(tmp_path / "metrics.csv", "eval")
    assert [r["step"] for r in rows] == [100, 200] and rows[-1]["episodes"] == 1
    assert meta["info"]["eval"]["return_mean"] == pytest.approx(rows[-1]["return_mean"], rel=1e-5)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.csv", "train")] == list(range(25, 201, 25))
    obs = torch.as_tensor(pendulum.observations[:32])
    a = actor(obs)
    assert a.shape == (32, 1) and a.abs().max() <= 1.0
    q1, q2 = critic(obs, a)
    assert q1.shape == q2.shape == (32, 1) and not torch.equal(q1, q2)


def test_zoo_entry_keeps_the_learning_curve(pendulum: OfflineDataset, tmp_path: Path) -> None:
    """--zoo-dir adds the policy and its run's metrics.csv (runs/ is not kept) to the entry and card."""
    from itpo_wrap import zoo

    run_dir, root = tmp_path / "run", tmp_path / "zoo"
    policy_script("rebrac").main(_args("rebrac", run_dir, zoo_dir=str(root)), dataset=pendulum)
    entry = zoo.read_entry("pendulum-random", root)
    spec = entry["policies"]["rebrac"]
    assert spec["metrics_log"] == "rebrac_metrics.csv" and spec["metrics_components"] == ["eval", "train"]
    assert spec["updates"] == 200 and "eval_curve" not in spec and "train_log" not in spec
    assert spec["provenance"]["program"] == "policies/rebrac.py"
    assert spec["provenance"]["args"]["run_dir"] is None  # where the run lived is not how to remake it
    assert spec["provenance"]["args"]["total_updates"] == 200 and spec["provenance"]["args"]["zoo_dir"] == str(root)
    card = (root / "pendulum-random" / "MODEL_CARD.md").read_text()
    assert (root / "pendulum-random" / "rebrac_metrics.csv").read_bytes() == (run_dir / "metrics.csv").read_bytes()
    assert "Log: `rebrac_metrics.csv` (the `metrics.csv` layout): component `eval`, every evaluation" in card
    assert zoo.load("pendulum-random", root=root).policy_name == "rebrac"


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_resume_after_crash_is_exact(algo: str, pendulum: OfflineDataset, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = policy_script(algo)
    straight = load_offline_policy(module.main(_args(algo, tmp_path / "straight", eval_every=0), dataset=pendulum))

    real_update, calls = module.update, {"n": 0}

    def crashing_update(*a, **k):
        calls["n"] += 1
        if calls["n"] > 130:
            raise KeyboardInterrupt  # killed between the checkpoints at 100 and 150
        return real_update(*a, **k)

    monkeypatch.setattr(module, "update", crashing_update)
    with pytest.raises(KeyboardInterrupt):
        module.main(_args(algo, tmp_path / "resumed", eval_every=0), dataset=pendulum)
    monkeypatch.setattr(module, "update", real_update)
    assert not (tmp_path / "resumed" / "policy.pt").exists()

    seen: list[int] = []
    monkeypatch.setattr(module, "update", lambda u, *a, **k: (seen.append(u), real_update(u, *a, **k))[1])
    resumed = load_offline_policy(module.main(_args(algo, tmp_path / "resumed", eval_every=0), dataset=pendulum))
    assert seen[0] == 101 and seen[-1] == 200  # continued from the checkpoint's update count
    for a, b in zip(straight[:2], resumed[:2], strict=True):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), f"{k} differs after resume"
    updates = [r["step"] for r in read_metrics(tmp_path / "resumed" / "metrics.csv", "train")]
    assert updates == list(range(25, 201, 25))  # rows logged after the checkpoint were dropped, none duplicated


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_the_loop_leaves_the_numerics_to_the_update(algo: str, pendulum: OfflineDataset, tmp_path: Path) -> None:
    """main() with its logs, evaluations and checkpoints ends with the weights of a bare loop over build()'s parts:
    the shared loop draws nothing and changes nothing, so a seed trains the same policy as before the loop was
    shared (the stored commands remake the zoo's weights)."""
    args = _args(algo, tmp_path, total_updates=120, eval_every=60, checkpoint_every=40, log_every=30,
                 **({"bf16": False} if algo == "rebrac" else {}))
    actor, critic, _ = load_offline_policy(policy_script(algo).main(args, dataset=pendulum))
    parts = policy_script(algo).build(args, pendulum)
    for u in range(1, 121):
        parts.step(u, parts.data.sample(parts.args.batch_size, parts.generator))
    for trained, bare in ((actor, parts.nets["actor"]), (critic, parts.nets["critic"])):
        for (k, x), (_, y) in zip(trained.state_dict().items(), bare.state_dict().items(), strict=True):
            assert torch.equal(x, y), f"{k} differs from the bare loop"


def test_resume_refuses_other_settings(pendulum: OfflineDataset, tmp_path: Path) -> None:
    module = policy_script("td3_bc")
    module.main(_args("td3_bc", tmp_path, total_updates=50, eval_every=0), dataset=pendulum)
    with pytest.raises(ValueError, match="alpha"):
        module.main(_args("td3_bc", tmp_path, total_updates=100, eval_every=0, alpha=1.0), dataset=pendulum)


def _batch(terminations: list[float], valid: list[float]) -> Batch:
    n = len(terminations)
    g = torch.Generator().manual_seed(1)
    return Batch(torch.randn(n, 3, generator=g), torch.rand(n, 1, generator=g) * 2 - 1, torch.randn(n, 1, generator=g),
                 torch.randn(n, 3, generator=g), torch.rand(n, 1, generator=g) * 2 - 1,
                 torch.tensor(terminations).reshape(n, 1), torch.tensor(valid).reshape(n, 1))


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_terminations_stop_bootstrap_truncations_do_not(algo: str) -> None:
    module = policy_script(algo)
    args = module.Args(dataset="test/pendulum/random-v0", actor_bc_coef=0.0, critic_bc_coef=0.0, bf16=False) \
        if algo == "rebrac" else module.Args()
    torch.manual_seed(0)
    actor, critic = TanhActor(3, 1, [16]), TwinQ(3, 1, [16])
    with torch.no_grad():  # make Q' large so a wrong mask cannot hide in the noise
        critic.q1[-1].bias.fill_(50.0)
        critic.q2[-1].bias.fill_(60.0)
    batch = _batch([1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0])
    extra = (0.0,) if algo == "rebrac" else ()
    y = module.td_target(batch, actor, critic, args, *extra, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # replay the same target-policy noise by hand
    eps = (torch.randn(batch.actions.shape, generator=g) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
    next_a = (actor(batch.next_observations) + eps).clamp(-1, 1)
    q_next = critic.q_min(batch.next_observations, next_a).detach().reshape(-1, 1)
    assert torch.equal(y[[0, 2]], batch.rewards[[0, 2]])  # terminated: no bootstrap at all
    assert torch.allclose(y[[1, 3]], batch.rewards[[1, 3]] + args.gamma * q_next[[1, 3]], atol=1e-5)


def test_rebrac_critic_penalty_uses_next_actions_where_known() -> None:
    module = policy_script("rebrac")
    args = module.Args(dataset="test/pendulum/random-v0", actor_bc_coef=0.0, critic_bc_coef=0.0, bf16=False)
    actor, critic = TanhActor(3, 1, [16]), TwinQ(3, 1, [16])
    batch = _batch([0.0, 0.0], [1.0, 0.0])
    y0 = module.td_target(batch, actor, critic, args, 0.0, torch.Generator().manual_seed(3))
    y1 = module.td_target(batch, actor, critic, args, 2.0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    eps = (torch.randn(batch.actions.shape, generator=g) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
    next_a = (actor(batch.next_observations) + eps).clamp(-1, 1).detach()
    expected = args.gamma * 2.0 * ((next_a[0] - batch.next_actions[0]) ** 2).sum()
    assert torch.allclose(y0[0] - y1[0], expected, atol=1e-6) and expected > 0
    assert torch.equal(y0[1], y1[1])  # next action unknown: no penalty


def test_default_architectures() -> None:
    rebrac, td3_bc = policy_script("rebrac").Args(), policy_script("td3_bc").Args()
    assert (rebrac.hidden, rebrac.actor_n_hidden, rebrac.critic_n_hidden, rebrac.batch_size) == (256, 3, 3, 1024)
    assert rebrac.critic_layernorm and not rebrac.actor_layernorm and rebrac.actor_lr == rebrac.critic_lr == 1e-3
    assert (td3_bc.hidden, td3_bc.n_hidden, td3_bc.batch_size, td3_bc.alpha) == (256, 2, 256, 2.5)


def test_rebrac_betas_table() -> None:
    Args = policy_script("rebrac").Args
    assert Args(dataset="itpo/hopper/medium-replay-v0").betas() == (0.05, 0.5)
    assert Args(dataset="itpo/halfcheetah/medium-v0").betas() == (0.001, 0.01)
    assert Args(dataset="itpo/walker2d/medium-expert-v0", critic_bc_coef=0.3).betas() == (0.05, 0.3)
    with pytest.raises(ValueError, match="--actor-bc-coef"):
        Args(dataset="itpo/ant/medium-v0").betas()


def test_parse_args_types() -> None:
    Args = policy_script("rebrac").Args
    args = parse_args(Args, ["--dataset", "itpo/hopper/medium-v0", "--total-updates", "7", "--no-critic-layernorm",
                             "--bf16", "--actor-bc-coef", "0.2", "--zoo-dir", "none"])
    assert args.total_updates == 7 and args.critic_layernorm is False and args.bf16 is True
    assert parse_args(Args, []).bf16 is None and parse_args(Args, ["--no-bf16"]).bf16 is False
    assert args.actor_bc_coef == 0.2 and args.critic_bc_coef is None and args.zoo_dir is None
    with pytest.raises(ValueError, match="total-updates"):
        Args(total_updates=0)


def test_actor_step_leaves_critic_trainable_and_targets_lag(pendulum: OfflineDataset) -> None:
    module = policy_script("td3_bc")
    from itpo_lab.offline import TransitionTensors

    args = module.Args(batch_size=32)
    actor, critic = TanhActor(3, 1, [32]), TwinQ(3, 1, [32])
    nets = {"actor": actor, "critic": critic, "actor_target": copy.deepcopy(actor).requires_grad_(False),
            "critic_target": copy.deepcopy(critic).requires_grad_(False)}
    opts = {"actor": torch.optim.Adam(actor.parameters(), 3e-4), "critic": torch.optim.Adam(critic.parameters(), 3e-4)}
    data, g = TransitionTensors(pendulum), torch.Generator().manual_seed(0)
    before = copy.deepcopy(nets["critic_target"].state_dict())
    module.update(1, data.sample(32, g), nets, opts, args, g)  # critic only: targets untouched
    assert all(torch.equal(before[k], v) for k, v in nets["critic_target"].state_dict().items())
    metrics = module.update(2, data.sample(32, g), nets, opts, args, g)
    assert "actor_loss" in metrics and all(p.requires_grad for p in critic.parameters())
    assert not all(torch.equal(before[k], v) for k, v in nets["critic_target"].state_dict().items())


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_build_gives_the_update_main_trains(algo: str, pendulum: OfflineDataset) -> None:
    """build() is what main() trains: its step moves the critic, and the same seed builds the same networks."""
    parts = policy_script(algo).build(_args(algo, Path("unused")), pendulum)
    again = policy_script(algo).build(_args(algo, Path("unused")), pendulum)
    for key in ("actor", "critic"):
        for a, b in zip(parts.nets[key].parameters(), again.nets[key].parameters(), strict=True):
            assert torch.equal(a, b)
    before = [p.detach().clone() for p in parts.nets["critic"].parameters()]
    metrics = parts.step(2, parts.data.sample(parts.args.batch_size, parts.generator))
    assert "critic_loss" in metrics and "actor_loss" in metrics  # update 2: an actor step too (policy_freq 2)
    assert any(not torch.equal(b, p) for b, p in zip(before, parts.nets["critic"].parameters(), strict=True))
    assert isinstance(parts.args.bf16, bool)  # resolved


def test_profile_trainer_runs(pendulum: OfflineDataset, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import itpo_lab.offline.run as run

    module = load_script("benchmarks", "profile_trainer")
    monkeypatch.setattr(run, "load_offline_dataset", lambda dataset_id: pendulum)
    module.main(["--algo", "td3_bc", "--dataset", "test/pendulum/random-v0", "--updates", "3", "--profile-updates", "2"])
    out = capsys.readouterr().out
    assert "td3_bc on test/pendulum/random-v0, 1 thread(s):" in out and "updates/s" in out and "aten::" in out
