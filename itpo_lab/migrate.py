"""``itpo-lab migrate-provenance``: the command lines that files written before issue 22 stored, turned into
provenance records (:mod:`itpo_wrap.provenance`) once, through each program's own parser
(:func:`itpo_lab.remake.from_command`).

The files: zoo entries (``entry.json``: each policy and world model), settings checks (``check.json``) and
behaviour cards (``card.json``). Each ``"command"`` string becomes a ``"provenance"`` record in the same place,
and the file is rewritten by its own writer, which also renders its card (``MODEL_CARD.md``, ``CARD.md``).
Checkpoints (``.pt``) keep their ``info`` as written: their old command lines are read the same way when
needed (:func:`itpo_lab.remake.record_of`).

    itpo-lab migrate-provenance policies itpo_wrap/zoo_demo
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from itpo_lab.remake import from_command
from itpo_wrap import provenance

__all__ = ["MIGRATED_FILES", "migrate_file", "migrate_paths", "migrate_spec"]

MIGRATED_FILES = ("entry.json", "check.json", "card.json")


def migrate_spec(spec: dict[str, Any]) -> bool:
    """Replace ``spec["command"]`` by the record parsed from it, at the same place in the key order.

    :param spec: one zoo policy or world model, a check or a behaviour card (changed in place).
    :return: whether there was a command line to migrate.
    :raises ValueError: when the command line names no known program or its program refuses it.
    """
    legacy = provenance.legacy_command(spec)
    if legacy is None:
        return False
    record = from_command(legacy).to_dict()
    if provenance.KEY in spec and spec[provenance.KEY] != record:
        raise ValueError(f"both a provenance record and the command {legacy!r}, which disagree; keep one")
    items = [(provenance.KEY if k == provenance.LEGACY_KEY else k, record if k == provenance.LEGACY_KEY else v)
             for k, v in spec.items() if k != provenance.KEY]
    spec.clear()
    spec.update(items)
    return True


def migrate_file(path: str | Path) -> int:
    """Migrate one ``entry.json``, ``check.json`` or ``card.json`` and rewrite it (and its card) when it held a
    command line.

    :param path: the file.
    :return: how many command lines became records.
    """
    path = Path(path)
    if path.name not in MIGRATED_FILES:
        raise ValueError(f"{str(path)!r} is none of {MIGRATED_FILES}")
    data = json.loads(path.read_text())
    specs = [*data["policies"].values(), *data.get("world_models", {}).values()] if path.name == "entry.json" \
        else [data]
    count = sum(migrate_spec(spec) for spec in specs)
    if count:
        _write(path, data)
    return count


def _write(path: Path, data: dict[str, Any]) -> None:
    """Rewrite ``path`` the way its own writer writes it."""
    if path.name == "entry.json":
        from itpo_lab.zoo_write import write_entry

        write_entry(path.parent.parent, path.parent.name, data)
    elif path.name == "check.json":
        from itpo_lab.offline.checks import write_check

        write_check(path.parent, data)
    else:
        from itpo_lab.data.behavior import write_card

        write_card(path.parent, data)


def migrate_paths(paths: Iterable[str | Path]) -> dict[Path, int]:
    """:func:`migrate_file` on every ``entry.json``, ``check.json`` and ``card.json`` under ``paths``.

    :param paths: files or folders (searched recursively).
    :return: the number of records made, by file (files without a command line left out).
    """
    found: list[Path] = []
    for path in map(Path, paths):
        found += [path] if path.is_file() else sorted(p for name in MIGRATED_FILES for p in path.rglob(name))
    done = {p: migrate_file(p) for p in found}
    return {p: n for p, n in done.items() if n}
