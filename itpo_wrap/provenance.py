"""How a zoo file was made, as data: a provenance record ``{"program": ..., "args": {...}}`` (issue 22).

``program`` names what ran: a script of the checkout (``"policies/td3_bc.py"``) or a command of a console
script (``"itpo improve"``, ``"itpo-lab train-world-model"``). ``args`` holds *every* argument the program
resolved, defaults included, as JSON: the fields of a script's ``Args`` dataclass, or every option of an
argparse command. Zoo entries (``entry.json``), checkpoints (``info``), settings checks and behaviour cards
store this record under ``"provenance"``.

A command line is only ever *rendered* from a record, for the docs, by the lab (``itpo_lab.remake.render``
through ``itpo_lab.argv``), and never parsed back: code that needs a setting
reads ``args`` (``args["steps"]``) and code that derives a record edits ``args``. Because the record keeps the
resolved values, a rendered command that shows only the arguments differing from the program's *current*
defaults still remakes the same run after a default changes (the changed one is then shown).

Files written before issue 22 hold the command line itself under ``"command"``; they still load everywhere
(nothing that loads a policy reads either key). :func:`of` returns the record where there is one and
:func:`legacy_command` the old string; the lab turns old strings into records through the programs' own
parsers (``itpo-lab migrate-provenance``).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["KEY", "LEGACY_KEY", "Provenance", "from_dataclass", "from_namespace", "jsonable", "legacy_command",
           "of"]

KEY = "provenance"
"""The key a record is stored under in an ``entry.json`` policy or world model, a check, a checkpoint's ``info``."""
LEGACY_KEY = "command"
"""Where files written before issue 22 kept the command line instead."""
# what ``itpo_wrap.cli.make_parser`` puts in every namespace besides the options: the chosen subcommand's name
# (``dest="command"``, part of the program) and its function (``set_defaults(func=...)``)
_NOT_ARGUMENTS = ("command", "func")


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How something was made: the program and every argument it resolved (JSON values).

    :param program: ``"policies/<script>.py"`` or ``"<console script> <command>"`` (``"itpo improve"``).
    :param args: argument name (``Args`` field or argparse ``dest``) -> JSON value.
    """

    program: str
    args: dict[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.program, str) or not self.program.strip():
            raise ValueError(f"program={self.program!r} must name the script or command that ran")
        if not isinstance(self.args, dict) or not all(isinstance(k, str) for k in self.args):
            raise ValueError(f"args of {self.program!r} must be a dict of argument names, not {type(self.args)}")

    def to_dict(self) -> dict[str, Any]:
        """The record as stored in JSON: ``{"program": ..., "args": {...}}``."""
        return {"program": self.program, "args": {k: jsonable(v) for k, v in self.args.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """A record read back from JSON (:meth:`to_dict`'s form).

        :param data: ``{"program": str, "args": dict}``.
        :raises ValueError: when either is missing or of the wrong type.
        """
        if not isinstance(data, Mapping) or set(data) != {"program", "args"}:
            raise ValueError(f"a provenance record is {{'program': ..., 'args': {{...}}}}, not {data!r}")
        return cls(program=data["program"], args=dict(data["args"]))


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: paths as strings, tuples as lists, enums by value; anything else not JSON fails
    (a record that could not be written back exactly is refused rather than stored approximately).

    :param value: an argument's value.
    :raises TypeError: for a value with no JSON form.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    raise TypeError(f"{value!r} ({type(value).__name__}) has no JSON form for a provenance record")


def from_namespace(program: str, args: argparse.Namespace) -> Provenance:
    """The record of an argparse command from its parsed namespace (every option, defaults included).

    :param program: ``"itpo improve"``, ``"itpo-lab train-world-model"``, ...
    :param args: the namespace ``parse_args`` returned for that command.
    """
    return Provenance(program, {k: jsonable(v) for k, v in vars(args).items() if k not in _NOT_ARGUMENTS})


def from_dataclass(program: str, args: Any) -> Provenance:
    """The record of a script from its ``Args`` dataclass (every field).

    :param program: the script's path in the checkout, ``"policies/td3_bc.py"``.
    :param args: the parsed ``Args`` instance.
    """
    if not dataclasses.is_dataclass(args) or isinstance(args, type):
        raise TypeError(f"{args!r} is not a dataclass instance (a script's parsed Args)")
    return Provenance(program, {f.name: jsonable(getattr(args, f.name)) for f in dataclasses.fields(args)})


def of(spec: Mapping[str, Any]) -> Provenance | None:
    """The provenance record of a zoo policy or world model (or a check, a checkpoint's ``info``); ``None``
    when it has none (older files: :func:`legacy_command`).

    :param spec: the record's parent, e.g. ``entry["policies"]["td3_bc"]``.
    """
    data = spec.get(KEY)
    return None if data is None else Provenance.from_dict(data)


def legacy_command(spec: Mapping[str, Any]) -> str | None:
    """The command line a file written before issue 22 stored instead of a record, or ``None``.

    :param spec: as for :func:`of`.
    """
    text = spec.get(LEGACY_KEY)
    return text if isinstance(text, str) else None
