"""The single-file trainers' (``policies/``) run folder on the library's resumable loop
(:mod:`itpo_wrap.training.loop`: cadence, wall clock across resumes, atomic checkpoints, generator state,
``updates_per_s``, progress bar; :mod:`itpo_wrap.training.metrics`: ``metrics.csv``), plus their argument parsing.

A run lives in one folder::

    run_dir/
      checkpoints/update_000050000.pt   full training state (newest ``keep`` kept), weights_only-loadable
      metrics.csv                       the library's long layout (component, step, wall_s, metric, value):
                                        component ``train``: updates_per_s, losses, Q (every ``log_every``);
                                        component ``eval``: return_mean, score_mean, ..., episodes, seed
      policy.pt                         the final offline policy (written by the trainer)
      tensorboard.txt                   with ``--tensorboard DIR``: the TensorBoard run folder it writes to

Rerunning the same command resumes from the newest checkpoint: the update counter, the wall
clock, the networks, the optimizers and the sampling generator are restored, and ``metrics.csv`` rows
written after that checkpoint are dropped, so the log reads as if the run had never stopped. The TensorBoard
run (``train/...``, ``time/...``, ``eval/...`` scalars) continues in the same folder and hides the steps
after that checkpoint the same way. A run folder of the old layout (``train.csv``, ``eval.csv``) is refused,
naming the fix: ``itpo-lab convert-logs <run_dir>`` converts it once, losslessly (rewriting logs in place
behind a rerun's back would surprise whoever still reads the old files).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from itpo_wrap.training.metrics import MetricsLog, fmt
from itpo_wrap.training.resumable import Checkpoints, Loop, collect_state, restore_state

if TYPE_CHECKING:
    from itpo_wrap.tensorboard import TensorBoardLog

__all__ = ["TrainLoop", "collect_state", "parse_args", "restore_state"]


class TrainLoop(Loop):
    """The library's :class:`itpo_wrap.training.loop.Loop` (cadence, wall clock, rate, progress bar) with the
    trainers' run folder: numbered checkpoints that remember the run's settings and ``metrics.csv`` (components
    ``train`` and ``eval``). Close it (:meth:`close`) when the run ends.

    :param run_dir: the run folder (created).
    :param total_updates: the fixed update budget.
    :param checkpoint_every: save the training state every this many updates (and at the end).
    :param eval_every: evaluation cadence used by :meth:`due_eval` (and at the end); 0 disables.
    :param log_every: cadence of the ``train`` rows, used by :meth:`due_log`.
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
        super().__init__(total_updates, log_every=log_every, eval_every=eval_every,
                         checkpoint_every=checkpoint_every, desc=desc, progress=progress)
        self.run_dir = Path(run_dir)
        _refuse_wide_logs(self.run_dir)  # before anything is written beside them
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.store = Checkpoints(self.ckpt_dir, "update", keep=keep)
        self.metrics = MetricsLog(self.run_dir)
        # set after resume() by a run with --tensorboard (itpo_wrap.tensorboard.open_run): rows go there too
        self.tensorboard: TensorBoardLog | None = None

    def checkpoints(self) -> list[Path]:
        """Training checkpoints, oldest first."""
        return self.store.paths()

    def resume(self, config: dict[str, Any], may_differ: Sequence[str] = ()) -> dict[str, Any] | None:
        """Load the newest readable checkpoint (``weights_only=True``) and position the counter after it.

        :param config: the current run's arguments; a checkpoint made with different values for keys
            not in ``may_differ`` is refused (resuming it would silently mix two experiments).
        :param may_differ: keys allowed to change across a resume (budgets, cadences, threads).
        :return: the saved state dict, or ``None`` when the run starts fresh.
        """
        state = self.store.load()
        if state is None:
            return None
        saved = state.get("config", {})
        diff = sorted(k for k in set(saved) | set(config) if k not in may_differ and saved.get(k) != config.get(k))
        if diff:
            changes = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in diff)
            raise ValueError(f"run dir {str(self.run_dir)!r} holds a checkpoint made with other settings "
                             f"({changes}); use a new --run-dir or the original arguments")
        old = state.get("loop")  # checkpoints written before the shared loop kept the position under "loop"
        step, wall_s = (int(old["update"]), float(old["wall_s"])) if old else (int(state["step"]), float(state["wall_s"]))
        if step > self.total:
            raise ValueError(f"run dir {str(self.run_dir)!r} is already at update {step}, past "
                             f"total_updates={self.total}; raise --total-updates or use a new --run-dir")
        self.resume_at(step, wall_s)
        for component in ("train", "eval"):
            self.metrics.truncate_after(step, component)
        return state

    def log(self, update: int, metrics: dict[str, Any]) -> None:
        """Log the ``train`` row of ``update``: ``updates_per_s`` and ``metrics`` (tensors are read with
        ``.item()`` by the log)."""
        rate, wall_s = self.rate(update), self.elapsed()
        self.metrics.write("train", update, wall_s, {"updates_per_s": rate, **metrics})
        if self.tensorboard is not None:
            self.tensorboard.write(update, {"time/wall_s": wall_s, "time/updates_per_s": rate,
                                            **{f"train/{k}": v for k, v in metrics.items()}})
        self.show({"upd/s": f"{rate:.0f}"})

    def log_eval(self, update: int, row: dict[str, Any]) -> None:
        """Log the ``eval`` row of ``update`` (``eval/...`` keys plus ``episodes`` and ``seed``; an ``update`` key
        is the step, not a value) and print the means."""
        values = {k.removeprefix("eval/"): v for k, v in row.items() if k != "update"}
        self.metrics.write("eval", update, self.elapsed(), values)
        if self.tensorboard is not None:  # the scores; episodes and seed are settings, not curves
            self.tensorboard.write(update, {k: v for k, v in row.items() if k.startswith("eval/")})
        msg = " ".join(f"{k.split('/')[-1]}={fmt(v)}" for k, v in row.items() if k.endswith("_mean"))
        tqdm.write(f"[{self.desc}] update {update}: {msg}")

    def save(self, update: int, state: dict[str, Any]) -> Path:
        """Write ``state`` plus the loop position atomically, then prune old checkpoints."""
        with self.pause():
            return self.store.save(update, self.elapsed(), state)

    def close(self) -> None:
        """Close ``metrics.csv`` (and the TensorBoard run, when one was opened)."""
        self.metrics.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _refuse_wide_logs(run_dir: Path) -> None:
    """A run folder of the old layout (``train.csv``, ``eval.csv``) is converted by hand, once, not resumed into
    two layouts at once: the fix is named."""
    for name in ("train.csv", "eval.csv"):
        if (run_dir / name).is_file():
            raise ValueError(f"{str(run_dir / name)!r} is a log of the old wide layout; the trainers now write "
                             f"metrics.csv. Convert the run folder once with `itpo-lab convert-logs {run_dir}` "
                             "(lossless), then rerun the same command to resume")


