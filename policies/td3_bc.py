"""TD3+BC: offline TD3 with a behaviour-cloning term, on an itpo (Minari) dataset, in torch on the CPU.

Sources:
- Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning" (arXiv 2106.06860),
  eq. 3: pi = argmax E[lambda Q(s, pi(s)) - (pi(s) - a)^2], lambda = alpha / mean|Q(s, a)|, alpha = 2.5,
  with state normalization; everything else is TD3.
- Fujimoto, van Hoof & Meger 2018, "Addressing Function Approximation Error in Actor-Critic Methods"
  (TD3): clipped double Q, target policy smoothing (noise 0.2 clipped at 0.5), actor and targets
  updated every 2 critic updates, Polyak tau = 0.005.
- CORL (Tarasov et al. 2022), algorithms/offline/td3_bc.py: reference hyperparameters (2 x 256 MLPs,
  Adam 3e-4, batch 256, no reward normalization).

Differences from CORL: the update budget defaults to far fewer than 1M updates (a CPU budget,
see ``Args.total_updates``); timeouts are kept as bootstrapping transitions (``truncations``) instead
of being dropped; actions are scaled to [-1, 1] from the env's Box (identity on MuJoCo).

Usage::

    python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0
    python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0 --zoo-dir policies/zoo
    python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0 --tensorboard runs/tb  # tensorboard --logdir runs/tb
    python policies/td3_bc.py --datasets itpo/hopper/medium-v0 itpo/walker2d/medium-v0 --backend ray  # Ray tasks

Writes ``runs/td3_bc/<env>-<level>-seed<seed>/`` (``metrics.csv``, ``checkpoints/``,
``policy.pt``); rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from itpo_lab.offline import (
    Batch,
    TransitionTensors,
    keep_output_layer_fp32,
    set_requires_grad,
    soft_update,
)
from itpo_lab.offline.run import TrainerParts, load_offline_dataset, require_env, train_actor_critic
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.networks import TanhActor, TwinQ
from itpo_wrap.tensorboard import check_tensorboard
from itpo_wrap.utils import set_seed

ALGORITHM = "td3_bc"
# Settings that may change when resuming a run (budget and cadence, not the experiment).
MAY_DIFFER = ("total_updates", "eval_every", "eval_episodes", "checkpoint_every", "log_every", "threads",
              "progress", "zoo_dir", "run_dir", "tensorboard")


@dataclasses.dataclass(frozen=True)
class Args:
    dataset: str = "itpo/hopper/medium-replay-v0"  # Minari id or path, read by itpo_wrap.data.load_dataset
    run_dir: str | None = None  # default runs/td3_bc/<env>-<level>-seed<seed>
    # CORL: 1M. CPU budget: ~145 updates/s (1 thread, fp32), so 100k updates is ~12 min per dataset.
    total_updates: int = 100_000
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: int = 256
    n_hidden: int = 2  # 2 x 256 (Fujimoto & Gu 2021)
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2  # in scaled action units ([-1, 1])
    noise_clip: float = 0.5
    policy_freq: int = 2
    alpha: float = 2.5
    normalize_states: bool = True
    bf16: bool = False  # bf16 autocast of hidden layers, fp32 output layers: only ~1.2x here at batch 256
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_seed: int = 1000
    checkpoint_every: int = 10_000
    log_every: int = 1000
    seed: int = 0
    threads: int = 1
    progress: bool = True
    zoo_dir: str | None = None  # also add the final policy to <zoo_dir>/<env>-<level>/td3_bc.pt
    # also write TensorBoard scalars under <DIR>/td3_bc-<run dir name>_<n> (pip install 'itpo-wrap[tensorboard]')
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        for name in ("total_updates", "batch_size", "hidden", "n_hidden", "policy_freq", "eval_episodes", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)} must be at least 1")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"tau={self.tau} must be in (0, 1] and gamma={self.gamma} in [0, 1)")


def td_target(batch: Batch, actor_target: TanhActor, critic_target: TwinQ, args: Args,
              generator: torch.Generator) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * min_i Q'_i(s', clip(pi'(s') + clip(eps, -c, c), -1, 1)).

    Only ``terminations`` stop the bootstrap; a time-limit truncation bootstraps (TD3, eq. 14-15)."""
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
        eps = torch.randn(batch.actions.shape, generator=generator) * args.policy_noise
        next_a = (actor_target(batch.next_observations) + eps.clamp(-args.noise_clip, args.noise_clip)).clamp(-1, 1)
        q1, q2 = critic_target(batch.next_observations, next_a)
    return batch.rewards + args.gamma * (1.0 - batch.terminations) * torch.min(q1, q2).float()


