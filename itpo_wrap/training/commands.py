"""``itpo train-world-model`` and ``itpo eval-world-model``: thin argparse front ends.

``register(subparsers)`` adds both subcommands to the ``itpo`` CLI. SB3 and the Minari loader are
imported lazily, only when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def register(subparsers: Any) -> dict[str, argparse.ArgumentParser]:
    """Add ``train-world-model`` and ``eval-world-model`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    :return: the two new parsers by command name (the lab adds its zoo options to them).
    """
    d = WorldModelTrainConfig()
    p = subparsers.add_parser("train-world-model", help="train a world-model bundle on an offline dataset",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    # per-kind settings default to None: the kind's config default (for meanflow the shipped recipe)
    p.add_argument("--hidden", type=int, default=None, help="width of the dynamics net (default 256)")
    p.add_argument("--blocks", type=int, default=None, help="residual blocks (default 3)")
    p.add_argument("--train-timesteps", type=int, default=None, help="diffusion K (default 100)")
    p.add_argument("--sampling-steps", type=int, default=None, help="denoising / MeanFlow steps (default 10 / 1)")
    p.add_argument("--schedule", choices=("linear", "cosine"), default=None, help="diffusion noise (beta) schedule (default cosine)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None, help="diffusion reverse-chain sampler (default ddpm)")
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
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help="average each part's weights with this decay (0: off); the bundle keeps the average")
    p.set_defaults(func=train_command)

    e = subparsers.add_parser("eval-world-model", help="score a bundle on held-out episodes (vs its MLP baseline)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    e.set_defaults(func=eval_command)
    return {"train-world-model": p, "eval-world-model": e}


def _load_dataset(id_or_path: str) -> Any:
    from itpo_wrap.data import load_dataset

    return load_dataset(id_or_path)


def load_policy(path: str, action_low: np.ndarray, action_high: np.ndarray) -> Any:
    """A differentiable raw-obs -> env-action callable from an SB3 ``.zip`` (SAC, TD3, DDPG) or a
    TorchScript file whose outputs are in ``[-1, 1]`` (mapped to the Box like SB3's ``predict``).

    :param path: the policy file.
    :param action_low: Box lower bound.
    :param action_high: Box upper bound.
    """
    low, high = torch.as_tensor(action_low), torch.as_tensor(action_high)
    if path.endswith(".zip"):
        model = _load_sb3(path)
        actor = model.policy.actor.eval()
        deterministic = hasattr(actor, "action_dist")  # SAC's actor samples unless told otherwise

        def scaled(obs: torch.Tensor) -> torch.Tensor:
            return actor(obs, deterministic=True) if deterministic else actor(obs)
    else:
        scripted = torch.jit.load(path, map_location="cpu").eval()

        def scaled(obs: torch.Tensor) -> torch.Tensor:
            return scripted(obs)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return low + 0.5 * (scaled(obs) + 1.0) * (high - low)

    return policy


def _load_sb3(path: str) -> Any:
    try:
        from stable_baselines3 import DDPG, SAC, TD3
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError as err:  # pragma: no cover - SB3 is a dependency
        raise ImportError("loading an SB3 .zip needs stable-baselines3: pip install stable-baselines3") from err
    from itpo_wrap.formats.sb3_weights import warn_sb3_pickle

    warn_sb3_pickle(path)  # the zip's pickle runs below: say once that it is trusted like code
    data, _, _ = load_from_zip_file(path, device="cpu")
    module = getattr((data or {}).get("policy_class"), "__module__", "")
    for key, cls in (("sac", SAC), ("td3", TD3), ("ddpg", DDPG)):
        if f".{key}." in module:
            return cls.load(path, device="cpu")
    raise ValueError(f"{path} holds a {module or 'unknown'} policy; only SAC, TD3 and DDPG .zip files have the "
                     "actor/critic this command uses (for others use the Python API with CriticHead / fit_fqe)")


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
    critic = CriticHead.from_sb3(_load_sb3(args.critic)) if args.critic else None
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