def _optional_rule(info: Any) -> Any:
    """A tyro primitive rule: ``int | None``, ``float | None`` and ``str | None`` read ``none`` (any case) as
    ``None``, else the base type (tyro alone accepts only ``None``, and reads ``none`` as a string)."""
    from tyro.constructors import PrimitiveConstructorSpec

    args = typing.get_args(info.type)
    if len(args) != 2 or type(None) not in args:
        return None
    base = args[0] if args[1] is type(None) else args[1]
    if base not in (int, float, str):
        return None
    return PrimitiveConstructorSpec(
        nargs=1, metavar=base.__name__.upper(),
        instance_from_str=lambda strings: None if strings[0].lower() == "none" else base(strings[0]),
        is_instance=lambda x: x is None or isinstance(x, base),
        str_from_instance=lambda x: [str(x)])


def parse_args(cls: type[Any], argv: Sequence[str] | None = None, description: str | None = None) -> Any:
    """Build a dataclass of script arguments from the command line with tyro (``--snake-case`` flags).

    Booleans get ``--flag/--no-flag``, ``bool | None`` fields too (``None``, the default, when neither is
    given); ``int``/``float``/``str | None`` fields accept the string ``none`` (any case). These are the
    command lines the zoo's docs render from its provenance records (``tests/test_script_args.py``).

    :param cls: the ``Args`` dataclass.
    :param argv: arguments (``sys.argv[1:]`` when ``None``).
    :param description: help text (the script's docstring).
    """
    try:
        import tyro
    except ImportError as err:
        raise ImportError("the policies/ scripts parse their arguments with tyro: "
                          "pip install 'itpo-wrap[lab]'") from err

    registry = tyro.constructors.ConstructorRegistry()
    registry.primitive_rule(_optional_rule)
    # DisallowNone turns `bool | None` into a --flag/--no-flag pair (default kept); the rule above still
    # reads `none` for the other optional fields. HelptextFromCommentsOff: tyro gives a comment block above
    # a field to the fields below it too (grouped comments), which mislabels the Args' per-field comments.
    config = (tyro.conf.DisallowNone, tyro.conf.HelptextFromCommentsOff)
    return tyro.cli(cls, args=argv, description=description, registry=registry, config=config)