def update(update_idx: int, batch: Batch, nets: dict, opts: dict, args: Args,
           generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One critic update, and every ``policy_freq`` updates an actor update plus target Polyak steps."""
    actor, critic, actor_t, critic_t = nets["actor"], nets["critic"], nets["actor_target"], nets["critic_target"]
    y = td_target(batch, actor_t, critic_t, args, generator)
    with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
        q1, q2 = critic(batch.observations, batch.actions)
    critic_loss = F.mse_loss(q1.float(), y) + F.mse_loss(q2.float(), y)
    opts["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    opts["critic"].step()
    metrics = {"critic_loss": critic_loss.detach(), "q_mean": q1.detach().float().mean()}
    if update_idx % args.policy_freq == 0:
        set_requires_grad([critic], False)  # the actor step needs dQ/da only, not critic weight gradients
        with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
            pi = actor(batch.observations)
            q = critic(batch.observations, pi)[0].float()  # TD3+BC uses Q1 (Fujimoto & Gu 2021, eq. 3)
        lmbda = args.alpha / q.abs().mean().detach()
        bc = F.mse_loss(pi.float(), batch.actions)
        actor_loss = -lmbda * q.mean() + bc
        opts["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        opts["actor"].step()
        set_requires_grad([critic], True)
        soft_update(critic_t, critic, args.tau)
        soft_update(actor_t, actor, args.tau)
        metrics.update(actor_loss=actor_loss.detach(), bc_mse=bc.detach(), lmbda=lmbda)
    return metrics


def build(args: Args, dataset: OfflineDataset) -> TrainerParts:
    """Seeded networks, optimisers, minibatch source and the update step for ``dataset``."""
    set_seed(args.seed)
    data = TransitionTensors(dataset)
    norm = StateNormalizer.fit(dataset.observations) if args.normalize_states else StateNormalizer.identity(dataset.obs_dim)
    hidden = [args.hidden] * args.n_hidden
    actor = TanhActor(dataset.obs_dim, dataset.act_dim, hidden, obs_mean=norm.mean, obs_std=norm.std)
    critic = TwinQ(dataset.obs_dim, dataset.act_dim, hidden, obs_mean=norm.mean, obs_std=norm.std)
    if args.bf16:  # bf16 hidden layers, float32 outputs (Q near 300 would round to multiples of 2)
        for net in (actor.net, critic.q1, critic.q2):
            keep_output_layer_fp32(net)
    nets = {"actor": actor, "critic": critic, "actor_target": copy.deepcopy(actor).requires_grad_(False),
            "critic_target": copy.deepcopy(critic).requires_grad_(False)}
    opts = {"actor": torch.optim.Adam(actor.parameters(), lr=args.actor_lr),
            "critic": torch.optim.Adam(critic.parameters(), lr=args.critic_lr)}
    generator = torch.Generator().manual_seed(args.seed)
    return TrainerParts(args, data, nets, opts, generator, lambda u, batch: update(u, batch, nets, opts, args, generator), {})


def main(args: Args, dataset: OfflineDataset | None = None) -> Path:
    """Train (or resume) and write ``policy.pt``; ``dataset`` overrides ``args.dataset`` (tests)."""
    torch.set_num_threads(args.threads)
    check_tensorboard(args.tensorboard)  # a missing package fails before the dataset is read
    dataset = dataset if dataset is not None else load_offline_dataset(args.dataset)
    require_env(dataset, args.eval_every)
    parts = build(args, dataset)
    return train_actor_critic(parts.args, dataset, parts.data, parts.nets, parts.opts, parts.generator, parts.step,
                              algorithm=ALGORITHM, script="policies/td3_bc.py", may_differ=MAY_DIFFER)


if __name__ == "__main__":
    from itpo_lab.offline.many import run_script

    sys.exit(run_script(__file__, Args, main, ALGORITHM, __doc__))
