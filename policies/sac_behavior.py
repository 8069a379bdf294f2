"""Train an SB3 SAC behaviour policy online, resumably, for the D4RL-style dataset recipes.

This is the first stage of ``itpo-lab collect``: Minari's own ``mujoco/*`` datasets were made from
SB3 SAC/TQC policies on Gymnasium v5 envs (https://minari.farama.org/datasets/mujoco/); D4RL's
levels (random / medium / medium-replay / expert / medium-expert) come from one online run
(Fu et al. 2020, "D4RL", section 5). We do the same at a CPU budget (``--total-steps``, 300k by
default), one torch thread per process.

Resumable: every ``--checkpoint-every`` env steps the model, the replay buffer and an evaluation
row (10 stochastic episodes, the way the datasets are sampled) are written to ``--run-dir``.
Rerunning the same command continues from the newest checkpoint (the env restarts a fresh
episode; nothing else is lost).

Hyperparameters follow rl-baselines3-zoo's MuJoCo SAC settings (learning_starts=10000,
otherwise SB3 defaults).

Usage::

    python policies/sac_behavior.py --env Hopper-v5 --run-dir runs/behavior/hopper
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback


@dataclasses.dataclass(frozen=True)
class Args:
    env: str = "Hopper-v5"
    run_dir: str = "runs/behavior/hopper"
    total_steps: int = 300_000
    checkpoint_every: int = 10_000
    eval_episodes: int = 10
    learning_starts: int = 10_000
    seed: int = 0
    threads: int = 1


def evaluate(model: SAC, env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std return of ``model`` sampled non-deterministically (as the datasets are)."""
    env = gym.make(env_id)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


class CheckpointEval(BaseCallback):
    """Every ``every`` steps: save model + replay buffer, evaluate, append a CSV row."""

    def __init__(self, args: Args, run_dir: Path) -> None:
        super().__init__()
        self.args = args
        self.run_dir = run_dir
        self.t0 = time.time()

    def _on_step(self) -> bool:
        step = self.num_timesteps
        if step % self.args.checkpoint_every != 0:
            return True
        path = self.run_dir / f"ckpt_{step:07d}.zip"
        self.model.save(path)
        # Buffer is written to a temp name then renamed so a kill mid-write never corrupts resume.
        tmp = self.run_dir / "replay_buffer.tmp.pkl"
        self.model.save_replay_buffer(tmp)
        os.replace(tmp, self.run_dir / "replay_buffer.pkl")
        (self.run_dir / "latest").write_text(path.name)
        mean, std = evaluate(self.model, self.args.env, self.args.eval_episodes, seed=10_000)
        log = self.run_dir / "eval.csv"
        new = not log.exists()
        with log.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["step", "mean_return", "std_return", "episodes", "wall_s"])
            w.writerow([step, f"{mean:.3f}", f"{std:.3f}", self.args.eval_episodes, f"{time.time() - self.t0:.1f}"])
        print(f"[{self.args.env}] step {step}: return {mean:.1f} +- {std:.1f} ({time.time() - self.t0:.0f}s)", flush=True)
        return True


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = gym.make(args.env)
    latest = run_dir / "latest"
    if latest.exists():
        ckpt = run_dir / latest.read_text().strip()
        model = SAC.load(ckpt, env=env, device="cpu")
        model.load_replay_buffer(run_dir / "replay_buffer.pkl")
        done_steps = int(re.findall(r"\d+", ckpt.name)[0])
        # The buffer on disk may be newer than the model if a kill came between the two writes.
        assert model.replay_buffer is not None
        if model.replay_buffer.buffer_size < args.total_steps:
            raise SystemExit(
                f"--total-steps={args.total_steps} exceeds the replay buffer this run was started with "
                f"({model.replay_buffer.buffer_size}); medium-replay needs an unwrapped buffer, so start a new --run-dir"
            )
        model.replay_buffer.pos = min(model.replay_buffer.pos, done_steps)
        model.num_timesteps = done_steps
        print(f"resuming {args.env} from {ckpt.name} ({model.replay_buffer.size()} transitions)", flush=True)
    else:
        model = SAC(
            "MlpPolicy", env, learning_starts=args.learning_starts, buffer_size=args.total_steps,
            seed=args.seed, device="cpu", verbose=0,
        )
        done_steps = 0
    remaining = args.total_steps - done_steps
    if remaining > 0:
        model.learn(remaining, callback=CheckpointEval(args, run_dir), reset_num_timesteps=False)
    print(f"done: {args.env} at {model.num_timesteps} steps", flush=True)


if __name__ == "__main__":
    # the lab's one parser of the policies/ scripts, which also renders the command on the behaviour card
    from itpo_lab.offline import parse_args

    main(parse_args(Args, description=__doc__))
