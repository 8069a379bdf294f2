"""Metric files of the training loop (:mod:`itpo_wrap.training.loop`): one row model, two layouts.

A row is ``(component, step, wall_s, {key: value})``: ``step`` counts updates, ``wall_s`` is training wall time
summed over resumed segments, and every loop logs ``updates_per_s`` (the rate since the previous row, time spent
evaluating or checkpointing left out) beside its losses. Values are numbers; tensors are read with ``.item()``
only here, and written with 6 significant digits. Two layouts, each read by existing tools and shipped logs:

- :class:`MetricsLog`, long: ``metrics.csv`` with ``component, step, wall_s, metric, value`` and metric names
  ``<component>/<key>`` (world-model parts, ``itpo improve``);
- :class:`CsvLog`, wide: one file per component with a column per key (the base-policy trainers' ``train.csv``
  and ``eval.csv``, step column ``update``).

A resumed run drops the rows written after its checkpoint (``truncate_after``), so a log reads as if the run had
never stopped.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from itpo_wrap.tensorboard import TensorBoardLog

LONG_HEADER = ["component", "step", "wall_s", "metric", "value"]


def fmt(value: Any) -> Any:
    """A metric as written: tensors read with ``.item()``, floats with 6 significant digits."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


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
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(LONG_HEADER)
        self._tb = tensorboard

    def write(self, component: str, step: int, wall_s: float, metrics: dict[str, Any]) -> None:
        with self._lock:
            for key, value in metrics.items():
                self._csv.writerow([component, step, f"{wall_s:.2f}", f"{component}/{key}", f"{value:.6g}"])
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


class CsvLog:
    """Append-only wide CSV (a column per key) with a header fixed by the first row (or by the existing file).

    :param path: the CSV file.
    :param step_column: the column :meth:`truncate_after` reads the step from.
    """

    def __init__(self, path: Path, step_column: str = "update") -> None:
        self.path, self.step_column = path, step_column
        self.fields: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as fh:
                self.fields = next(csv.reader(fh), None)

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow({k: fmt(v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        """Drop rows whose step column exceeds ``step`` (rows logged after the checkpoint)."""
        if not self.path.exists() or self.fields is None:
            return
        col = self.fields.index(self.step_column) if self.step_column in self.fields else None
        _rewrite(self.path, lambda r: col is not None and len(r) == len(self.fields or ())
                 and _step_at_most(r[col], step))
