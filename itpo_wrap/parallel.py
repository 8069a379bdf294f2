"""Run independent tasks here, one after another, or as Ray tasks across processes and machines.

One task is one unit of work that needs nothing from the others (an episode, in :mod:`itpo_wrap.evaluate`
and :mod:`itpo_wrap.tune`). :func:`run_tasks` yields each task's result as it finishes, in the process
that called it, so whoever consumes them (one CSV writer, one tuning report) is the only one to write.

``backend="local"`` runs the tasks in order in this process. ``backend="ray"`` submits them all to Ray
(a local Ray with ``workers`` CPUs, or the cluster at ``address``); each task reserves one CPU per torch
thread it uses. Ray re-runs a task whose worker process or node died (``max_retries``); a task that
raised is not re-run: the other tasks finish, their results are yielded, and the first error is raised
at the end. Ray is an optional extra (``pip install 'itpo-wrap[ray]'``), imported only here and only
when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

BACKENDS = ("local", "ray")
RAY_HINT = "the ray backend needs Ray: pip install 'itpo-wrap[ray]' (or pip install 'ray[tune]>=2.41')"
#: how often Ray re-runs a task whose worker or node died before it returned (not one that raised)
MAX_RETRIES = 3


def require_ray() -> Any:
    """The ``ray`` module, or an ``ImportError`` that says how to install it.

    :raises ImportError: when Ray is not installed.
    """
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ImportError(RAY_HINT) from err


def check_backend(backend: str, address: str | None = None, workers: int | None = None) -> None:
    """Refuse settings that cannot run, before any work starts.

    :param backend: ``"local"`` or ``"ray"``.
    :param address: a Ray cluster's address (``ray`` only).
    :param workers: CPUs of a local Ray (``ray`` only, not with ``address``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; choose one of {list(BACKENDS)}")
    if backend == "local" and (address is not None or workers is not None):
        raise ValueError("address and workers apply to backend='ray' only")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    if address is not None and workers is not None:
        raise ValueError("pass address (join a cluster, its CPUs) or workers (a local Ray), not both")
    if backend == "ray":
        require_ray()


def _call(fn: Callable[[Any, Any], Any], shared: Any, task: Any, threads: int) -> Any:
    """What a Ray worker runs: ``fn(shared, task)`` with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return fn(shared, task)


def run_tasks(fn: Callable[[Any, Any], Any], tasks: Sequence[Any], *, shared: Any = None, backend: str = "local",
              address: str | None = None, workers: int | None = None,
              threads: int = 1) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, fn(shared, tasks[index]))`` for every task, as each finishes.

    :param fn: a module-level function (Ray ships it by reference); ``fn(shared, task) -> result``.
    :param tasks: picklable task descriptions.
    :param shared: one picklable object every task reads (sent to Ray's object store once).
    :param backend: ``"local"``: in order, in this process; ``"ray"``: as Ray tasks.
    :param address: join the Ray cluster there (``"auto"``: the one this machine belongs to).
    :param workers: start a local Ray with this many CPUs (default: all of this machine's).
    :param threads: torch threads per task, and so CPUs each Ray task reserves.
    :raises RuntimeError: after the other tasks finished, when a Ray task raised (the first error chained).
    """
    check_backend(backend, address, workers)
    if backend == "local":
        for i, task in enumerate(tasks):
            yield i, fn(shared, task)
        return
    with ray_session(address, workers) as ray:
        yield from _submit(ray, fn, tasks, shared, threads)


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """The ``ray`` module with Ray running: the cluster at ``address``, else a local Ray with ``workers``
    CPUs, shut down on leaving; a Ray this process already runs is used as it is, and left running.

    :param address: join the Ray cluster there (``"auto"``: the one this machine belongs to).
    :param workers: start a local Ray with this many CPUs (default: all of this machine's).
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:  # joining a cluster takes its resources as they are; a local Ray gets `workers` CPUs
        ray.init(address=address) if address is not None else ray.init(
            num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _submit(ray: Any, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any,
            threads: int) -> Iterator[tuple[int, Any]]:
    remote = ray.remote(num_cpus=threads, max_retries=MAX_RETRIES)(_call)
    pending: dict[Any, int] = {}
    try:
        shared_ref = ray.put(shared)
        pending = {remote.remote(fn, shared_ref, task, threads): i for i, task in enumerate(tasks)}
        errors: list[BaseException] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # a task that raised: keep the others' results, report at the end
                    errors.append(err)
                    continue
                yield index, result
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(tasks)} task(s) failed; the first error: {errors[0]}") \
                from errors[0]
    finally:
        for ref in pending:  # stopped early (an error in the consumer, Ctrl-C): nothing more runs
            ray.cancel(ref, force=True)
