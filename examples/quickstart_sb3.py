"""Quickstart: wrap a stable-baselines3 SAC model and score it with SB3's own ``evaluate_policy``.

The SAC model is the Hopper expert behaviour policy shipped in ``policies/behavior/hopper``; the world
model is the zoo's (trained on ``itpo/hopper/medium-replay-v0``); the terminal value is the SAC model's
*own* twin critic. Nothing is trained or downloaded.

    .venv/bin/python examples/quickstart_sb3.py [--episodes 2] [--max-steps 1000]
"""

import argparse
from pathlib import Path

import torch
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo
from itpo_wrap.world_model.heads import CriticHead

p = argparse.ArgumentParser()
p.add_argument("--episodes", type=int, default=2)
p.add_argument("--max-steps", type=int, default=1000, help="episode cap (the test uses a few steps)")
args = p.parse_args()
torch.set_num_threads(1)

entry = zoo.load("hopper-medium-replay")
env = Monitor(TimeLimit(entry.make_env().unwrapped, max_episode_steps=args.max_steps))
model = SAC.load(Path(__file__).resolve().parents[1] / "policies" / "behavior" / "hopper" / "expert.zip", device="cpu")

world_model = entry.load_world_model("meanflow")  # comes with the zoo policy's critic ...
world_model.set_critic(CriticHead.from_sb3(model))  # ... replaced by the SAC model's own

wrapped = ITPOPolicyWrapper(model, world_model, AdaptConfig(horizon=5, particles=8, steps=2, step_size=1e-4))
for name, agent in (("SAC", model), ("SAC + ITPO", wrapped)):
    mean, std = evaluate_policy(agent, env, n_eval_episodes=args.episodes, deterministic=True)
    print(f"{name:<12} return {mean:8.1f} ± {std:.1f}")
print("last adaptation step:", {k: round(v, 4) for k, v in wrapped.last_info[0].items() if isinstance(v, float)})

# adapted weights live in the wrapper; the model itself holds the pretrained ones between calls,
# so model.save() now writes the policy it was loaded as (a tested invariant)
model.save("runs/examples/sac_hopper_expert_unchanged.zip")
