"""The episode table: one CSV row per finished episode, keyed so that a rerun skips what is done.

The columns and the row key are those of the score experiment's ``benchmarks/results/episodes.csv`` (the
results tables are built from them): a row is done when a row with the same ``(entry, policy, split,
settings, seed)`` is in the file, ``settings`` being :func:`settings_key`'s JSON of everything that
defines the configuration.

One process writes (:class:`RowWriter`): the header goes in with the file's creation, atomically, so two
runs starting at once cannot both write it; each row is appended and flushed as it arrives. A run killed
mid-row leaves a last line without its line end: :func:`done_keys` ignores it and :class:`RowWriter`
cuts it off before appending, so a resumed run reruns that episode and the file stays well formed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FIELDS = ["entry", "policy", "method", "kind", "split", "seed", "episode_return", "score", "length", "ms_per_step",
          "terminated", "fallbacks", "step_size", "steps", "particles", "horizon", "gate", "settings", "commit",
          "threads", "finished_at"]
#: the columns that differ between two runs of the same episode by nature (wall time and when it ended)
TIMING_FIELDS = ("ms_per_step", "finished_at")
Key = tuple[str, str, str, str, str]


def settings_key(method: str, kind: str, settings: dict[str, Any]) -> str:
    """A stable string of everything that defines a configuration (the resume key, with entry and seed).

    :param method: ``"base"``, ``"itpo"`` (or a lab baseline's name).
    :param kind: the world model's kind, ``""`` for the base.
    :param settings: the configuration's row-key settings.
    """
    return json.dumps({"method": method, "kind": kind, **settings}, sort_keys=True)


def row_key(row: dict[str, Any]) -> Key:
    """``(entry, policy, split, settings, seed)`` of a row, as strings."""
    return (str(row["entry"]), str(row["policy"]), str(row["split"]), str(row["settings"]), str(row["seed"]))


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of an episode table (``[]`` when there is no file); a last line cut short by a
    kill (no line end) is left out.

    :param path: the CSV file.
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        text = f.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [r for r in rows if None not in r and None not in r.values()]  # a short or long row is not one


def done_keys(path: str | Path) -> set[Key]:
    """The keys of the complete rows in ``path`` (see :func:`row_key`).

    :param path: the CSV file.
    """
    return {row_key(r) for r in read_rows(path)}


class RowWriter:
    """The one writer of an episode table: creates it with its header atomically, cuts off a last line
    a kill left unfinished, then appends each row with :meth:`write`, flushed to disk.

    :param path: the CSV file (its folder is created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create_with_header()
        self._cut_unfinished_line()

    @staticmethod
    def _header() -> str:
        header = io.StringIO(newline="")
        csv.DictWriter(header, fieldnames=FIELDS).writeheader()
        return header.getvalue()

    def _create_with_header(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                f.write(self._header())
            with contextlib.suppress(FileExistsError):  # the file exists: exactly one creator wrote the header
                os.link(tmp, self.path)
        finally:
            os.unlink(tmp)

    def _cut_unfinished_line(self) -> None:
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
        if self.path.stat().st_size == 0:  # even the header was cut short: write it again
            with open(self.path, "w", newline="") as f:
                f.write(self._header())

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (the :data:`FIELDS` columns) and flush it.

        :param row: the row.
        """
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def write_all(self, rows: Iterable[dict[str, Any]]) -> None:
        """:meth:`write` each row.

        :param rows: the rows.
        """
        for row in rows:
            self.write(row)
