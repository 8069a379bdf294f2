"""Training: a toy linear system is learned, checkpoints resume exactly, metrics and evaluation,
and the CLI front end."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.training import WorldModelTrainConfig, commands, fit_fqe, train_world_model
from itpo_wrap.training.evaluate import evaluate_world_model, summary_rows
from itpo_wrap.training.loop import Component, MetricsLog, fit_component
from itpo_wrap.world_model import (
    DiffusionConfig,
    HeadsConfig,
    MeanFlowConfig,
    MLPDynamicsConfig,
    NetConfig,
    WorldModel,
    WorldModelLike,
)

# torch.func.jvp (MeanFlow's loss) triggers torch's own torch.jit.script deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
torch.set_num_threads(1)
OBS, ACT = 3, 2
A_MAT = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]])
B_MAT = np.array([[0.5, 0.0], [0.0, 0.5], [0.3, -0.3]])
NET = NetConfig(hidden_dim=64, num_blocks=1, time_embed_dim=8, max_frequency=8.0)
HEADS = HeadsConfig(reward_hidden=(32,), termination_hidden=(16,), critic_hidden=(32,))


def toy_dataset(n_episodes: int = 24, length: int = 40, seed: int = 0, terminate: bool = False) -> OfflineDataset:
    """s' = A s + B a with uniform random actions; reward -|s'|^2; optionally terminate when s'_0 > 2."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_episodes):
        obs, acts, term = [rng.normal(size=OBS)], [], []
        for _ in range(length):
            acts.append(rng.uniform(-1, 1, ACT))
            obs.append(A_MAT @ obs[-1] + B_MAT @ acts[-1])
            term.append(terminate and obs[-1][0] > 1.0)
            if term[-1]:
                break
        t = len(acts)
        episodes.append({"observations": np.array(obs), "actions": np.array(acts),
                         "rewards": -np.square(np.array(obs[1:])).sum(axis=1), "terminations": np.array(term),
                         "truncations": np.r_[np.zeros(t - 1, bool), not term[-1]]})
    return OfflineDataset.from_episodes(episodes, env_id="Toy-v0")


TOY_KINDS = {"diffusion": lambda: DiffusionConfig(num_train_timesteps=50, num_inference_steps=5, net=NET),
             "meanflow": lambda: MeanFlowConfig(net=NET, teacher_ratio=0.0), "mlp": lambda: MLPDynamicsConfig(net=NET)}


def toy_config(kind: str, steps: int = 600, **kw) -> WorldModelTrainConfig:
    base = dict(dynamics=kind, dynamics_config=TOY_KINDS[kind](), heads=HEADS, dynamics_steps=steps, reward_steps=300,
                termination_steps=200, critic_steps=50, batch_size=64, lr=3e-3, warmup_steps=50, log_every=50,
                eval_every=300, checkpoint_every=200, workers=1, baseline=False, device="cpu")
    base.update(kw)
    return WorldModelTrainConfig(**base)


@pytest.mark.parametrize(("kind", "steps", "tol"), [("mlp", 400, 0.05), ("diffusion", 800, 0.15), ("meanflow", 300, 0.15)])
def test_recovers_known_linear_dynamics(tmp_path, kind: str, steps: int, tol: float) -> None:
    data = toy_dataset()
    wm = train_world_model(data, toy_config(kind, steps), tmp_path / "wm.pt", progress=False)
    assert isinstance(wm, WorldModelLike)
    gen = torch.Generator().manual_seed(0)
    s = torch.as_tensor(data.observations[:200])
    a = torch.rand(200, ACT, generator=gen) * 2 - 1
    true = s @ torch.tensor(A_MAT.T, dtype=torch.float32) + a @ torch.tensor(B_MAT.T, dtype=torch.float32)
    pred = wm.next(s, a, wm.draw_noise(200, 1, gen)[0])
    rmse_state_std = ((pred - true) / wm.obs_std).pow(2).mean().sqrt()
    assert rmse_state_std < tol, f"{kind}: one-step RMSE {float(rmse_state_std):.3f} state std >= {tol}"
    assert WorldModel.load(tmp_path / "wm.pt").info["dataset_id"] == ""


def _one_step_rmse(wm: WorldModel, data: OfflineDataset) -> float:
    gen = torch.Generator().manual_seed(0)
    s = torch.as_tensor(data.observations[:200])
    a = torch.rand(200, ACT, generator=gen) * 2 - 1
    true = s @ torch.tensor(A_MAT.T, dtype=torch.float32) + a @ torch.tensor(B_MAT.T, dtype=torch.float32)
    with torch.no_grad():
        pred = wm.next(s, a, wm.draw_noise(200, 1, gen)[0])
    return float(((pred - true) / wm.obs_std).pow(2).mean().sqrt())


