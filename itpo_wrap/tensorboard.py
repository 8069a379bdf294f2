"""TensorBoard scalars for the trainers' ``--tensorboard DIR`` flag, written through stable-baselines3's logger.

TensorBoard is an optional extra (``pip install 'itpo-wrap[tensorboard]'``): nothing here imports it until a
run asks for it, and a run that does not ask writes nothing TensorBoard-related. A run that asks writes into
``<DIR>/<name>_<n>`` (SB3's layout: ``n`` is one past the highest ``<name>_<k>`` already there) and records
that folder in ``<run_dir>/tensorboard.txt``, so rerunning the command to resume appends to the same
TensorBoard run instead of opening ``<name>_<n+1>``. The CSV logs stay the record the trainers resume from;
TensorBoard only mirrors them.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'itpo-wrap[tensorboard]'"
MARKER = "tensorboard.txt"


class TensorBoardUnavailable(ImportError, ValueError):
    """``--tensorboard`` was given but tensorboard cannot be imported.

    An ``ImportError`` by nature; also a ``ValueError`` so ``itpo``'s CLI reports it as a one-line usage
    error, like other arguments it cannot honour, instead of a traceback.
    """


def check_tensorboard(folder: str | os.PathLike[str] | None) -> bool:
    """Whether a run asked for TensorBoard; raise, before any training, when it asked and cannot have it.

    :param folder: the ``--tensorboard`` value (``None``: not asked).
    :return: ``True`` when ``folder`` is set and tensorboard is importable, ``False`` when ``folder`` is ``None``.
    :raises ValueError: ``folder`` is an empty string.
    :raises TensorBoardUnavailable: tensorboard is not installed.
    """
    if folder is None:
        return False
    if not str(folder).strip():
        raise ValueError("--tensorboard needs a folder (got an empty string); leave the flag out to log no TensorBoard")
    try:
        import tensorboard  # noqa: F401 - SB3's TensorBoardOutputFormat writes through torch's SummaryWriter, which needs it
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise TensorBoardUnavailable(INSTALL_HINT) from err
    return True


class TensorBoardLog:
    """An SB3 ``Logger`` with one ``TensorBoardOutputFormat`` writing to ``folder``.

    Thread-safe: the world-model trainer writes from two worker threads, and SB3's logger keeps the pending
    values of one ``dump`` in shared dicts.

    :param folder: the TensorBoard run folder (created).
    :param purge_from: when resuming, hide the events an earlier segment wrote at steps ``>= purge_from`` (they
        are redone from the checkpoint): a ``SessionLog.START`` at that step, as ``SummaryWriter(purge_step=...)``
        writes, which TensorBoard honours for every tag of the run.
    """

    def __init__(self, folder: str | os.PathLike[str], purge_from: int | None = None) -> None:
        check_tensorboard(folder)
        from stable_baselines3.common import logger as sb3_logger

        if sb3_logger.SummaryWriter is None:  # SB3 was imported before tensorboard was installed
            raise TensorBoardUnavailable(INSTALL_HINT + " (then restart Python)")
        self.folder = Path(folder)
        self._format = sb3_logger.TensorBoardOutputFormat(str(self.folder))
        self._logger = sb3_logger.Logger(str(self.folder), [self._format])
        self._lock = threading.Lock()
        if purge_from is not None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            # SB3 builds its SummaryWriter without purge_step; this is the event that argument would write
            file_writer = self._format.writer.file_writer
            assert file_writer is not None  # SummaryWriter opens it in __init__
            file_writer.add_event(Event(step=int(purge_from), session_log=SessionLog(status=SessionLog.START)))
            self._format.writer.flush()

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record ``metrics`` as scalars at ``step`` and flush them to the event file.

        :param step: the x-axis value (update or step count).
        :param metrics: tag -> number (floats, ints, numpy or 0-d torch scalars).
        """
        with self._lock:
            for key, value in metrics.items():
                # float(): SB3 writes a tensor or array as a histogram, and these are scalars
                self._logger.record(key, float(value))
            self._logger.dump(step=int(step))

    def close(self) -> None:
        """Flush and close the event file."""
        with self._lock:
            self._logger.close()


def open_run(root: str | os.PathLike[str], name: str, run_dir: str | os.PathLike[str], *, resume: bool,
             purge_from: int | None = None) -> TensorBoardLog:
    """The TensorBoard log of a training run: ``<root>/<name>_<n>``, or when resuming the folder this run dir
    used before (recorded in ``<run_dir>/tensorboard.txt``) if it still exists under ``root``.

    :param root: the ``--tensorboard`` folder.
    :param name: run name; characters outside ``[A-Za-z0-9_.-]`` become ``_``.
    :param run_dir: the run's own folder (checkpoints, CSVs), where the choice is recorded.
    :param resume: the run continues from a checkpoint; ``False`` always opens a new ``<name>_<n>``.
    :param purge_from: with a reused folder, hide its events at steps ``>= purge_from`` (see :class:`TensorBoardLog`).
    """
    root, run_dir = Path(root), Path(run_dir)
    marker = run_dir / MARKER
    folder = None
    if resume and marker.is_file():
        recorded = Path(marker.read_text().strip())
        if recorded.is_dir() and recorded.parent.resolve() == root.resolve():
            folder = recorded
    reused = folder is not None
    if folder is None:
        from stable_baselines3.common.utils import get_latest_run_id

        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"
        folder = root / f"{safe}_{get_latest_run_id(str(root), safe) + 1}"
    log = TensorBoardLog(folder, purge_from if reused else None)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(folder.resolve()) + "\n")
    return log
