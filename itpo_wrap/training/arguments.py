"""The flags of ``itpo train-world-model`` and ``itpo eval-world-model`` (argparse definitions, in the order
``--help`` lists them), and the :class:`~itpo_wrap.training.config.WorldModelTrainConfig` built from the
parsed ``train-world-model`` flags. The commands themselves are :mod:`itpo_wrap.training.commands`'.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from itpo_wrap.training import many
from itpo_wrap.training.config import WorldModelTrainConfig
from itpo_wrap.world_model.kinds import get_kind, kind_names

# Flags that set a field of the chosen kind's config, by the field's name: a kind whose config has the field
# takes the flag, any other refuses it; left out (None), the kind's default stands. The first four set the
# fields of its ``net`` (NetConfig).
NET_FLAGS = {"hidden": "hidden_dim", "blocks": "num_blocks", "max_frequency": "max_frequency", "x_gate": "x_gate"}
KIND_FLAGS = {"sampling_steps": "num_inference_steps", "train_timesteps": "num_train_timesteps",
              "schedule": "beta_schedule", "sampler": "sampler", "flow_ratio": "flow_ratio",
              "adaptive_p": "adaptive_p", "teacher_ratio": "teacher_ratio"}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``train-world-model`` flags to ``p``.

    :param p: the subcommand's parser.
    """
    d = WorldModelTrainConfig()
    many.add_arguments(p)
    kinds = "; ".join(f"{k}: {get_kind(k).help}" for k in kind_names())
    p.add_argument("--dynamics", choices=kind_names(), default=d.dynamics, help=f"dynamics kind ({kinds})")
    p.add_argument("--out", required=True, help="bundle file to write (e.g. policies/zoo/<env>-<level>/wm_diffusion.pt)")
    p.add_argument("--run-dir", default=None, help="checkpoints and metrics (default: <out>.run)")
    p.add_argument("--steps", type=int, default=d.dynamics_steps, help="dynamics (and MLP baseline) updates")
    p.add_argument("--reward-steps", type=int, default=d.reward_steps, help="reward-head updates")
    p.add_argument("--termination-steps", type=int, default=d.termination_steps, help="termination-head updates")
    p.add_argument("--critic-steps", type=int, default=d.critic_steps, help="FQE updates (with --fqe-policy)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="transitions per update")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (peak of the schedule)")
    _add_kind_flags(p)
    p.add_argument("--critic", default=None, help="SB3 SAC/TD3 .zip whose policy.critic becomes the terminal critic")
    p.add_argument("--fqe-policy", default=None,
                   help="SB3 .zip or TorchScript policy (outputs in [-1, 1]) to fit a critic for by FQE")
    p.add_argument("--holdout", type=float, default=d.holdout_fraction, help="share of held-out episodes")
    p.add_argument("--no-baseline", action="store_true", help="skip the same-budget MLP baseline")
    p.add_argument("--workers", type=int, choices=(1, 2), default=d.workers, help="threads of parts: 2 trains the dynamics beside the heads")
    p.add_argument("--threads", type=int, default=d.num_threads, help="torch threads per worker")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, batches and the held-out split")
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming from --run-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write the training metrics as TensorBoard scalars under DIR/wm_<kind>-<entry>_<n> "
                        "(a resumed run appends to its folder); needs pip install 'itpo-wrap[tensorboard]'")
    _add_recipe_flags(p)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help="average each part's weights with this decay (0: off); the bundle keeps the average")


