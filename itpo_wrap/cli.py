"""The ``itpo`` command line: thin argparse front-ends over library functions, the commands a user runs.

Subcommands register themselves through ``register(subparsers)`` functions so each module owns
its own options; this file only assembles them. The lab's commands (datasets, base policies, zoo
writing, tables) are ``itpo-lab`` (``python -m itpo_lab``), which reuses :func:`make_parser` and
:func:`run` from here so both CLIs show defaults and fail in one line alike.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from itpo_wrap import evaluate_command, improve_command, tune_command
from itpo_wrap._version import __version__
from itpo_wrap.training import commands as training_commands
from itpo_wrap.world_model.kinds import kind_names


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
    card = zoo.zoo_path(args.zoo_dir) / args.name / "MODEL_CARD.md"
    if args.json or not card.is_file():
        print(json.dumps(entry, indent=2))
    else:
        print(f"<!-- {card.parent} -->")
        print(card.read_text().rstrip("\n"))
    return 0


# The commands a user runs. The project's own records (datasets, base policies, zoo writing, tables, settings
# checks) are the lab's: `itpo-lab -h`.
USER_COMMANDS = ("demo", "zoo", "evaluate", "tune", "improve", "train-world-model", "eval-world-model")
LAB_EPILOG = ("the project's own records (collecting datasets, training base policies, writing the zoo, tables) are "
              "lab commands: itpo-lab -h (or python -m itpo_lab -h in a source checkout)")
ZOO_DIR_HELP = "zoo folder (default: $ITPO_ZOO_PATH, else the checkout's policies/zoo, else the package's demo entry)"


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


def make_parser(prog: str, description: str, epilog: str | None = None) -> tuple[argparse.ArgumentParser, Any]:
    """A top-level parser whose every subparser shows its defaults, and its subparsers object.

    :param prog: the program name in usage lines (``"itpo"``, ``"itpo-lab"``).
    :param description: the text under the usage line.
    :param epilog: text after the command list.
    :return: ``(parser, subparsers)``; add commands with ``subparsers.add_parser(...)``.
    """
    parser = _Parser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--version", action="version", version=f"itpo-wrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>", parser_class=_Parser,
                                title="commands")
    return parser, sub


def build_parser() -> argparse.ArgumentParser:
    """The ``itpo`` parser: :data:`USER_COMMANDS`."""
    parser, sub = make_parser("itpo", "itpo-wrap: a pretrained policy that thinks before it acts (inference-time "
                              "policy optimisation through a differentiable world model).", LAB_EPILOG)
    p = sub.add_parser("demo", help="base vs wrapped policy of a zoo entry with SB3 evaluate_policy (no training)",
                       description="Base vs wrapped policy of a zoo entry through SB3's evaluate_policy, same env "
                                   "seeds; one table of what ran. The defaults are `make demo`: under 3 minutes "
                                   "on a 2-core machine.")
    p.add_argument("--entry", default="hopper-medium", help="zoo entry with a world model (itpo zoo list)")
    p.add_argument("--kind", default="meanflow", choices=kind_names(),
                   help="world model: meanflow is one step per sample; diffusion gains more on most datasets at ~4x the cost")
    p.add_argument("--episodes", type=int, default=2, help="episodes per policy")
    p.add_argument("--seed", type=int, default=1000, help="env seed (same for both policies)")
    p.add_argument("--step-size", type=float, default=None, help="ITPO step size over the settings that run")
    p.add_argument("--tuned", action="store_true", help="run the entry's tuned settings instead of the defaults")
    p.add_argument("--max-steps", type=int, default=None, help="cap each episode at this many steps; default: the env's limit")
    p.add_argument("--out", default="runs/demo", help="where the plot goes")
    p.add_argument("--zoo-dir", default=None, help=ZOO_DIR_HELP)
    p.add_argument("--device", default="cpu", help="where policy, world model and adaptation run: cpu, cuda, cuda:1")
    p.add_argument("--backend", default="auto", choices=["auto", "eager", "compile"],
                   help="adaptation step: auto compiles where a compiler is available (first call compiles, "
                        "cached on disk after), eager starts at once and runs slower")
    p.set_defaults(func=cmd_demo)

    z = sub.add_parser("zoo", help="list the zoo's entries, or show one's model card")
    zsub = z.add_subparsers(dest="zoo_command", required=True, metavar="<list|show>")
    zl = zsub.add_parser("list", help="entries with their policies, world models and tuned settings")
    zl.add_argument("--zoo-dir", default=None, help=ZOO_DIR_HELP)
    zl.set_defaults(func=cmd_zoo_list)
    zs = zsub.add_parser("show", help="an entry's model card (or its entry.json with --json)")
    zs.add_argument("name", help="entry name, e.g. hopper-medium")
    zs.add_argument("--json", action="store_true", help="print entry.json instead of the card")
    zs.add_argument("--zoo-dir", default=None, help=ZOO_DIR_HELP)
    zs.set_defaults(func=cmd_zoo_show)

    training_commands.register(sub)  # train-world-model, eval-world-model
    evaluate_command.register(sub)
    tune_command.register(sub)
    improve_command.register(sub)
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


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; the library's errors end the program in one line that names
    CLI flags (exit code 2), never a traceback.

    :param parser: a parser from :func:`make_parser` whose commands ``set_defaults(func=...)``.
    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, KeyError, ImportError) as err:
        # Our errors are written to be read: one line, no traceback. KeyError's str() adds quotes; use its text.
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        parser.exit(2, f"{parser.prog} {args.command}: error: {_flagify(text, parser, args.command)}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itpo`` console script.

    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
