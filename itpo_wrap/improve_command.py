"""``itpo improve``: :func:`itpo_wrap.improve.improve_policy` on a zoo entry, from the command line.

    itpo improve --entry hopper-medium --policy td3_bc --kind meanflow
    itpo improve --entry hopper-medium --policy td3_bc --kind meanflow --steps 3000 --out runs/improve/hm
    itpo improve --entry hopper-medium --no-env-check      # offline only: the model's verdict alone decides

Writes ``--out`` (default ``runs/improve/<entry>-<policy>-<kind>``): ``metrics.csv``, ``config.json``, the
resumable checkpoint, ``snapshots/`` (every validated step), ``result.json`` and, only when it was kept,
``improved.pt`` (an offline-policy checkpoint with the base's critic). Rerunning the same command resumes.
By default the base and every validated step then run one full episode per tuning seed (``--env-seeds``,
0-9) in the entry's env, and only a step that beats the base there by ``--verdict-z`` standard errors is kept
(:mod:`itpo_wrap.improve_field`); a policy that is not kept is not written, and the command exits with
status 1. The zoo is only read here;
``itpo-lab improve ... --record`` also adds the policy to the entry (as ``improved``, with its card section).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from itpo_wrap import provenance
from itpo_wrap.improve_config import ImproveConfig
from itpo_wrap.world_model.kinds import kind_names


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``improve`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    :return: the new parser (the lab adds ``--record`` to it).
    """
    d = ImproveConfig()
    p = subparsers.add_parser(
        "improve", help="improve a zoo policy offline by first-order ascent on the imagined return (no cost at "
                        "inference; never keeps a loser)",
        description="Improve a zoo entry's base policy once, offline: Adam on the imagined return J of predict() "
                    "over batches of the dataset's states, with a behaviour-cloning term toward the base and a "
                    "parameter trust region; the best step on held-out validation states is kept only if it beats "
                    "the base on held-out verdict states and, unless --no-env-check, a validated step beats the base in the "
                    "entry's env on the tuning seeds (else exit status 1, nothing written). docs/improve.md.")
    p.add_argument("--entry", required=True, help="zoo entry (itpo zoo list)")
    p.add_argument("--policy", default=None, help="the entry's offline policy (td3_bc, rebrac; default: its default)")
    p.add_argument("--kind", default="meanflow", choices=kind_names(), help="the world model to ascend through")
    p.add_argument("--dataset", default=None, help="Minari id or path of the start states (default: the entry's)")
    p.add_argument("--out", default=None, help="run folder (default: runs/improve/<entry>-<policy>-<kind>)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="dataset start states per step")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--alpha", type=float, default=d.alpha, help="return weight against the BC term (TD3+BC's alpha)")
    p.add_argument("--bc-target", choices=["base", "data", "none"], default=d.bc_target,
                   help="behaviour-cloning target: the base's actions, the dataset's, or none")
    p.add_argument("--max-drift", type=_optional, default=d.max_drift,
                   help="parameter trust region around the base, a fraction of its norm ('none': no bound)")
    p.add_argument("--grad-clip", type=_optional, default=d.grad_clip, help="gradient norm clip ('none': off)")
    p.add_argument("--horizon", type=int, default=d.horizon, help="H (predict()'s default)")
    p.add_argument("--particles", type=int, default=d.particles, help="M per start state (predict()'s default)")
    p.add_argument("--validation-states", type=int, default=d.validation_states,
                   help="held-out states for the best step and for the verdict (each)")
    p.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction,
                   help="share of the dataset's episodes held out (validation and verdict states)")
    p.add_argument("--verdict-z", type=float, default=d.verdict_z, help="standard errors the held-out gain must beat")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="steps between validations (each validated step is a candidate of the real-env check)")
    p.add_argument("--env-seeds", type=int, nargs="+", default=list(d.env_seeds),
                   help="tuning seeds of the real-env check (never your evaluation seeds)")
    p.add_argument("--no-env-check", action="store_true",
                   help="skip the real-env check: the offline verdict alone decides (it cannot see the world model "
                        "being exploited: docs/improve.md)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, batches and noise")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's)")
    p.set_defaults(func=improve_command)
    return p


def _optional(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def config_from_args(args: argparse.Namespace) -> ImproveConfig:
    """The :class:`ImproveConfig` a command line names (validated: a bad value fails before anything loads).

    :param args: the parsed ``improve`` arguments.
    """
    return ImproveConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, alpha=args.alpha,
                         bc_target=args.bc_target, max_drift=args.max_drift, grad_clip=args.grad_clip,
                         horizon=args.horizon, particles=args.particles, validation_states=args.validation_states,
                         holdout_fraction=args.holdout_fraction,
                         verdict_z=args.verdict_z, eval_every=args.eval_every, seed=args.seed,
                         env_seeds=tuple(args.env_seeds))


def improve_command(args: argparse.Namespace) -> int:
    """Run ``improve``; exit status 1 when the verdict refused the improved policy.

    :param args: the parsed ``improve`` arguments.
    """
    return 0 if run_improve(args)[1].accepted else 1


def run_improve(args: argparse.Namespace, program: str = "itpo improve") -> tuple[Any, Any, Path]:
    """Improve the entry's policy and write ``improved.pt`` when the verdict keeps it, with its provenance
    record (:mod:`itpo_wrap.provenance`: ``program`` and every parsed argument) in the checkpoint's ``info``.

    :param args: the parsed ``improve`` arguments.
    :param program: the command that parsed them (``"itpo-lab improve"`` when the lab runs it).
    :return: ``(zoo entry, ImproveResult, run folder)``.
    """
    import torch

    from itpo_wrap import zoo
    from itpo_wrap.improve import improve_policy

    cfg = config_from_args(args)
    if args.threads < 1:
        raise ValueError(f"threads={args.threads} must be at least 1")
    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    if "model" in entry.meta:
        raise ValueError(f"{entry.name}/{entry.policy_name} is an SB3 base; itpo improve writes offline checkpoints "
                         "(td3_bc, rebrac): improve an SB3 model from Python with itpo_wrap.improve.improve_policy "
                         "and save result.policy with its own .save()")
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/improve/{entry.name}-{entry.policy_name}-{args.kind}")
    check = "offline verdict only" if args.no_env_check else f"real-env check on seeds {list(cfg.env_seeds)}"
    print(f"improving {entry.name}/{entry.policy_name} through its {args.kind} world model: {cfg.steps} steps of "
          f"{cfg.batch_size} start states x {cfg.particles} particles, {check}, run folder {out}")
    result = improve_policy(entry, entry.load_world_model(args.kind), args.dataset or entry.dataset_id, cfg,
                            run_dir=out, progress=not args.no_progress,
                            make_env=None if args.no_env_check else entry.make_env)
    if result.field is not None:
        print(result.field.describe())
    print(result.message)
    print(f"wall time {result.wall_s:.0f} s (loop {result.train_wall_s:.0f} s over {result.steps} steps)")
    if result.accepted:
        made_by = provenance.from_namespace(program, args).to_dict()
        path = result.save(out / "improved.pt", info={"world_model": args.kind, "wall_s": round(result.wall_s, 1),
                                                      provenance.KEY: made_by})
        print(f"wrote {path}")
    return entry, result, out