def test_meanflow_teacher_rows_distil_a_diffusion_sampler(tmp_path) -> None:
    """MeanFlow with ``teacher_ratio`` learns its one-step point from a diffusion bundle's DDIM map; the
    teacher must come from the same split (normalizers) and is only accepted with teacher_ratio > 0."""
    from itpo_wrap.world_model.meanflow import ddim_teacher

    data = toy_dataset()
    teacher = train_world_model(data, toy_config("diffusion", 800), tmp_path / "teacher.pt", progress=False)
    run = ddim_teacher(teacher.dynamics, steps=5)
    s_n, a_n, z = torch.randn(6, OBS), torch.randn(6, ACT), torch.randn(6, OBS)
    assert torch.equal(run(s_n, a_n, z), run(s_n, a_n, z))  # a fixed map of z
    assert not torch.allclose(run(s_n, a_n, z), run(s_n, a_n, -z))  # that depends on z
    cfg = toy_config("meanflow", 300, dynamics_config=MeanFlowConfig(net=NET, teacher_ratio=0.5))
    student = train_world_model(data, cfg, tmp_path / "mf.pt", teacher=teacher, progress=False)
    assert _one_step_rmse(student, data) < 0.15
    rows = list(csv.DictReader((tmp_path / "mf.pt.run" / "metrics.csv").read_text().splitlines()))
    assert "dynamics/teacher_mse" in {r["metric"] for r in rows}
    with pytest.raises(ValueError, match="teacher_ratio"):
        train_world_model(data, cfg, tmp_path / "x.pt", progress=False)  # teacher rows without a teacher
    with pytest.raises(ValueError, match="teacher"):
        train_world_model(data, toy_config("meanflow", 10), tmp_path / "y.pt", teacher=teacher, progress=False)
    other = train_world_model(toy_dataset(seed=1), toy_config("diffusion", 5, reward_steps=5), tmp_path / "o.pt",
                              progress=False)
    with pytest.raises(ValueError, match="normalizer .* differs"):
        train_world_model(data, cfg, tmp_path / "z.pt", teacher=other, progress=False)
    with pytest.raises(ValueError, match="must be a diffusion model"):
        ddim_teacher(student.dynamics)


