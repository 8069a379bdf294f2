"""The ``itpo`` command line: thin argparse front-ends over library functions.

Subcommands register themselves through ``register(subparsers)`` functions so each module owns
its own options; this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Optional subcommand modules: each exposes ``register(subparsers)``. A module that is absent from an
# install (or fails to import for a missing optional dependency) simply contributes no subcommand.
_OPTIONAL_COMMANDS = ("itpo_wrap.training.commands", "itpo_wrap.tune_command")


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
    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    result = value_calibration(entry.actor, entry.critic, entry.make_env, episodes=args.episodes, seed=args.seed,
                               gamma=args.gamma)
    summary = result.summary()
    print(json.dumps({"entry": entry.name, "policy": entry.policy_name, **summary}, indent=2))
    if args.record:
        zoo.record_policy_facts(entry.name, entry.policy_name, {"critic_calibration": {"seed": args.seed, **summary}},
                                root=args.zoo_dir)
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

    run_demo(entry_name=args.entry, kind=args.kind, episodes=args.episodes, seed=args.seed, out_dir=Path(args.out),
             step_size=args.step_size, max_steps=args.max_steps, zoo_dir=args.zoo_dir, device=args.device,
             backend=args.backend, tuned=args.tuned)
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from rich.console import Console

    from itpo_wrap import zoo
    from itpo_wrap.zoo_listing import entries_table

    root = args.zoo_dir
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(f"zoo: {zoo.zoo_source(root)}")
    console.print(entries_table(root))
    return 0


def cmd_zoo_show(args: argparse.Namespace) -> int:
    from itpo_wrap import zoo

    entry = zoo.read_entry(args.name, args.zoo_dir)  # an unknown name lists the known ones
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        print(f"<!-- {zoo.zoo_path(args.zoo_dir) / args.name} -->")
        print(zoo.model_card(entry))
    return 0


# Commands a user runs; the rest keep the project's own records (tables, settings checks, behaviour
# exports) and are listed apart in `itpo -h` so a newcomer is not handed the lab's tools first.
USER_COMMANDS = ("demo", "zoo", "tune", "collect", "train-world-model", "eval-world-model")
MAINTAINER_COMMANDS = {
    "critic-calibration": "a zoo policy's critic, min-Q(s, pi(s)), against the discounted return pi then collects",
    "zoo-tables": "render docs/base_policies.md and docs/world_models.md from the zoo",
    "datasets-table": "render docs/datasets.md from the behaviour cards",
    "record-check": "keep a finished settings-check run's logs and figures in policies/checks/",
    "export-behavior": "select expert/medium checkpoints of a SAC run and export them",
}
_ZOO_DIR_HELP = "zoo folder (default: $ITPO_ZOO_PATH, else the checkout's policies/zoo, else the package's demo entry)"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (the issue's "every subcommand shows its defaults") and keeps the
    hand-made line breaks of descriptions and epilogs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" and a flag's "(default: False)" say nothing; their help text says what happens
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every (sub)parser of ``itpo`` shows defaults, including those other modules register."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from itpo_wrap import __version__

    epilog = "maintainer commands (the project's own records; `itpo <command> -h` for options):\n" + "\n".join(
        f"  {name:<20}{text}" for name, text in MAINTAINER_COMMANDS.items())
    parser = _Parser(prog="itpo", description="itpo-wrap: a pretrained policy that thinks before it acts "
                     "(inference-time policy optimisation through a differentiable world model).", epilog=epilog)
    parser.add_argument("--version", action="version", version=f"itpo-wrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>", parser_class=_Parser,
                                title="commands")

    p = sub.add_parser("demo", help="base vs wrapped policy of a zoo entry with SB3 evaluate_policy (no training)",
                       description="Base vs wrapped policy of a zoo entry through SB3's evaluate_policy, same env "
                                   "seeds; one table of what ran. The defaults are `make demo`: under 3 minutes "
                                   "on a 2-core machine.")
    p.add_argument("--entry", default="hopper-medium", help="zoo entry with a world model (itpo zoo list)")
    p.add_argument("--kind", default="meanflow", choices=["diffusion", "meanflow"],
                   help="world model: meanflow is one step per sample; diffusion gains more on most datasets at ~4x the cost")
    p.add_argument("--episodes", type=int, default=2, help="episodes per policy")
    p.add_argument("--seed", type=int, default=1000, help="env seed (same for both policies)")
    p.add_argument("--step-size", type=float, default=None, help="ITPO step size over the settings that run")
    p.add_argument("--tuned", action="store_true", help="run the entry's tuned settings instead of the defaults")
    p.add_argument("--max-steps", type=int, default=None, help="cap each episode at this many steps; default: the env's limit")
    p.add_argument("--out", default="runs/demo", help="where the plot goes")
    p.add_argument("--zoo-dir", default=None, help=_ZOO_DIR_HELP)
    p.add_argument("--device", default="cpu", help="where policy, world model and adaptation run: cpu, cuda, cuda:1")
    p.add_argument("--backend", default="auto", choices=["auto", "eager", "compile"],
                   help="adaptation step: auto compiles where a compiler is available (first call compiles, "
                        "cached on disk after), eager starts at once and runs slower")
    p.set_defaults(func=cmd_demo)

    z = sub.add_parser("zoo", help="list the zoo's entries, or show one's model card")
    zsub = z.add_subparsers(dest="zoo_command", required=True, metavar="<list|show>")
    zl = zsub.add_parser("list", help="entries with their policies, world models and tuned settings")
    zl.add_argument("--zoo-dir", default=None, help=_ZOO_DIR_HELP)
    zl.set_defaults(func=cmd_zoo_list)
    zs = zsub.add_parser("show", help="an entry's model card (or its entry.json with --json)")
    zs.add_argument("name", help="entry name, e.g. hopper-medium")
    zs.add_argument("--json", action="store_true", help="print entry.json instead of the card")
    zs.add_argument("--zoo-dir", default=None, help=_ZOO_DIR_HELP)
    zs.set_defaults(func=cmd_zoo_show)

    p = sub.add_parser("collect", help="generate D4RL-style Minari datasets from the committed behaviour policies")
    p.add_argument("--env", required=True, help="halfcheetah | hopper | walker2d | all")
    p.add_argument("--levels", default="all", help="comma-separated levels, or 'all' "
                   "(random, medium, medium-replay, expert, medium-expert)")
    p.add_argument("--transitions", type=int, default=200_000, help="minimum transitions of sampled levels")
    p.add_argument("--seed", type=int, default=0, help="base seed of env resets and action sampling")
    p.add_argument("--version", type=int, default=0, help="dataset version suffix (-vN)")
    p.add_argument("--behavior-dir", default=None, help="folder of the behaviour policies; default: policies/behavior/<env>")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--summary", action="store_true", help="record the summary in <behavior-dir>/datasets.json")
    p.set_defaults(func=cmd_collect)

    for name in _OPTIONAL_COMMANDS:  # train-world-model, eval-world-model
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register(sub)

    # maintainer commands: no `help=` so argparse leaves them out of the command list (the epilog lists them)
    p = sub.add_parser("critic-calibration", description=MAINTAINER_COMMANDS["critic-calibration"])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--entry", help="zoo entry, e.g. hopper-medium-replay")
    which.add_argument("--policy-file", type=Path, default=None,
                       help="an offline trainer's policy.pt instead of a zoo entry (e.g. a run in policies/resume/)")
    p.add_argument("--policy", default=None, help="the entry's policy (td3_bc, rebrac, ...); default: its default")
    p.add_argument("--episodes", type=int, default=10, help="episodes of the actor")
    p.add_argument("--seed", type=int, default=1000, help="episode i resets with seed + i (the zoo's evaluation seeds)")
    p.add_argument("--gamma", type=float, default=0.99, help="the critic's discount")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--record", action="store_true", help="store the figures in the entry (entry.json, MODEL_CARD.md)")
    p.add_argument("--zoo-dir", default=None, help=_ZOO_DIR_HELP)
    p.set_defaults(func=cmd_critic_calibration)

    p = sub.add_parser("zoo-tables", description=MAINTAINER_COMMANDS["zoo-tables"])
    p.add_argument("--out-dir", default="docs", help="where the markdown tables and curves go")
    p.set_defaults(func=cmd_zoo_tables)

    p = sub.add_parser("datasets-table", description=MAINTAINER_COMMANDS["datasets-table"])
    p.add_argument("--behavior-root", default="policies/behavior", help="folder of the behaviour cards")
    p.add_argument("--out", default=None, help="markdown file to write (printed either way)")
    p.set_defaults(func=cmd_datasets_table)

    p = sub.add_parser("record-check", description=MAINTAINER_COMMANDS["record-check"])
    p.add_argument("--run-dir", type=Path, required=True, help="a finished trainer run (policy.pt, eval.csv)")
    p.add_argument("--checks-dir", type=Path, default=None, help="default: policies/checks")
    p.add_argument("--variant", default=None, help="label of the settings; default betas-<beta_1>-<beta_2>")
    p.add_argument("--note", default="", help="one line: why the check was run, or what it replaced")
    p.add_argument("--no-calibration", action="store_true", help="skip the critic calibration (10 episodes)")
    p.add_argument("--episodes", type=int, default=10, help="calibration episodes")
    p.add_argument("--seed", type=int, default=1000, help="calibration seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=cmd_record_check)

    p = sub.add_parser("export-behavior", description=MAINTAINER_COMMANDS["export-behavior"])
    p.add_argument("--env", required=True, choices=["halfcheetah", "hopper", "walker2d"], help="which env's run")
    p.add_argument("--run-dir", required=True, help="the SAC run folder (policies/sac_behavior.py --run-dir)")
    p.add_argument("--out", default=None, help="default: policies/behavior/<env>")
    p.set_defaults(func=cmd_export_behavior)
    return parser


def _flagify(message: str, parser: argparse.ArgumentParser, command: str | None) -> str:
    """Name CLI flags, not Python arguments: ``transitions=0`` -> ``--transitions 0`` for the options the
    failing subcommand has (library messages are written for Python callers)."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    target = sub.choices.get(command) if sub is not None and command else None
    if target is None:
        return message
    flags = {a.dest: s for a in target._actions for s in a.option_strings if s.startswith("--")}

    def swap(m: re.Match[str]) -> str:
        flag = flags.get(m.group(1))
        if flag is None:
            return m.group(0)
        value = m.group(2)
        return flag if value == "True" else f"{flag} {value.strip(chr(39))}"

    return re.sub(r"\b([a-z_]+)=('[^']*'|[^\s,;)]+)", swap, message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itpo`` console script."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, KeyError) as err:
        # Our errors are written to be read: one line, no traceback. KeyError's str() adds quotes; use its text.
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        parser.exit(2, f"itpo {args.command}: error: {_flagify(text, parser, args.command)}\n")


if __name__ == "__main__":
    sys.exit(main())
