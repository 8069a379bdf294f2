"""``itpo train-world-model`` and ``itpo eval-world-model``: thin argparse front ends.

``register(subparsers)`` adds both subcommands to the ``itpo`` CLI. SB3 and the Minari loader are
imported lazily, only when a command needs them. Their flags are :mod:`itpo_wrap.training.arguments`', the
policy files they read :mod:`itpo_wrap.training.policy_files`'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from itpo_wrap.training import many
from itpo_wrap.training.arguments import (
    KIND_FLAGS,
    NET_FLAGS,
    add_eval_arguments,
    add_train_arguments,
    config_from_args,
)
from itpo_wrap.training.policy_files import load_policy, load_sb3
from itpo_wrap.world_model.kinds import get_kind

# the flags and the policy files live in their own modules; these names are imported from here too
__all__ = ["KIND_FLAGS", "NET_FLAGS", "config_from_args", "eval_command", "load_policy", "register",
           "train_and_evaluate", "train_command"]


def register(subparsers: Any) -> dict[str, argparse.ArgumentParser]:
    """Add ``train-world-model`` and ``eval-world-model`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    :return: the two new parsers by command name (the lab adds its zoo options to them).
    """
    p = subparsers.add_parser("train-world-model", help="train a world-model bundle on an offline dataset",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_train_arguments(p)
    p.set_defaults(func=train_command)

    e = subparsers.add_parser("eval-world-model", help="score a bundle on held-out episodes (vs its MLP baseline)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_eval_arguments(e)
    e.set_defaults(func=eval_command)
    return {"train-world-model": p, "eval-world-model": e}


def _load_dataset(id_or_path: str) -> Any:
    from itpo_wrap.data import load_dataset

    return load_dataset(id_or_path)


def train_command(args: argparse.Namespace) -> int:
    """Run ``train-world-model``.

    :param args: the parsed ``train-world-model`` arguments.
    """
    many.check(args)
    if args.datasets is not None:
        return many.train_many_command(args, train_and_evaluate)
    train_and_evaluate(args)
    return 0


def train_and_evaluate(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """Train the bundle, score it on held-out episodes, store that score in it (``info["fitness"]``) and in
    ``<run dir>/eval.json``, and save it.

    :param args: the parsed ``train-world-model`` arguments.
    :return: ``(world_model, held-out evaluation, dataset)``.
    """
    from itpo_wrap.tensorboard import check_tensorboard
    from itpo_wrap.training.evaluate import evaluate_world_model
    from itpo_wrap.training.world_model import train_world_model
    from itpo_wrap.world_model.heads import CriticHead
    from itpo_wrap.world_model.model import WorldModel
    from itpo_wrap.world_model.trust import fitness_of, fitness_record

    cfg = config_from_args(args)
    # before the (possibly slow) dataset load, not after it
    get_kind(cfg.dynamics).check_run(cfg.dynamics_config, getattr(args, "teacher", None))
    check_tensorboard(args.tensorboard)
    dataset = _load_dataset(args.dataset)
    low, high = _box(dataset)
    critic = CriticHead.from_sb3(load_sb3(args.critic)) if args.critic else None
    policy = load_policy(args.fqe_policy, low, high) if args.fqe_policy else None
    teacher = WorldModel.load(args.teacher) if getattr(args, "teacher", None) else None
    wm = train_world_model(dataset, cfg, args.out, run_dir=args.run_dir, critic=critic, policy=policy,
                           teacher=teacher, resume=not args.no_resume,
                           progress=not args.no_progress, tensorboard=args.tensorboard)
    print(f"saved {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB) in {wm.info['train_wall_s']:.0f} s")
    result = evaluate_world_model(wm, dataset)
    _print_eval(result)
    # the bundle carries its own held-out accuracy, so every wrapper over it can judge it (issue 20)
    wm.info["fitness"] = fitness_record(result)
    wm.save(args.out)
    (Path(args.run_dir or f"{args.out}.run") / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    problems = fitness_of(wm).problems()  # type: ignore[union-attr]
    if problems:
        print("WARNING: not fit to plan with: " + "; ".join(problems))
    return wm, result, dataset


def eval_command(args: argparse.Namespace) -> int:
    """Run ``eval-world-model``.

    :param args: the parsed ``eval-world-model`` arguments.
    """
    import csv

    from itpo_wrap.training.evaluate import evaluate_world_model, summary_rows
    from itpo_wrap.world_model.model import WorldModel

    if args.entry is not None:
        from itpo_wrap import zoo

        # the zoo's own loader: its messages list the entries and the kinds an entry has
        wm = zoo.load(args.entry, root=args.zoo_dir).load_world_model(args.kind)
    else:
        wm = WorldModel.load(args.model)
    dataset = _load_dataset(args.dataset)
    result = evaluate_world_model(wm, dataset, horizon=args.horizon, max_rows=args.max_rows,
                                  max_starts=args.max_starts, seed=args.seed, heldout=not args.all_episodes)
    _print_eval(result)
    if getattr(args, "record", False):
        from itpo_wrap.world_model.trust import fitness_of, fitness_record

        if args.model is None:
            raise ValueError("--record writes into a bundle file: pass --model PATH (not --entry)")
        wm.info["fitness"] = fitness_record(result)
        wm.save(args.model)
        problems = fitness_of(wm).problems()  # type: ignore[union-attr]
        print(f"recorded the held-out accuracy in {args.model}" + (f"; NOT fit to plan with: {'; '.join(problems)}"
                                                                  if problems else "; within the limits"))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.csv:
        rows = summary_rows(result)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _box(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    space = getattr(dataset, "action_space", None)
    if space is None:
        return -np.ones(dataset.act_dim, np.float32), np.ones(dataset.act_dim, np.float32)
    return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)


def _print_eval(r: dict[str, Any]) -> None:
    print(f"held-out: {r['episodes']} episodes, {r['rows']} rows, {r['open_loop_starts']} open-loop starts")
    print(f"{'model':<14}{'1-step RMSE':>12}{'(state std)':>12}   open-loop RMSE in state std, H = 1..")
    for key in ("dynamics", "baseline"):
        if key in r:
            m = r[key]
            name = r["dynamics_kind"] if key == "dynamics" else "mlp baseline"
            curve = " ".join(f"{x:.3f}" for x in m["open_loop_rmse_state_std"])
            print(f"{name:<14}{m['one_step_rmse']:>12.4f}{m['one_step_rmse_state_std']:>12.4f}   {curve}")
    print(f"reward RMSE {r['reward_rmse']:.4f} ({r['reward_rmse_reward_std']:.3f} reward std); termination "
          f"accuracy {r['termination_accuracy']:.4f}, recall {r['termination_recall']:.3f} on {r['terminal_rows']} "
          f"terminal rows, false-positive rate {r['termination_false_positive_rate']:.4f}")
