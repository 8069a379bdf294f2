"""Resumable training-loop plumbing for the single-file trainers in ``policies/``.

A run lives in one folder::

    run_dir/
      checkpoints/update_000050000.pt   full training state (newest ``keep`` kept), weights_only-loadable
      train.csv                         update, wall_s, updates_per_s, losses (every ``log_every``)
      eval.csv                          update, wall_s, eval/return_mean, eval/score_mean, ...
      policy.pt                         the final offline policy (written by the trainer)
      tensorboard.txt                   with ``--tensorboard DIR``: the TensorBoard run folder it writes to

Rerunning the same command resumes from the newest checkpoint: the update counter, the wall
clock, the networks, the optimizers and the sampling generator are restored, and CSV rows written
after that checkpoint are dropped, so the logs read as if the run had never stopped. The TensorBoard
run (``train/...``, ``time/...``, ``eval/...`` scalars) continues in the same folder and hides the steps
after that checkpoint the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import re
import time
import typing
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from itpo_wrap.tensorboard import TensorBoardLog

_CKPT = re.compile(r"^update_(\d+)\.pt$")


class CsvLog:
    """Append-only CSV with a header fixed by the first row (or by the existing file).

    :param path: the CSV file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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
            writer.writerow({k: _fmt(v) for k, v in row.items()})

    def truncate_after(self, update: int) -> None:
        """Drop rows whose ``update`` column exceeds ``update`` (rows logged after the checkpoint)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if self.fields is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(r for r in rows if _update_of(r) <= update)
        tmp.replace(self.path)


class TrainLoop:
    """Counts updates, decides when to log / evaluate / checkpoint, and saves and restores state.

    :param run_dir: the run folder (created).
    :param total_updates: the fixed update budget.
    :param checkpoint_every: save the training state every this many updates (and at the end).
    :param eval_every: evaluation cadence used by :meth:`due_eval` (and at the end); 0 disables.
    :param log_every: ``train.csv`` cadence used by :meth:`due_log`.
    :param keep: how many training checkpoints to keep.
    :param desc: progress-bar label.
    :param progress: show a tqdm progress bar.
    """

    def __init__(self, run_dir: str | Path, *, total_updates: int, checkpoint_every: int, eval_every: int,
                 log_every: int = 1000, keep: int = 2, desc: str = "train", progress: bool = True) -> None:
        for name, value in (("total_updates", total_updates), ("checkpoint_every", checkpoint_every),
                            ("log_every", log_every), ("keep", keep)):
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1")
        if eval_every < 0:
            raise ValueError(f"eval_every={eval_every} must be >= 0 (0 disables evaluation)")
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.total, self.checkpoint_every, self.eval_every = total_updates, checkpoint_every, eval_every
        self.log_every, self.keep, self.desc, self.progress = log_every, keep, desc, progress
        self.start = 0
        self._wall_before = 0.0
        self._t0 = time.perf_counter()
        self._last_log = (self._t0, 0)
        self.train_log = CsvLog(self.run_dir / "train.csv")
        self.eval_log = CsvLog(self.run_dir / "eval.csv")
        self._bar: Any = None
        # set after resume() by a run with --tensorboard (itpo_wrap.tensorboard.open_run): rows go there too
        self.tensorboard: TensorBoardLog | None = None

    # ----------------------------------------------------------------- resume
    def checkpoints(self) -> list[Path]:
        """Training checkpoints, oldest first."""
        found = [(int(m.group(1)), p) for p in self.ckpt_dir.iterdir() if (m := _CKPT.match(p.name))]
        return [p for _, p in sorted(found)]

    def resume(self, config: dict[str, Any], may_differ: Sequence[str] = ()) -> dict[str, Any] | None:
        """Load the newest readable checkpoint (``weights_only=True``) and position the counter after it.

        :param config: the current run's arguments; a checkpoint made with different values for keys
            not in ``may_differ`` is refused (resuming it would silently mix two experiments).
        :param may_differ: keys allowed to change across a resume (budgets, cadences, threads).
        :return: the saved state dict, or ``None`` when the run starts fresh.
        """
        for path in reversed(self.checkpoints()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # a corrupt file: fall back to the previous checkpoint
                warnings.warn(f"skipping unreadable checkpoint {path} ({type(err).__name__}: {err})", stacklevel=2)
                continue
            saved = state.get("config", {})
            diff = sorted(k for k in set(saved) | set(config)
                          if k not in may_differ and saved.get(k) != config.get(k))
            if diff:
                changes = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in diff)
                raise ValueError(f"run dir {str(self.run_dir)!r} holds a checkpoint made with other settings "
                                 f"({changes}); use a new --run-dir or the original arguments")
            self.start = int(state["loop"]["update"])
            if self.start > self.total:
                raise ValueError(f"run dir {str(self.run_dir)!r} is already at update {self.start}, past "
                                 f"total_updates={self.total}; raise --total-updates or use a new --run-dir")
            self._wall_before = float(state["loop"]["wall_s"])
            self.train_log.truncate_after(self.start)
            self.eval_log.truncate_after(self.start)
            return state
        return None

    # ------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[int]:
        self._t0 = time.perf_counter()
        self._last_log = (self._t0, self.start)
        self._bar = tqdm(total=self.total, initial=self.start, desc=self.desc, disable=not self.progress,
                         dynamic_ncols=True, mininterval=1.0)
        try:
            for update in range(self.start + 1, self.total + 1):
                yield update
                self._bar.update(1)
        finally:
            self._bar.close()

    def elapsed(self) -> float:
        """Wall seconds spent training, summed over every resumed segment."""
        return self._wall_before + time.perf_counter() - self._t0

    def _due(self, update: int, every: int) -> bool:
        return every > 0 and (update % every == 0 or update == self.total)

    def due_log(self, update: int) -> bool:
        return self._due(update, self.log_every)

    def due_eval(self, update: int) -> bool:
        return self._due(update, self.eval_every)

    def due_checkpoint(self, update: int) -> bool:
        return self._due(update, self.checkpoint_every)

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time spent inside (evaluation, checkpoint writing) is left out of ``updates_per_s``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            last_t, last_u = self._last_log
            self._last_log = (last_t + time.perf_counter() - t0, last_u)

    # --------------------------------------------------------------- outputs
    def log(self, update: int, metrics: dict[str, Any]) -> None:
        """Append a ``train.csv`` row; tensors are read with ``.item()`` only here."""
        now = time.perf_counter()
        last_t, last_u = self._last_log
        rate = (update - last_u) / max(now - last_t, 1e-9)
        self._last_log = (now, update)
        row = {"update": update, "wall_s": self.elapsed(), "updates_per_s": rate, **metrics}
        self.train_log.write(row)
        if self.tensorboard is not None:
            self.tensorboard.write(update, {"time/wall_s": row["wall_s"], "time/updates_per_s": rate,
                                            **{f"train/{k}": v for k, v in metrics.items()}})
        if self._bar is not None:
            self._bar.set_postfix({"upd/s": f"{rate:.0f}"}, refresh=False)

    def log_eval(self, update: int, row: dict[str, Any]) -> None:
        """Append an ``eval.csv`` row and print the means."""
        self.eval_log.write({**row, "update": update, "wall_s": self.elapsed()})
        if self.tensorboard is not None:  # the scores; episodes and seed are settings, not curves
            self.tensorboard.write(update, {k: v for k, v in row.items() if k.startswith("eval/")})
        msg = " ".join(f"{k.split('/')[-1]}={_fmt(v)}" for k, v in row.items() if k.endswith("_mean"))
        tqdm.write(f"[{self.desc}] update {update}: {msg}")

    def save(self, update: int, state: dict[str, Any]) -> Path:
        """Write ``state`` plus the loop position atomically, then prune old checkpoints."""
        payload = {**state, "loop": {"update": update, "wall_s": self.elapsed()}}
        path = self.ckpt_dir / f"update_{update:09d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        with self.pause():
            torch.save(payload, tmp)
            tmp.replace(path)
            for old in self.checkpoints()[:-self.keep]:
                old.unlink()
        return path


def parse_args(cls: type[Any], argv: Sequence[str] | None = None, description: str | None = None) -> Any:
    """Build a dataclass of script arguments from the command line (``--snake-case`` flags).

    Booleans get ``--flag/--no-flag``; ``X | None`` fields accept the string ``none``.

    :param cls: the ``Args`` dataclass.
    :param argv: arguments (``sys.argv[1:]`` when ``None``).
    :param description: help text (the script's docstring).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_args(hint) and len(args) == 1 else hint
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        conv = base if base in (int, float, str) else str

        def convert(text: str, conv: Any = conv, optional: bool = base is not hint) -> Any:
            return None if optional and text.lower() == "none" else conv(text)

        parser.add_argument(flag, type=convert, default=f.default, metavar=getattr(conv, "__name__", "X").upper())
    return cls(**vars(parser.parse_args(argv)))


def _update_of(row: dict[str, Any]) -> float:
    """A row's update number; a half-written last row (killed mid-write) counts as past any checkpoint."""
    try:
        return float(row["update"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


def _fmt(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def collect_state(**objects: Any) -> dict[str, Any]:
    """``state_dict()`` of modules and optimizers, ``get_state()`` of torch generators, by name."""
    out: dict[str, Any] = {}
    for name, obj in objects.items():
        out[name] = obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
    return out


def restore_state(state: dict[str, Any], **objects: Any) -> None:
    """Inverse of :func:`collect_state`; a missing name is an error naming it."""
    for name, obj in objects.items():
        if name not in state:
            raise KeyError(f"checkpoint has no {name!r} (it has {sorted(state)}); was it written by another trainer?")
        if isinstance(obj, torch.Generator):
            obj.set_state(state[name])
        else:
            obj.load_state_dict(state[name])


def format_command(script: str, args: Any) -> str:
    """``python <script> --flag value ...`` for the fields of ``args`` that differ from their defaults
    (plus ``--dataset``), to record in model cards how to remake a checkpoint."""
    parts = ["python", script]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.name in ("dataset",) or value != f.default:
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + flag[2:])
            else:
                parts += [flag, str(value)]
    return " ".join(parts)