def test_bundle_with_baseline_heads_and_evaluation(tmp_path) -> None:
    data = toy_dataset(terminate=True)
    assert data.terminations.any()
    cfg = toy_config("mlp", 200, baseline=True, workers=2)
    wm = train_world_model(data, cfg, tmp_path / "wm.pt", progress=False, policy=lambda o: torch.zeros(o.shape[0], ACT))
    assert wm.baseline is not None and wm.critic is not None and wm.info["critic_source"] == "fqe"
    assert not wm.termination_head.never_terminates
    result = evaluate_world_model(wm, data, horizon=4)
    assert result["episodes"] == len(wm.info["holdout_episode_ids"])
    for key in ("dynamics", "baseline"):
        assert len(result[key]["open_loop_rmse_state_std"]) == 4
        assert result[key]["one_step_rmse_state_std"] < 0.5
    assert 0.0 <= result["termination_accuracy"] <= 1.0 and np.isfinite(result["reward_rmse"])
    assert len(summary_rows(result)) == 8
    rows = list(csv.DictReader((tmp_path / "wm.pt.run" / "metrics.csv").read_text().splitlines()))
    names = {r["metric"] for r in rows}
    assert {"dynamics/mse", "baseline/val_rmse_state_std", "reward/val_rmse", "termination/val_acc",
            "critic/td_mse"} <= names


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, ema_decay: float) -> None:
    """Crash at step 25, resume from the step-20 checkpoint: the result equals a clean run (with the
    weight average, its state is checkpointed too)."""
    cfg = toy_config("mlp", log_every=5, eval_every=100, checkpoint_every=10, ema_decay=ema_decay)
    x = torch.randn(64, 4)

    def make(crash_at: int | None) -> Component:
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 1)
        calls = {"n": 0}

        def loss(gen: torch.Generator):
            calls["n"] += 1
            if crash_at is not None and calls["n"] == crash_at:
                raise KeyboardInterrupt
            i = torch.randint(0, 64, (8,), generator=gen)
            out = net(x[i]).pow(2).mean()
            return out, {"mse": out.detach()}

        return Component("part", net, loss, 30)

    def run(comp: Component, run_dir) -> None:
        run_dir.mkdir(exist_ok=True)
        log = MetricsLog(run_dir)
        try:
            fit_component(comp, cfg, run_dir, log, seed=3, progress=False)
        finally:
            log.close()

    clean = make(None)
    run(clean, tmp_path / "clean")
    crashing = make(25)
    with pytest.raises(KeyboardInterrupt):
        run(crashing, tmp_path / "crash")
    resumed = make(None)
    run(resumed, tmp_path / "crash")
    for p, q in zip(clean.module.parameters(), resumed.module.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_ema_final_weights_are_the_warm_started_average(tmp_path) -> None:
    """With ``ema_decay`` the part ends with the average of its live weights after every update, at decay
    ``min(d, (1 + n) / (10 + n))``; evaluation during training sees the average, training the live ones."""
    cfg = toy_config("mlp", log_every=5, eval_every=10, checkpoint_every=100, ema_decay=0.8)
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    x = torch.randn(64, 4)
    init = [p.detach().clone() for p in net.parameters()]
    live: list[list[torch.Tensor]] = []
    seen_in_eval: list[torch.Tensor] = []

    def loss(gen: torch.Generator):
        out = net(x[torch.randint(0, 64, (8,), generator=gen)]).pow(2).mean()
        return out, {"mse": out.detach()}

    def evaluate() -> dict[str, float]:
        seen_in_eval.append(net.weight.detach().clone())
        return {"w": float(net.weight.sum())}

    comp = Component("part", net, loss, 20, evaluate=evaluate,
                     after_step=lambda: live.append([p.detach().clone() for p in net.parameters()]))
    log = MetricsLog(tmp_path)
    fit_component(comp, cfg, tmp_path, log, seed=1, progress=False)
    log.close()
    avg = [t.clone() for t in init]
    for n, weights in enumerate(live):
        d = min(0.8, (1.0 + n) / (10.0 + n))
        avg = [a + (1 - d) * (w - a) for a, w in zip(avg, weights, strict=True)]
        if n == 9:  # the first evaluation ran after update 10
            torch.testing.assert_close(seen_in_eval[0], avg[0])
    for p, a in zip(net.parameters(), avg, strict=True):
        torch.testing.assert_close(p, a)
    assert not torch.equal(net.weight, live[-1][0])  # the average, not the last live weights
    with pytest.raises(ValueError, match="ema_decay"):
        toy_config("mlp", ema_decay=1.0)


def test_resume_refuses_another_config(tmp_path) -> None:
    data = toy_dataset(n_episodes=4, length=10)
    train_world_model(data, toy_config("mlp", 20, reward_steps=10), tmp_path / "wm.pt", progress=False)
    with pytest.raises(ValueError, match="dynamics_steps.*--no-resume"):
        train_world_model(data, toy_config("mlp", 30, reward_steps=10), tmp_path / "wm.pt", progress=False)
    train_world_model(data, toy_config("mlp", 30, reward_steps=10), tmp_path / "wm.pt", progress=False, resume=False)


def test_resume_accepts_another_sampler_step_count_and_a_run_dir_from_before_the_registry(tmp_path) -> None:
    data = toy_dataset(n_episodes=4, length=10)
    out = tmp_path / "wm.pt"
    first = toy_config("meanflow", 20, reward_steps=10)
    train_world_model(data, first, out, progress=False)
    again = toy_config("meanflow", 20, reward_steps=10,
                       dynamics_config=MeanFlowConfig(net=NET, teacher_ratio=0.0, num_inference_steps=2))
    wm = train_world_model(data, again, out, progress=False)
    assert wm.dynamics.cfg.num_inference_steps == 2 and len(wm.dynamics._widths) == 2
    with pytest.raises(ValueError, match="flow_ratio"):
        train_world_model(data, toy_config("meanflow", 20, reward_steps=10, dynamics_config=MeanFlowConfig(
            net=NET, teacher_ratio=0.0, flow_ratio=0.5)), out, progress=False)
    # the old form: one section per kind, the removed MeanFlow options stored at their no-op values, no
    # teacher_ratio (plain MeanFlow was the default then)
    old = first.to_dict()
    section = {k: v for k, v in old.pop("dynamics_config").items() if k != "teacher_ratio"}
    old["meanflow"] = {**section, "boundary_ratio": 0.0, "prediction": "x", "tilt_eta": 0.0, "tilt_sigma": 0.2}
    old["diffusion"] = json.loads(json.dumps(dataclasses.asdict(DiffusionConfig(num_train_timesteps=70, net=NET))))
    (tmp_path / "wm.pt.run" / "config.json").write_text(json.dumps(old))
    assert WorldModelTrainConfig.from_dict(old) == first
    train_world_model(data, first, out, progress=False)  # the same run: resumed, not refused
    old["meanflow"]["tilt_eta"] = 1.0
    (tmp_path / "wm.pt.run" / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="tilt_eta=1.0"):
        train_world_model(data, first, out, progress=False)


def test_training_rejects_bad_data_and_a_missing_teacher(tmp_path) -> None:
    data = toy_dataset(n_episodes=4, length=10)
    bad = OfflineDataset(**{**{f: getattr(data, f) for f in ("actions", "rewards", "next_observations", "next_actions",
                                                               "terminations", "truncations", "episode_ids",
                                                               "next_action_valid")},
                            "observations": np.where(np.arange(len(data))[:, None] == 3, np.nan, data.observations)})
    with pytest.raises(ValueError, match=r"NaN/inf in observations \(rows \[3\]"):
        train_world_model(bad, toy_config("mlp", 10), progress=False, run_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="shipped recipe.*--teacher-ratio 0"):  # MeanFlowConfig()'s teacher rows
        train_world_model(data, WorldModelTrainConfig(dynamics="meanflow"), progress=False, run_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="does not train from one"):
        train_world_model(data, toy_config("mlp", 10), progress=False, run_dir=tmp_path / "r", teacher=object())


def test_meanflow_and_fit_fqe(tmp_path) -> None:
    data = toy_dataset(n_episodes=4, length=10)
    cfg = toy_config("meanflow", 20, reward_steps=5)
    wm = train_world_model(data, cfg, progress=False, run_dir=tmp_path / "r")
    critic = fit_fqe(lambda o: torch.zeros(o.shape[0], ACT), data, cfg, run_dir=tmp_path / "fqe", progress=False)
    wm.set_critic(critic)
    assert wm.value(torch.zeros(2, OBS), torch.zeros(2, ACT)).shape == (2,)


def test_cli_train_and_eval(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = toy_dataset(n_episodes=6, length=12)
    monkeypatch.setattr(commands, "_load_dataset", lambda _: data)
    parser = argparse.ArgumentParser(prog="itpo")
    commands.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "wm.pt"
    args = parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", "diffusion", "--out", str(out),
                              "--steps", "20", "--reward-steps", "10", "--termination-steps", "5", "--hidden", "16",
                              "--blocks", "1", "--train-timesteps", "20", "--sampling-steps", "4", "--workers", "1",
                              "--no-progress"])
    assert args.func(args) == 0 and out.exists()
    wm = WorldModel.load(out)
    assert wm.dynamics.cfg.num_inference_steps == 4 and wm.baseline is not None
    args = parser.parse_args(["eval-world-model", "--model", str(out), "--dataset", "toy", "--horizon", "3",
                              "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "mlp baseline" in text and "termination" in text
    assert (tmp_path / "r.csv").read_text().startswith("model,horizon,rmse,rmse_state_std")


def test_cli_meanflow_with_teacher_gate_and_ema(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_dataset(n_episodes=6, length=12)
    monkeypatch.setattr(commands, "_load_dataset", lambda _: data)
    parser = argparse.ArgumentParser(prog="itpo")
    commands.register(parser.add_subparsers(dest="command"))
    small = ["--steps", "20", "--reward-steps", "10", "--termination-steps", "5", "--hidden", "16", "--blocks", "1",
             "--workers", "1", "--no-progress", "--no-baseline"]
    teacher = tmp_path / "teacher.pt"
    args = parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", "diffusion", "--out",
                              str(teacher), "--train-timesteps", "20", *small])
    assert args.func(args) == 0
    assert not WorldModel.load(teacher).dynamics.cfg.net.x_gate  # the diffusion kind's default net
    out = tmp_path / "mf.pt"
    args = parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", "meanflow", "--out", str(out),
                              "--teacher", str(teacher), "--adaptive-p", "0", "--ema-decay", "0.9", *small])
    assert args.func(args) == 0
    wm = WorldModel.load(out)
    cfg = wm.dynamics.cfg
    # the shipped recipe is the kind's default: teacher rows, gated input, frequencies up to 4
    assert cfg.teacher_ratio == 0.25 and cfg.net.x_gate and cfg.net.max_frequency == 4.0 and cfg.adaptive_p == 0.0
    assert cfg.net.hidden_dim == 16 and wm.info["train_config"]["ema_decay"] == 0.9
    plain = parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", "meanflow", "--out", "x.pt",
                               "--teacher-ratio", "0", "--no-x-gate", "--max-frequency", "32"])
    assert commands.config_from_args(plain).dynamics_config == MeanFlowConfig(teacher_ratio=0.0, net=NetConfig())
    monkeypatch.setattr(commands, "_load_dataset", lambda _: pytest.fail("the dataset was read before the check"))
    with pytest.raises(ValueError, match="--teacher wm_diffusion.pt"):  # the recipe without its teacher
        commands.train_command(parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics", "meanflow",
                                                  "--out", str(tmp_path / "y.pt")]))
    with pytest.raises(ValueError, match=r"--train-timesteps set .*num_train_timesteps.*\(MeanFlowConfig\)"):
        commands.config_from_args(parser.parse_args(["train-world-model", "--dataset", "toy", "--dynamics",
                                                     "meanflow", "--out", "x.pt", "--train-timesteps", "20"]))
