"""Metric files of the training loop (:mod:`itpo_wrap.training.loop`): one row model, one layout, one reader.

A row is ``(component, step, wall_s, {key: value})``: ``step`` counts updates, ``wall_s`` is training wall time
summed over resumed segments, and every loop logs ``updates_per_s`` (the rate since the previous row, time spent
evaluating or checkpointing left out) beside its losses. Values are numbers; tensors are read with ``.item()``
only here, integers are written exactly and other numbers with 6 significant digits.

Every loop writes the same long file, ``metrics.csv`` (:class:`MetricsLog`), one line per value:
``component, step, wall_s, metric, value`` with metric names ``<component>/<key>``. The components are the
world model's parts (``dynamics``, ``reward``, ...), ``itpo improve``'s parts, and the base-policy trainers'
``train`` (losses, Q, ``updates_per_s``) and ``eval`` (``return_mean``, ``score_mean``, ``episodes``, ...).
:func:`read_metrics` gives a component's rows back as :meth:`MetricsLog.write` received them, and is how every
tool reads these files. (The base-policy trainers once wrote a wide ``train.csv`` and ``eval.csv`` with a column
per key and an ``update`` step column; ``itpo-lab convert-logs`` turns those into this layout, losslessly, and
:func:`read_metrics` refuses them with that fix.)

A resumed run drops the rows written after its checkpoint (:meth:`MetricsLog.truncate_after`), so a log reads as
if the run had never stopped.
"""

from __future__ import annotations

import csv
import numbers
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itpo_wrap.tensorboard import TensorBoardLog

__all__ = ["LONG_HEADER", "MetricsLog", "fmt", "read_metrics"]

LONG_HEADER = ["component", "step", "wall_s", "metric", "value"]


def fmt(value: Any) -> str:
    """A metric as written: tensors and numpy scalars read with ``.item()``, integers exactly (a seed or an
    episode count stays a whole number), other numbers with 6 significant digits.

    :param value: a number, a 0-d tensor or a numpy scalar.
    """
    if hasattr(value, "item"):  # a tensor or a numpy scalar; a tensor of several values fails here, loudly
        value = value.item()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.6g}"


def _rewrite(path: Path, keep: Callable[[list[str]], bool]) -> None:
    """Keep the header and the rows ``keep`` accepts, replacing ``path`` atomically (only when a row goes)."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    kept = rows[:1] + [r for r in rows[1:] if keep(r)]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows(kept)
    tmp.replace(path)


def _step_at_most(value: str, step: int) -> bool:
    """A row's step is known and at most ``step`` (a half-written row, killed mid-write, is past any checkpoint)."""
    try:
        return float(value) <= step
    except ValueError:
        return False


class MetricsLog:
    """Thread-safe long-format sink: ``metrics.csv`` (``component, step, wall_s, metric, value``) and, when given a
    TensorBoard log (``--tensorboard``), the same rows as scalars tagged ``<component>/<metric>``.

    :param run_dir: where ``metrics.csv`` goes (appended on resume).
    :param tensorboard: an :class:`itpo_wrap.tensorboard.TensorBoardLog` (closed with this log); ``None`` writes
        nothing TensorBoard-related.
    """

    def __init__(self, run_dir: Path, tensorboard: TensorBoardLog | None = None) -> None:
        self.path = run_dir / "metrics.csv"
        self._lock = threading.Lock()
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(LONG_HEADER)
        self._tb = tensorboard

    def write(self, component: str, step: int, wall_s: float, metrics: dict[str, Any]) -> None:
        """One line per value: ``component, step, wall_s, <component>/<key>, value`` (:func:`fmt`).

        :param component: the part or role that logs (``dynamics``, ``train``, ``eval``, ...).
        :param step: the update the values belong to.
        :param wall_s: training wall seconds so far, summed over resumed segments.
        :param metrics: ``{key: number}``; :func:`read_metrics` gives the same keys back.
        """
        with self._lock:
            for key, value in metrics.items():
                self._csv.writerow([component, step, f"{wall_s:.2f}", f"{component}/{key}", fmt(value)])
            self._file.flush()
            if self._tb is not None:
                self._tb.write(step, {f"{component}/{key}": value for key, value in metrics.items()})

    def truncate_after(self, step: int, component: str) -> None:
        """Drop ``component``'s rows past ``step`` (written after its checkpoint by a run that was killed)."""
        with self._lock:
            self._file.close()
            _rewrite(self.path, lambda r: len(r) == len(LONG_HEADER) and (r[0] != component
                                                                            or _step_at_most(r[1], step)))
            self._file = open(self.path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
            self._csv = csv.writer(self._file)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _row_values(row: list[str]) -> tuple[int, float, float] | None:
    """``(step, wall_s, value)`` of a ``metrics.csv`` line, or ``None`` for a line cut short by a kill."""
    if len(row) != len(LONG_HEADER):
        return None
    try:
        return int(float(row[1])), float(row[2]), float(row[4])
    except ValueError:
        return None


def read_metrics(path: str | Path, component: str) -> list[dict[str, float]]:
    """A component's rows of a ``metrics.csv``, as :meth:`MetricsLog.write` received them, oldest first.

    Each row is ``{"step": int, "wall_s": float, key: value, ...}`` with the component's own keys (metric names
    without the ``<component>/`` prefix: ``score_mean`` for ``eval/score_mean``); the values a component logged
    at one step form one row (its ``wall_s`` the latest of them, e.g. after a held-out evaluation). A line cut
    short by a killed run is skipped.

    :param path: the file (``metrics.csv``, or a zoo entry's ``<algorithm>_metrics.csv``).
    :param component: ``train``, ``eval``, ``dynamics``, ...; no rows (``[]``) when it logged none.
    :raises ValueError: the file is not in this layout (the old wide ``train.csv`` / ``eval.csv`` name the fix).
    """
    path = Path(path)
    with path.open(newline="") as fh:
        lines = csv.reader(fh)
        header = next(lines, None)
        if header != LONG_HEADER:
            raise ValueError(_not_long(path, header))
        rows: dict[int, dict[str, float]] = {}
        prefix = component + "/"
        for line in lines:
            values = _row_values(line)
            if line[:1] != [component] or values is None:
                continue
            step, wall_s, value = values
            row = rows.setdefault(step, {"step": step})
            row["wall_s"] = wall_s
            row[line[3].removeprefix(prefix)] = value
    return list(rows.values())


def _not_long(path: Path, header: list[str] | None) -> str:
    """Why ``path`` cannot be read as ``metrics.csv``, and the fix when it is a wide log of the old layout."""
    if header and "update" in header:
        return (f"{str(path)!r} is a log of the old wide layout (a column per metric, an 'update' column); "
                f"convert its folder once with `itpo-lab convert-logs {path.parent}` (lossless) and read the "
                "metrics.csv it writes")
    return f"{str(path)!r} is not a metrics log: its header is {header}, expected {LONG_HEADER}"
