"""Quickstart: wrap a plain ``torch.nn.Module`` policy (obs -> action in [-1, 1]) and run it by hand.

The policy is the zoo's TD3+BC actor for ``hopper-medium-replay`` (a plain ``nn.Module`` with its
observation normalizer inside); any module with that signature works. The world model's terminal value
is that policy's own twin critic, attached by ``entry.load_world_model``.

    .venv/bin/python examples/quickstart_torch.py [--max-steps 1000] [--kind meanflow]
"""

import argparse
import time

import numpy as np
import torch

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo

p = argparse.ArgumentParser()
p.add_argument("--max-steps", type=int, default=1000)
p.add_argument("--kind", default="meanflow", choices=["meanflow", "diffusion"])
args = p.parse_args()
torch.set_num_threads(1)

entry = zoo.load("hopper-medium-replay")
actor: torch.nn.Module = entry.actor  # obs (B, 11) -> action (B, 3) in [-1, 1]
wrapped = ITPOPolicyWrapper(actor, entry.load_world_model(args.kind), AdaptConfig(step_size=1e-4))

env = entry.make_env()
obs, _ = env.reset(seed=0)
total, steps, done, t0 = 0.0, 0, False, time.perf_counter()
while not done and steps < args.max_steps:
    action, _ = wrapped.predict(obs, episode_start=np.array([steps == 0]), deterministic=True)
    obs, reward, terminated, truncated, _ = env.step(action)
    total, steps, done = total + float(reward), steps + 1, terminated or truncated
info = wrapped.last_info[0]
print(f"return {total:.1f} over {steps} steps (normalized {float(entry.normalized_score(total)):.1f}), "
      f"{1e3 * (time.perf_counter() - t0) / steps:.1f} ms per step")
print(f"last step: J before {info['j_before']:.2f}, |grad| {info['grad_norm']:.3g}, "
      f"action change {info['action_change']:.4f}, fallback {info['fallback']}")
