"""Train a world model from a Minari dataset id, give it a critic, and wrap a policy with it.

The dataset is any local Minari id (ours: ``itpo-lab collect --env hopper --levels medium-replay``); the
policy is the zoo's TD3+BC actor, whose own critic becomes the terminal value. The command line
``itpo train-world-model`` does the same with checkpoints, resume and a held-out report.

    .venv/bin/python examples/train_world_model.py --dataset itpo/hopper/medium-replay-v0 --steps 5000
"""

import argparse
import dataclasses

import numpy as np
import torch

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo
from itpo_wrap.data import load_dataset
from itpo_wrap.training import train_world_model
from itpo_wrap.training.config import WorldModelTrainConfig
from itpo_wrap.training.evaluate import evaluate_world_model
from itpo_wrap.world_model.config import MeanFlowConfig
from itpo_wrap.world_model.heads import CriticHead

p = argparse.ArgumentParser()
p.add_argument("--dataset", default="itpo/hopper/medium-replay-v0")
p.add_argument("--dynamics", default="meanflow", choices=["meanflow", "diffusion"])
p.add_argument("--steps", type=int, default=5000, help="dynamics updates (the zoo's bundles use 50000)")
p.add_argument("--out", default="runs/examples/world_model.pt")
args = p.parse_args()
torch.set_num_threads(1)

dataset = load_dataset(args.dataset)  # a clear DatasetNotFoundError names the fix when it is missing
# The zoo's MeanFlow recipe (MeanFlowConfig()'s default) distils from the dataset's diffusion bundle
# (train_world_model(..., teacher=WorldModel.load("wm_diffusion.pt"))); this quick example trains plain MeanFlow.
plain = MeanFlowConfig(teacher_ratio=0.0) if args.dynamics == "meanflow" else None
cfg = dataclasses.replace(WorldModelTrainConfig(), dynamics=args.dynamics, dynamics_config=plain,
                          dynamics_steps=args.steps,
                          reward_steps=args.steps, termination_steps=args.steps, baseline=False,
                          eval_every=max(args.steps // 2, 1), checkpoint_every=max(args.steps // 2, 1))
wm = train_world_model(dataset, cfg, args.out, run_dir=args.out + ".run", progress=False)
print(f"one-step RMSE (held-out, state std): {evaluate_world_model(wm, dataset)['dynamics']['one_step_rmse_state_std']:.3f}")

entry = zoo.load("hopper-medium-replay")
wm.set_critic(CriticHead.from_twin_q(entry.critic))
wrapped = ITPOPolicyWrapper(entry.actor, wm, AdaptConfig(step_size=1e-4))
obs = dataset.observations[:4].astype(np.float64)  # four states as a batch of four envs
actions, _ = wrapped.predict(obs, deterministic=True)
print("adapted actions:", np.round(actions, 3).tolist())
print("action change from the base:", [round(row["action_change"], 4) for row in wrapped.last_info])
