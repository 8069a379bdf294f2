"""The ``itpo`` command line: thin argparse front-ends over library functions.

Subcommands register themselves through ``register(subparsers)`` functions so each module owns
its own options; this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Optional subcommand modules: each exposes ``register(subparsers)``. A module that is absent from an
# install (or fails to import for a missing optional dependency) simply contributes no subcommand.
_OPTIONAL_COMMANDS = ("itpo_wrap.training.commands",)


def _parse_levels(text: str) -> tuple[str, ...]:
    from itpo_wrap.data.collect import LEVELS

    if text == "all":
        return LEVELS
    return tuple(x.strip() for x in text.split(",") if x.strip())


def cmd_collect(args: argparse.Namespace) -> int:
    from itpo_wrap.data.collect import ENVS, CollectConfig, collect

    envs = list(ENVS) if args.env == "all" else [args.env]
    for env in envs:
        cfg = CollectConfig(env=env, levels=_parse_levels(args.levels), transitions=args.transitions, seed=args.seed,
                            behavior_dir=args.behavior_dir or "", overwrite=args.overwrite, version=args.version)
        t0 = time.perf_counter()
        summary = collect(cfg)
        print(f"{env}: {time.perf_counter() - t0:.1f}s")
        if args.summary:
            out = cfg.behavior_path / "datasets.json"
            old = json.loads(out.read_text()) if out.exists() else {}
            old.update(summary)
            out.write_text(json.dumps(old, indent=2) + "\n")
    return 0


def cmd_export_behavior(args: argparse.Namespace) -> int:
    from itpo_wrap.data.behavior import export_behavior
    from itpo_wrap.data.collect import ENVS

    out = Path(args.out or f"policies/behavior/{args.env}")
    command = f"python policies/sac_behavior.py --env {ENVS[args.env]} --run-dir {args.run_dir}"
    card = export_behavior(args.run_dir, out, ENVS[args.env], command)
    print(json.dumps(card, indent=2))
    return 0


def cmd_datasets_table(args: argparse.Namespace) -> int:
    from itpo_wrap.data.tables import datasets_markdown

    text = datasets_markdown(Path(args.behavior_root))
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_zoo_tables(args: argparse.Namespace) -> int:
    from itpo_wrap.zoo_tables import write_tables

    for path in write_tables(Path(args.out_dir)):
        print(f"wrote {path}")
    return 0


def cmd_critic_calibration(args: argparse.Namespace) -> int:
    import json

    import torch

    from itpo_wrap import zoo
    from itpo_wrap.offline.calibration import value_calibration

    torch.set_num_threads(args.threads)
    if args.policy_file is not None:
        # a run that is not (yet) a zoo entry, e.g. a betas check in policies/resume/: its own env, nothing recorded
        from itpo_wrap.offline.calibration import calibrate_policy_file

        if args.record or args.policy is not None:
            raise SystemExit(f"--policy-file {args.policy_file} is not a zoo entry: drop --record and --policy, "
                             "or pass --entry to calibrate (and record into) a zoo policy")
        result, meta = calibrate_policy_file(args.policy_file, episodes=args.episodes, seed=args.seed,
                                             gamma=args.gamma)
        print(json.dumps({"policy_file": str(args.policy_file), "algorithm": meta.get("algorithm"),
                          "dataset_id": meta.get("dataset_id"), **result.summary()}, indent=2))
        return 0
    entry = zoo.load(args.entry, policy=args.policy)
    result = value_calibration(entry.actor, entry.critic, entry.make_env, episodes=args.episodes, seed=args.seed,
                               gamma=args.gamma)
    summary = result.summary()
    print(json.dumps({"entry": entry.name, "policy": entry.policy_name, **summary}, indent=2))
    if args.record:
        zoo.record_policy_facts(entry.name, entry.policy_name, {"critic_calibration": {"seed": args.seed, **summary}})
        print(f"recorded in {entry.directory / 'entry.json'}")
    return 0


def cmd_record_check(args: argparse.Namespace) -> int:
    import torch

    from itpo_wrap.offline.checks import record_check

    torch.set_num_threads(args.threads)
    folder = record_check(args.run_dir, args.checks_dir, variant=args.variant, note=args.note,
                          calibrate=not args.no_calibration, episodes=args.episodes, seed=args.seed)
    print(f"recorded {folder}; regenerate the docs with: itpo zoo-tables --out-dir docs")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from itpo_wrap.demo import run_demo

    return run_demo(entry_name=args.entry, kind=args.kind, episodes=args.episodes, seed=args.seed,
                    out_dir=Path(args.out), step_size=args.step_size, max_steps=args.max_steps)


def build_parser() -> argparse.ArgumentParser:
    from itpo_wrap import __version__

    parser = argparse.ArgumentParser(prog="itpo", description="itpo-wrap: inference-time policy optimization tools")
    parser.add_argument("--version", action="version", version=f"itpo-wrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="generate D4RL-style Minari datasets from the committed behaviour policies")
    p.add_argument("--env", required=True, help="halfcheetah | hopper | walker2d | all")
    p.add_argument("--levels", default="all", help="comma-separated levels, or 'all' "
                   "(random, medium, medium-replay, expert, medium-expert)")
    p.add_argument("--transitions", type=int, default=200_000, help="minimum transitions of sampled levels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", type=int, default=0, help="dataset version suffix (-vN)")
    p.add_argument("--behavior-dir", default=None, help="default: policies/behavior/<env>")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--summary", action="store_true", help="record the summary in <behavior-dir>/datasets.json")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("export-behavior", help="select expert/medium checkpoints of a SAC run and export them")
    p.add_argument("--env", required=True, choices=["halfcheetah", "hopper", "walker2d"])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", default=None, help="default: policies/behavior/<env>")
    p.set_defaults(func=cmd_export_behavior)

    p = sub.add_parser("datasets-table", help="render docs/datasets.md from the behaviour cards")
    p.add_argument("--behavior-root", default="policies/behavior")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_datasets_table)

    p = sub.add_parser("zoo-tables", help="render docs/base_policies.md and docs/world_models.md from the zoo")
    p.add_argument("--out-dir", default="docs")
    p.set_defaults(func=cmd_zoo_tables)

    p = sub.add_parser("critic-calibration",
                       help="a zoo policy's critic, min-Q(s, pi(s)), against the discounted return pi then collects")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--entry", help="zoo entry, e.g. hopper-medium-replay")
    which.add_argument("--policy-file", type=Path, default=None,
                       help="an offline trainer's policy.pt instead of a zoo entry (e.g. a run in policies/resume/)")
    p.add_argument("--policy", default=None, help="the entry's policy (td3_bc, rebrac, ...); default: its default")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000, help="episode i resets with seed + i (the zoo's evaluation seeds)")
    p.add_argument("--gamma", type=float, default=0.99, help="the critic's discount")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", action="store_true", help="store the figures in the entry (entry.json, MODEL_CARD.md)")
    p.set_defaults(func=cmd_critic_calibration)

    p = sub.add_parser("record-check", help="keep a finished settings-check run's logs and figures in policies/checks/")
    p.add_argument("--run-dir", type=Path, required=True, help="a finished trainer run (policy.pt, eval.csv)")
    p.add_argument("--checks-dir", type=Path, default=None, help="default: policies/checks")
    p.add_argument("--variant", default=None, help="label of the settings; default betas-<beta_1>-<beta_2>")
    p.add_argument("--note", default="", help="one line: why the check was run, or what it replaced")
    p.add_argument("--no-calibration", action="store_true", help="skip the critic calibration (10 episodes)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_record_check)

    p = sub.add_parser("demo", help="base vs wrapped policy of a zoo entry with SB3 evaluate_policy (no training)")
    p.add_argument("--entry", default="hopper-medium-replay", help="zoo entry with a world model")
    p.add_argument("--kind", default="diffusion", choices=["diffusion", "meanflow"],
                   help="world model: diffusion carries the gain (docs/results.md); meanflow is ~3x faster")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--step-size", type=float, default=None, help="default: the entry's tuned one, else 1e-4")
    p.add_argument("--max-steps", type=int, default=None, help="cap episodes (smoke runs)")
    p.add_argument("--out", default="runs/demo", help="where the plot goes")
    p.set_defaults(func=cmd_demo)

    for name in _OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itpo`` console script."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as err:
        # Our errors are written to be read: show the message, not a traceback.
        parser.exit(2, f"itpo {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
