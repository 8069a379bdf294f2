"""Command lines rendered from provenance records (issue 22): the words that make a program parse back to a
record's ``args``, showing only the options that differ from the program's *current* defaults (plus those a
reader looks for first). Rendering is for the docs, so it lives in the lab; the library only writes and reads
the records (:mod:`itpo_wrap.provenance`). One loop serves both kinds of program: argparse commands
(:func:`argparse_argv`) and the ``policies/`` scripts' tyro-parsed ``Args`` dataclasses (:func:`dataclass_argv`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from itpo_wrap.provenance import jsonable

__all__ = ["argparse_argv", "dataclass_argv", "value_text"]


def value_text(value: Any) -> str:
    """One argument value as a command-line word: ``none`` for ``None`` (the commands whose option may be
    ``None`` read it so), ``4`` for the float ``4.0`` (a float option parses it back to ``4.0``), else ``str``.

    :param value: a JSON scalar of a record's ``args``.
    """
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class _Option:
    """One option of a program: its name in the record, its current default (JSON form), the words that set a
    value, and whether a value is a bare switch (never shown at its default, even when always shown)."""

    dest: str
    default: Any
    words: Callable[[Any], list[str]]
    switch: Callable[[Any], bool]


def _render(owner: str, options: Sequence[_Option], args: Mapping[str, Any], always: tuple[str, ...],
            names: tuple[str, str] = ("options", "the program's current options")) -> list[str]:
    """The words of ``args`` that differ from the options' defaults (and those in ``always``), in option order.
    An option missing from ``args`` (a record older than the option) is left out, so it takes its default.
    ``names``: what the error calls the options, and what they are now."""
    unknown = sorted(set(args) - {o.dest for o in options})
    if unknown:
        raise ValueError(f"{owner} has no {names[0]} {unknown} (removed since the record was written?); "
                         f"migrate the record to {names[1]}")
    words: list[str] = []
    for o in options:
        if o.dest not in args:
            continue
        value = jsonable(args[o.dest])
        shown = o.dest in always and value is not None and not o.switch(value)
        if value != o.default or shown:
            words += o.words(value)
    return words


def _option_words(action: argparse.Action, value: Any) -> list[str]:
    """The words that make ``action`` parse to ``value`` (which differs from its default)."""
    flags = action.option_strings
    option = next((f for f in flags if f.startswith("--")), flags[0] if flags else "")
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"{option} takes no value; {value!r} can only be its default")
        return [option] if value else [next(f for f in flags if f.startswith("--no-"))]
    if isinstance(action, (argparse._StoreConstAction, argparse._CountAction)):  # store_true/false are consts
        if isinstance(action, argparse._CountAction):
            return [option] * int(value)
        if value != jsonable(action.const):
            raise ValueError(f"{option} can only set {action.const!r}, not {value!r}")
        return [option]
    if isinstance(action, argparse._AppendAction):
        return [word for v in value for word in (option, value_text(v))]
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    texts = [value_text(v) for v in value] if many else [value_text(value)]
    if not flags:
        return texts
    if not many and texts[0].startswith("-"):  # "--seed=-3": a negative number must not read as an option
        return [f"{option}={texts[0]}"]
    return [option, *texts]


def _takes_no_value(action: argparse.Action, value: Any) -> bool:
    """A switch, const or count option: anything but a plain value option."""
    return type(action) is not argparse._StoreAction


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def argparse_argv(parser: argparse.ArgumentParser, args: Mapping[str, Any],
                  always: tuple[str, ...] = ()) -> list[str]:
    """The arguments of an argparse command that parse back to ``args``, in the parser's ``--help`` order.

    :param parser: the command's own parser (a subcommand's, for ``itpo improve``).
    :param args: a record's ``args``.
    :param always: dests shown even at their default (what a reader looks for first, e.g. ``"dataset"``); a
        switch (anything but a plain value option) never is.
    :raises ValueError: when ``args`` names an option the parser no longer has, or a value it cannot take.
    """
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    options = [_Option(a.dest, jsonable(a.default), functools.partial(_option_words, a),
                       functools.partial(_takes_no_value, a)) for a in parser._actions if not isinstance(a, skip)]
    return _render(parser.prog, options, args, always)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return jsonable(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return jsonable(f.default_factory())
    return dataclasses.MISSING  # a required field: always shown


def _field_words(name: str, value: Any) -> list[str]:
    """tyro's words for one field: ``--flag`` / ``--no-flag`` for a bool, ``--flag v1 v2`` for a list."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(value, list):
        return [flag, *(value_text(v) for v in value)]
    text = value_text(value)  # parse_args reads "none" for an optional int/float/str field
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def dataclass_argv(program: str, args_class: type[Any], args: Mapping[str, Any],
                   always: tuple[str, ...] = ()) -> list[str]:
    """The arguments of a script whose ``Args`` dataclass tyro parses, in field order.

    :param program: the script (named in errors).
    :param args_class: its ``Args`` dataclass.
    :param args: a record's ``args``.
    :param always: fields shown even at their default; a bool field (a switch) never is.
    """
    options = [_Option(f.name, _field_default(f), functools.partial(_field_words, f.name), _is_bool)
               for f in dataclasses.fields(args_class)]
    return _render(program, options, args, always, ("arguments", "the script's current Args"))
