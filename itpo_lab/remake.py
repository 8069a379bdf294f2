"""The lab's programs and their provenance records (:mod:`itpo_wrap.provenance`): a record made from what a
program parsed, rendered to the command line the docs show, and made from a command line older files stored.

Programs: ``policies/<script>.py`` (its ``Args`` dataclass, parsed by :func:`itpo_lab.offline.parse_args`),
``itpo <command>`` (:func:`itpo_wrap.cli.build_parser`) and ``itpo-lab <command>`` for the commands that write
the zoo (:mod:`itpo_lab.zoo_options`).

:func:`render` shows the arguments that differ from the program's *current* defaults, plus the dataset, env and
run folder (:data:`ALWAYS_SHOWN`): the docs stay short, and because a record holds every resolved value, a
default changed since shows up as an explicit argument instead of silently changing the run. Rendering is
one way: nothing parses a rendered command back, except the tests that check it remakes the record.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from itpo_lab.argv import argparse_argv, dataclass_argv
from itpo_lab.paths import policies_root
from itpo_lab.scripts import load_script
from itpo_wrap import provenance
from itpo_wrap.provenance import Provenance

__all__ = ["ALWAYS_SHOWN", "command_of", "command_parser", "from_command", "parse", "record_of", "render",
           "render_argv", "script_args", "script_record"]

ALWAYS_SHOWN = ("dataset", "env", "run_dir")
"""Arguments rendered even at their default: what the command runs on, and where a resumable run keeps its
checkpoints (rerunning the command there resumes it)."""
_SCRIPTS = "policies/"
_TOOLS = ("itpo", "itpo-lab")


def _is_script(program: str) -> bool:
    return program.startswith(_SCRIPTS) and program.endswith(".py")


def script_args(program: str) -> type[Any]:
    """The ``Args`` dataclass of a ``policies/`` script of this checkout (the script is imported once).

    :param program: ``"policies/td3_bc.py"``.
    """
    if not _is_script(program):
        raise ValueError(f"{program!r} is not a script of the checkout's policies/ folder")
    module = load_script(str(policies_root() / program.removeprefix(_SCRIPTS)))
    return module.Args  # type: ignore[no-any-return]


@functools.cache
def _top_parser(tool: str) -> argparse.ArgumentParser:
    """The console script's parser (for ``itpo-lab``, only its commands that write the zoo)."""
    if tool == "itpo":
        from itpo_wrap.cli import build_parser

        return build_parser()
    if tool == "itpo-lab":
        from itpo_lab.zoo_options import register_zoo_writers
        from itpo_wrap.cli import make_parser

        top, sub = make_parser("itpo-lab", "the itpo-lab commands that write the zoo")
        register_zoo_writers(sub)
        return top
    raise ValueError(f"{tool!r} is not one of the console scripts {_TOOLS}")


def command_parser(program: str) -> argparse.ArgumentParser:
    """The argparse parser of a console-script command (``"itpo improve"``, ``"itpo-lab train-world-model"``).

    :param program: ``"<console script> <command>"``.
    """
    tool, _, name = program.partition(" ")
    top = _top_parser(tool)
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    if name not in subs:
        raise ValueError(f"{program!r}: {tool} has no command {name!r} that writes a provenance record; "
                         f"it has {sorted(subs)}")
    return subs[name]  # type: ignore[no-any-return]


def script_record(program: str, args: Any) -> Provenance:
    """The record of a ``policies/`` script run: every field of its parsed ``Args``.

    :param program: the script, ``"policies/td3_bc.py"``.
    :param args: its ``Args`` instance, or a mapping of the fields that differ from ``Args()``'s.
    """
    if isinstance(args, Mapping):
        args = script_args(program)(**args)
    return provenance.from_dataclass(program, args)


def render_argv(record: Provenance) -> list[str]:
    """The arguments of :func:`render`, without the program's own words.

    :param record: a provenance record of a program of this module.
    """
    if _is_script(record.program):
        return dataclass_argv(record.program, script_args(record.program), record.args, ALWAYS_SHOWN)
    return argparse_argv(command_parser(record.program), record.args, ALWAYS_SHOWN)


def render(record: Provenance) -> str:
    """The command line that remakes ``record``, for docs and cards (shell-quoted).

    :param record: a provenance record of a program of this module.
    """
    head = ["python", record.program] if _is_script(record.program) else record.program.split(" ")
    return shlex.join(head + render_argv(record))


def parse(program: str, argv: Sequence[str]) -> Provenance:
    """What ``program`` makes of ``argv``: its record, every argument resolved.

    :param program: a program of this module.
    :param argv: its arguments, without the program's own words.
    :raises ValueError: when the program refuses them (the message is its own).
    """
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            if _is_script(program):
                from itpo_lab.offline.loop import parse_args

                return provenance.from_dataclass(program, parse_args(script_args(program), list(argv)))
            tool, _, name = program.partition(" ")
            command_parser(program)  # a command that writes no record is refused here, by name
            return provenance.from_namespace(program, _top_parser(tool).parse_args([name, *argv]))
    except SystemExit as err:
        raise ValueError(f"{program} refuses {shlex.join(argv)!r}: {errors.getvalue().strip()}") from err


def from_command(command: str) -> Provenance:
    """The record of a command line a file written before issue 22 stored, through the program's own parser.

    :param command: ``"python policies/td3_bc.py --dataset ..."``, ``"itpo-lab improve ..."``, ...
    :raises ValueError: when it names no known program or the program refuses it.
    """
    words = shlex.split(command)
    if len(words) >= 2 and words[0] == "python":
        return parse(words[1], words[2:])
    if len(words) >= 2 and words[0] in _TOOLS:
        try:
            return parse(f"{words[0]} {words[1]}", words[2:])
        except ValueError:
            if words[0] != "itpo":
                raise
            # before the lab split `itpo train-world-model` took --zoo-dir itself; the zoo's options are
            # itpo-lab's now, whose commands are itpo's plus them
            return parse(f"itpo-lab {words[1]}", words[2:])
    raise ValueError(f"{command!r} names no program a provenance record knows (python policies/<script>.py, "
                     f"{' or '.join(_TOOLS)} <command>)")


def record_of(spec: Mapping[str, Any]) -> Provenance | None:
    """The provenance record of a zoo policy, world model, check, behaviour card or checkpoint ``info``: the
    stored record, or one made from the command line an older file stored (:func:`from_command`); ``None``
    when it has neither.

    :param spec: the dict holding ``"provenance"`` (or the older ``"command"``).
    """
    record = provenance.of(spec)
    legacy = provenance.legacy_command(spec)
    return record if record is not None or legacy is None else from_command(legacy)


def command_of(spec: Mapping[str, Any]) -> str | None:
    """The command line a card or doc shows for ``spec``: its record rendered; an older file's command line as
    it was stored (shown, never rewritten: ``itpo-lab migrate-provenance`` turns it into a record); ``None``
    when there is neither.

    :param spec: as for :func:`record_of`.
    """
    record = provenance.of(spec)
    return render(record) if record is not None else provenance.legacy_command(spec)
