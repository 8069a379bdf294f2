"""The ``itpo-lab`` commands that are ``itpo``'s own plus the options that write into the zoo:
``train-world-model`` (``--zoo-dir``), ``tune`` (``--record``) and ``improve`` (``--record``, ``--name``), and
the lab's ``distill`` (:mod:`itpo_lab.distill`), whose kept policies the zoo records too.

Kept apart from :mod:`itpo_lab.cli` (which attaches the functions that run them) because these are the
commands whose provenance records the zoo stores: :mod:`itpo_lab.remake` renders such a record against the
same parser, without importing the command line and the commands behind it.
"""

from __future__ import annotations

import argparse
from typing import Any

from itpo_lab import distill
from itpo_wrap import improve_command, tune_command
from itpo_wrap.training import commands as training_commands


def register_zoo_writers(sub: Any) -> dict[str, argparse.ArgumentParser]:
    """Add ``train-world-model``, ``eval-world-model``, ``tune``, ``improve`` (with the lab's zoo options) and ``distill``.

    :param sub: the ``itpo-lab`` parser's subparsers object (:func:`itpo_wrap.cli.make_parser`).
    :return: the new parsers by command name; :mod:`itpo_lab.cli` sets their functions.
    """
    parsers = dict(training_commands.register(sub))
    parsers["train-world-model"].add_argument(
        "--zoo-dir", default=None, help="also add the bundle (without a critic) to the zoo entry of --dataset in this "
                                        "folder, with its held-out evaluation, e.g. policies/zoo")
    tune = parsers["tune"] = tune_command.register(sub)
    tune.add_argument("--record", action="store_true", help="store the choice in the entry (ZooEntry.adapt_config)")
    improve = parsers["improve"] = improve_command.register(sub)
    improve.add_argument("--record", action="store_true",
                         help="add the improved policy to the entry when the verdict kept it (never a loser)")
    improve.add_argument("--name", default="improved", help="its policy name in the entry")
    parsers["distill"] = distill.register(sub)
    return parsers