def _add_kind_flags(p: argparse.ArgumentParser) -> None:
    """The dynamics net and diffusion flags (:data:`NET_FLAGS`, :data:`KIND_FLAGS`). Per-kind settings
    default to ``None``: the kind's config default (for meanflow the shipped recipe)."""
    p.add_argument("--hidden", type=int, default=None, help="width of the dynamics net (default 256)")
    p.add_argument("--blocks", type=int, default=None, help="residual blocks (default 3)")
    p.add_argument("--train-timesteps", type=int, default=None, help="diffusion K (default 100)")
    p.add_argument("--sampling-steps", type=int, default=None, help="denoising / MeanFlow steps (default 10 / 1)")
    p.add_argument("--schedule", choices=("linear", "cosine"), default=None, help="diffusion noise (beta) schedule (default cosine)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None, help="diffusion reverse-chain sampler (default ddpm)")


def _add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """The MeanFlow recipe's flags (with the two net flags whose default differs for meanflow) and its
    diffusion teacher; ``None``: the kind's default, as in :func:`_add_kind_flags`."""
    p.add_argument("--flow-ratio", type=float, default=None, help="MeanFlow: share of samples with r = t (default 0.75)")
    p.add_argument("--max-frequency", type=float, default=None,
                   help="highest time-embedding frequency (cycles per unit time; default 4 for meanflow, else 32); "
                        "MeanFlow's JVP differentiates through it (benchmarks/results/meanflow_variants_*)")
    p.add_argument("--adaptive-p", type=float, default=None, help="MeanFlow: power of the adaptive loss weight (default 1)")
    p.add_argument("--x-gate", action=argparse.BooleanOptionalAction, default=None,
                   help="gate the noisy-sample input by the time embedding (NetConfig.x_gate; default on for "
                        "meanflow, off else); lets MeanFlow's one-step point ignore pure noise")
    p.add_argument("--teacher", default=None,
                   help="MeanFlow: diffusion bundle of the same dataset whose 10-step DDIM sampler gives the one-step "
                        "targets of --teacher-ratio of each minibatch (the shipped recipe needs it)")
    p.add_argument("--teacher-ratio", type=float, default=None,
                   help="MeanFlow: share of rows trained at (r, t) = (0, 1) on the teacher's sample (default 0.25; "
                        "0: plain MeanFlow, no --teacher)")


def add_eval_arguments(e: argparse.ArgumentParser) -> None:
    """Add the ``eval-world-model`` flags to ``e``.

    :param e: the subcommand's parser.
    """
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", default=None, help="bundle file")
    which.add_argument("--entry", default=None, help="a zoo entry's bundle instead of a file (with --kind)")
    e.add_argument("--kind", default="diffusion", choices=kind_names(), help="with --entry: which of its world models")
    e.add_argument("--zoo-dir", default=None, help="with --entry: the zoo folder (default: $ITPO_ZOO_PATH, else "
                                                   "the checkout's policies/zoo, else the package's demo entry)")
    e.add_argument("--dataset", required=True, help="Minari dataset id or local path")
    e.add_argument("--horizon", type=int, default=10, help="open-loop horizon of the multi-step error")
    e.add_argument("--max-rows", type=int, default=50_000, help="held-out rows scored at most")
    e.add_argument("--max-starts", type=int, default=2_000, help="open-loop start states at most")
    e.add_argument("--all-episodes", action="store_true", help="score on all episodes, not the held-out ones")
    e.add_argument("--seed", type=int, default=0, help="seed of the row and start-state sampling")
    e.add_argument("--json", default=None, help="write the full result here")
    e.add_argument("--record", action="store_true", help="store the held-out accuracy in the --model bundle "
                   "(info[\"fitness\"]), which every wrapper over it then checks (AdaptConfig.model_check)")
    e.add_argument("--csv", default=None, help="write per-horizon rows here")


def _kind_config(args: argparse.Namespace) -> Any:
    """The chosen kind's config: its defaults with the per-kind flags that were given on top."""
    kind = get_kind(args.dynamics)
    base = kind.config()
    fields = {f.name for f in dataclasses.fields(base)}

    def given(table: dict[str, str]) -> dict[str, Any]:
        return {field: getattr(args, dest) for dest, field in table.items() if getattr(args, dest, None) is not None}

    overrides, net = given(KIND_FLAGS), given(NET_FLAGS)
    if net:
        overrides["net"] = dataclasses.replace(base.net, **net) if "net" in fields else net
    foreign = {field: value for field, value in overrides.items() if field not in fields}
    if foreign:
        flags = [f"--{dest.replace('_', '-')}" for dest, field in {**KIND_FLAGS, **NET_FLAGS}.items()
                 if field in foreign or (field in net and "net" in foreign)]
        raise ValueError(f"{', '.join(flags)} set {sorted(foreign)}, which a {args.dynamics} config "
                         f"({kind.config.__name__}) does not have; drop them or pick the kind they belong to")
    return dataclasses.replace(base, **overrides)


def config_from_args(args: argparse.Namespace) -> WorldModelTrainConfig:
    """Build the training config from parsed ``train-world-model`` arguments."""
    d = WorldModelTrainConfig()
    return WorldModelTrainConfig(
        dynamics=args.dynamics, dynamics_config=_kind_config(args), dynamics_steps=args.steps,
        reward_steps=args.reward_steps, termination_steps=args.termination_steps, critic_steps=args.critic_steps,
        batch_size=args.batch_size, lr=args.lr, baseline=not args.no_baseline, holdout_fraction=args.holdout,
        seed=args.seed, workers=args.workers, num_threads=args.threads, device=args.device,
        ema_decay=getattr(args, "ema_decay", d.ema_decay))
