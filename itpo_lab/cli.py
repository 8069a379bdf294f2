"""The ``itpo-lab`` command line (``python -m itpo_lab``): the project's own records, beside the user's
``itpo``. Datasets, behaviour exports, zoo records and tables; ``train-world-model`` and ``tune`` are
``itpo``'s own commands plus the options that write into the zoo (``--zoo-dir``, ``--record``); so is
``improve`` (``--record``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from itpo_lab import commands as c
from itpo_lab.distill_command import cmd_distill
from itpo_lab.zoo_options import register_zoo_writers
from itpo_wrap.cli import ZOO_DIR_HELP, make_parser, run

LAB_COMMANDS = {
    "collect": "generate D4RL-style Minari datasets from the committed behaviour policies",
    "export-behavior": "select expert/medium checkpoints of a SAC run and export them",
    "datasets-table": "render docs/datasets.md from the behaviour cards",
    "train-world-model": "itpo train-world-model, plus --zoo-dir: add the bundle to the dataset's zoo entry",
    "tune": "itpo tune, plus --record: store the chosen settings in the entry",
    "improve": "itpo improve, plus --record: add the improved policy to the entry (entry.json, MODEL_CARD.md)",
    "distill": "amortised ITPO by distillation (issue 24): regress the base onto the wrapper's actions, env-checked",
    "critic-calibration": "a zoo policy's critic, min-Q(s, pi(s)), against the discounted return pi then collects",
    "zoo-tables": "render docs/base_policies.md and docs/world_models.md from the zoo",
    "record-check": "keep a finished settings-check run's logs and figures in policies/checks/",
    "render-cards": "render each zoo entry's MODEL_CARD.md and each behaviour policy's CARD.md from its JSON",
    "migrate-provenance": "turn the command lines that older zoo entries, checks and behaviour cards stored into "
                          "provenance records",
    "convert-logs": "turn a trainer run's, check's or zoo entry's old train.csv/eval.csv into metrics.csv, losslessly",
}


def _data_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("collect", help=LAB_COMMANDS["collect"])
    p.add_argument("--env", required=True, help="halfcheetah | hopper | walker2d | all")
    p.add_argument("--levels", default="all", help="comma-separated levels, or 'all' "
                   "(random, medium, medium-replay, expert, medium-expert)")
    p.add_argument("--transitions", type=int, default=200_000, help="minimum transitions of sampled levels")
    p.add_argument("--seed", type=int, default=0, help="base seed of env resets and action sampling")
    p.add_argument("--version", type=int, default=0, help="dataset version suffix (-vN)")
    p.add_argument("--behavior-dir", default=None, help="folder of the behaviour policies; default: policies/behavior/<env>")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--summary", action="store_true", help="record the summary in <behavior-dir>/datasets.json")
    p.set_defaults(func=c.cmd_collect)

    p = sub.add_parser("export-behavior", help=LAB_COMMANDS["export-behavior"])
    p.add_argument("--env", required=True, choices=["halfcheetah", "hopper", "walker2d"], help="which env's run")
    p.add_argument("--run-dir", required=True, help="the SAC run folder (policies/sac_behavior.py --run-dir)")
    p.add_argument("--out", default=None, help="default: policies/behavior/<env>")
    p.set_defaults(func=c.cmd_export_behavior)

    p = sub.add_parser("datasets-table", help=LAB_COMMANDS["datasets-table"])
    p.add_argument("--behavior-root", default="policies/behavior", help="folder of the behaviour cards")
    p.add_argument("--out", default=None, help="markdown file to write (printed either way)")
    p.set_defaults(func=c.cmd_datasets_table)


def _zoo_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    writers = register_zoo_writers(sub)
    writers["train-world-model"].set_defaults(func=c.cmd_train_world_model)
    writers["tune"].set_defaults(func=c.cmd_tune)
    writers["improve"].set_defaults(func=c.cmd_improve)
    writers["distill"].set_defaults(func=cmd_distill)

    p = sub.add_parser("critic-calibration", help=LAB_COMMANDS["critic-calibration"])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--entry", help="zoo entry, e.g. hopper-medium-replay")
    which.add_argument("--policy-file", type=Path, default=None,
                       help="an offline trainer's policy.pt instead of a zoo entry (e.g. a run in runs/)")
    p.add_argument("--policy", default=None, help="the entry's policy (td3_bc, rebrac, ...); default: its default")
    p.add_argument("--episodes", type=int, default=10, help="episodes of the actor")
    p.add_argument("--seed", type=int, default=1000, help="episode i resets with seed + i (the zoo's evaluation seeds)")
    p.add_argument("--gamma", type=float, default=0.99, help="the critic's discount")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--record", action="store_true", help="store the figures in the entry (entry.json, MODEL_CARD.md)")
    p.add_argument("--zoo-dir", default=None, help=ZOO_DIR_HELP)
    p.set_defaults(func=c.cmd_critic_calibration)

    p = sub.add_parser("zoo-tables", help=LAB_COMMANDS["zoo-tables"])
    p.add_argument("--out-dir", default="docs", help="where the markdown tables and curves go")
    p.set_defaults(func=c.cmd_zoo_tables)

    p = sub.add_parser("record-check", help=LAB_COMMANDS["record-check"])
    p.add_argument("--run-dir", type=Path, required=True, help="a finished trainer run (policy.pt, metrics.csv)")
    p.add_argument("--checks-dir", type=Path, default=None, help="default: policies/checks")
    p.add_argument("--variant", default=None, help="label of the settings; default betas-<beta_1>-<beta_2>")
    p.add_argument("--note", default="", help="one line: why the check was run, or what it replaced")
    p.add_argument("--no-calibration", action="store_true", help="skip the critic calibration (10 episodes)")
    p.add_argument("--episodes", type=int, default=10, help="calibration episodes")
    p.add_argument("--seed", type=int, default=1000, help="calibration seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=c.cmd_record_check)

    p = sub.add_parser("render-cards", help=LAB_COMMANDS["render-cards"])
    p.add_argument("paths", nargs="+", type=Path, help="folders searched for entry.json and card.json files")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="write <out-dir>/<folder>/<card> instead of beside each JSON file (to compare)")
    p.set_defaults(func=c.cmd_render_cards)

    p = sub.add_parser("migrate-provenance", help=LAB_COMMANDS["migrate-provenance"])
    p.add_argument("paths", nargs="+", type=Path,
                   help="entry.json, check.json or card.json files, or folders searched for them (e.g. policies)")
    p.set_defaults(func=c.cmd_migrate_provenance)
    p = sub.add_parser("convert-logs", help=LAB_COMMANDS["convert-logs"])
    p.add_argument("folders", type=Path, nargs="+", help="run folders, policies/checks/<check>, policies/zoo/<entry>")
    p.set_defaults(func=c.cmd_convert_logs)


def build_parser() -> argparse.ArgumentParser:
    """The ``itpo-lab`` parser: :data:`LAB_COMMANDS`."""
    parser, sub = make_parser("itpo-lab", "itpo-wrap's lab: datasets, base policies, zoo records and tables "
                              "(the user's commands are `itpo`).")
    _data_commands(sub)
    _zoo_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itpo-lab`` console script and ``python -m itpo_lab``.

    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
