"""The plumbing of the resumable training loop (:mod:`itpo_wrap.training.loop`), shared by world-model parts,
``itpo improve`` and the base-policy trainers: :class:`Loop` (update counter, cadence, wall clock across resumes,
``updates_per_s``, progress bar), :class:`Checkpoints` (atomic files, newest readable one loaded with
``weights_only=True``), :func:`collect_state` / :func:`restore_state` (modules, optimizers, schedulers and
``torch.Generator`` states by name)."""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["Checkpoints", "Loop", "collect_state", "restore_state"]


class Loop:
    """Counts updates ``start + 1 .. total`` and owns what every training loop shares besides the update.

    :param total: the update budget.
    :param log_every: metric-row cadence (:meth:`due_log`).
    :param eval_every: evaluation cadence (:meth:`due_eval`); 0 disables.
    :param checkpoint_every: checkpoint cadence (:meth:`due_checkpoint`).
    :param desc: progress-bar label.
    :param position: progress-bar row (one per worker thread).
    :param progress: show a tqdm progress bar.
    """

    def __init__(self, total: int, *, log_every: int, eval_every: int, checkpoint_every: int, desc: str,
                 position: int = 0, progress: bool = True) -> None:
        self.total, self.log_every = total, log_every
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.desc, self.position, self.progress = desc, position, progress
        self.start, self.wall_before = 0, 0.0
        self._t0 = time.perf_counter()
        self._mark = (self._t0, 0)  # (time, update) of the last rate measurement
        self._bar: Any = None

    def resume_at(self, step: int, wall_s: float) -> None:
        """Continue after a checkpoint taken at ``step`` with ``wall_s`` seconds of training behind it."""
        self.start, self.wall_before = step, wall_s

    def __iter__(self) -> Iterator[int]:
        self._t0 = time.perf_counter()
        self._mark = (self._t0, self.start)
        self._bar = tqdm(total=self.total, initial=self.start, desc=self.desc, position=self.position, leave=True,
                         disable=not self.progress, dynamic_ncols=True, mininterval=1.0)
        try:
            for step in range(self.start + 1, self.total + 1):
                yield step
                self._bar.update(1)
        finally:
            self._bar.close()

    def segment_s(self) -> float:
        """Wall seconds of this segment (since this process started iterating)."""
        return time.perf_counter() - self._t0

    def elapsed(self) -> float:
        """Wall seconds spent training, summed over every resumed segment."""
        return self.wall_before + self.segment_s()

    def _due(self, step: int, every: int) -> bool:
        return every > 0 and (step % every == 0 or step == self.total)

    def due_log(self, step: int) -> bool:
        return self._due(step, self.log_every)

    def due_eval(self, step: int) -> bool:
        return self._due(step, self.eval_every)

    def due_checkpoint(self, step: int) -> bool:
        return self._due(step, self.checkpoint_every)

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time spent inside (evaluation, checkpoint writing) is left out of :meth:`rate`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            last_t, last_u = self._mark
            self._mark = (last_t + time.perf_counter() - t0, last_u)

    def rate(self, step: int) -> float:
        """``updates_per_s`` since the previous call (or the segment's start), pauses left out."""
        now = time.perf_counter()
        last_t, last_u = self._mark
        self._mark = (now, step)
        return (step - last_u) / max(now - last_t, 1e-9)

    def show(self, postfix: dict[str, str]) -> None:
        """Numbers beside the progress bar."""
        if self._bar is not None:
            self._bar.set_postfix(postfix, refresh=False)


class Checkpoints:
    """A run's checkpoint files, each written atomically (``torch.save`` to a temporary file, then ``os.replace``)
    with the caller's state plus ``step`` and ``wall_s``: one file ``<folder>/<name>.ckpt.pt`` rewritten in place
    (``keep=None``: world-model parts, ``itpo improve``), or ``<folder>/<name>_<step:09d>.pt`` with the newest
    ``keep`` kept (the base-policy trainers' ``checkpoints/update_*.pt``).

    :param folder: where the files go (created on the first save).
    :param name: the file-name stem.
    :param keep: numbered files to keep; ``None``: one file.
    """

    def __init__(self, folder: str | Path, name: str, keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep} must be at least 1 (or None for one file rewritten in place)")
        self.folder, self.name, self.keep = Path(folder), name, keep
        self._numbered = re.compile(rf"^{re.escape(name)}_(\d+)\.pt$")

    def path(self, step: int) -> Path:
        return self.folder / (f"{self.name}.ckpt.pt" if self.keep is None else f"{self.name}_{step:09d}.pt")

    def paths(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        if self.keep is None:
            return [p] if (p := self.path(0)).is_file() else []
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := self._numbered.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, step: int, wall_s: float, state: dict[str, Any]) -> Path:
        path = self.path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"step": step, "wall_s": wall_s, **state}, tmp)
        os.replace(tmp, path)
        if self.keep is not None:
            for old in self.paths()[:-self.keep]:
                old.unlink()
        return path

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The newest readable checkpoint, or ``None``; an unreadable file is skipped with a warning."""
        for path in reversed(self.paths()):
            try:
                return dict(torch.load(path, map_location=map_location, weights_only=True))
            except Exception as err:  # a corrupt file: fall back to the previous checkpoint, if any
                warnings.warn(f"skipping unreadable checkpoint {path} ({type(err).__name__}: {err})", stacklevel=2)
        return None


def collect_state(**objects: Any) -> dict[str, Any]:
    """``state_dict()`` of modules, optimizers and schedulers, ``get_state()`` of torch generators, by name."""
    return {name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
            for name, obj in objects.items()}


def restore_state(state: dict[str, Any], **objects: Any) -> None:
    """Inverse of :func:`collect_state`; a missing name is an error naming it."""
    for name, obj in objects.items():
        if name not in state:
            raise KeyError(f"checkpoint has no {name!r} (it has {sorted(state)}); was it written by another trainer?")
        if isinstance(obj, torch.Generator):
            obj.set_state(state[name].cpu())  # a generator's state is a CPU byte tensor, on any device
        else:
            obj.load_state_dict(state[name])
