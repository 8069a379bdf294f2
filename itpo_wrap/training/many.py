"""``itpo train-world-model --datasets A B C``: one world model per dataset, here one after another
(``--backend local``) or as Ray tasks (``--backend ray``), through :func:`itpo_wrap.parallel.run_tasks`.

Each dataset is one task that runs exactly what ``itpo train-world-model --dataset X`` runs
(:func:`~itpo_wrap.training.commands.train_and_evaluate`): it loads its dataset where it runs, trains with its
own run dir (checkpoints, ``metrics.csv``, ``config.json``), so a task whose process was killed resumes from
its checkpoints when Ray reruns it or when the command is rerun, and writes its bundle and, in the run dir,
``eval.json`` (the held-out evaluation). ``{entry}`` in ``--out``, ``--run-dir``, ``--teacher``,
``--critic`` and ``--fqe-policy`` stands for the dataset's zoo entry name (``itpo/hopper/medium-v0`` ->
``hopper-medium``). The same seeds give the same bundles and metrics on either backend: a task's torch
threads are its config's (``--workers`` x ``--threads``), and each reserves that many CPUs from Ray.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itpo_wrap.parallel import BACKENDS, check_backend, run_tasks

ENTRY = "{entry}"
#: the flags whose paths may hold ``{entry}`` (argparse dests)
TEMPLATED = ("out", "run_dir", "teacher", "critic", "fqe_policy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--dataset`` or ``--datasets``, and ``--backend``, ``--address``, ``--cpus`` for the latter.

    :param p: the ``train-world-model`` parser.
    """
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", default=None, help="Minari dataset id or local path")
    which.add_argument("--datasets", nargs="+", default=None, metavar="DATASET",
                       help=f"several datasets, one training each (one task each with --backend ray); {ENTRY} in "
                            f"--out, --run-dir, --teacher, --critic, --fqe-policy names each one's zoo entry")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="with --datasets: local (one after another, here) or ray (one Ray task per dataset)")
    p.add_argument("--address", default=None, help="with --backend ray: join this Ray cluster ('auto': this node's)")
    p.add_argument("--cpus", type=int, default=None,
                   help="with --backend ray: start a local Ray with this many CPUs (default: all); each task "
                        "reserves --workers x --threads of them")


@dataclass(frozen=True)
class DatasetRun:
    """What one dataset's training wrote.

    :param dataset: the dataset as given (id or path).
    :param dataset_id: the id stored in the dataset (the zoo entry is named after it).
    :param out: the bundle file.
    :param run_dir: checkpoints, ``metrics.csv``, ``config.json`` and ``eval.json``.
    :param evaluation: the held-out evaluation (:func:`~itpo_wrap.training.evaluate.evaluate_world_model`).
    :param wall_s: training wall time, across resumes.
    :param problems: why the bundle is not fit to plan with (empty when it is).
    """

    dataset: str
    dataset_id: str
    out: str
    run_dir: str
    evaluation: dict[str, Any]
    wall_s: float
    problems: tuple[str, ...]


def dataset_name(dataset: str) -> str:
    """The zoo entry name of a dataset id or path (``itpo/hopper/medium-v0`` -> ``hopper-medium``), else a
    folder-safe form of it.

    :param dataset: a Minari id or a dataset folder.
    """
    from itpo_wrap.zoo import entry_name

    try:
        return entry_name(str(dataset).rstrip("/"))
    except ValueError:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset)).strip("_") or "dataset"


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The arguments of each dataset's ``train-world-model`` run, ``{entry}`` filled in, paths absolute (a
    Ray worker need not share this working directory).

    :param args: parsed ``train-world-model`` arguments with ``datasets``.
    :raises ValueError: for a dataset named twice, or several datasets writing one file.
    """
    datasets = list(args.datasets)
    names = [dataset_name(d) for d in datasets]
    twice = sorted({d for d in datasets if datasets.count(d) > 1} | {n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--datasets names {twice} more than once; pass each dataset once")
    if len(datasets) > 1:
        for dest in ("out", "run_dir"):
            value = getattr(args, dest, None)
            if value is not None and ENTRY not in value:
                raise ValueError(f"--{dest.replace('_', '-')} {value} would be written by all {len(datasets)} datasets; "
                                 f"put {ENTRY} in it, e.g. runs/{ENTRY}/wm_{args.dynamics}.pt")
    base = {k: v for k, v in vars(args).items() if k not in ("func", "datasets")}
    runs = []
    for dataset, name in zip(datasets, names, strict=True):
        run = dict(base, dataset=str(Path(dataset).resolve()) if Path(dataset).expanduser().is_dir() else dataset)
        for dest in (*TEMPLATED, "tensorboard"):
            if run.get(dest) is not None:
                run[dest] = str(Path(str(run[dest]).replace(ENTRY, name)).expanduser().resolve())
        if args.backend == "ray":
            run["no_progress"] = True  # bars of parallel processes would only interleave
        runs.append(run)
    return runs


def train_one(train: Any, run: dict[str, Any]) -> DatasetRun:
    """One dataset's ``train-world-model`` (a task of :func:`~itpo_wrap.parallel.run_tasks`).

    :param train: :func:`~itpo_wrap.training.commands.train_and_evaluate` (passed in: no import cycle).
    :param run: the dataset's arguments (:func:`plan`).
    """
    from itpo_wrap.world_model.trust import fitness_of

    args = argparse.Namespace(**run)
    wm, result, dataset = train(args)
    fitness = fitness_of(wm)
    return DatasetRun(args.dataset, str(dataset.dataset_id or args.dataset), str(args.out),
                      str(args.run_dir or f"{args.out}.run"), result, float(wm.info["train_wall_s"]),
                      tuple(fitness.problems()) if fitness is not None else ())


def check(args: argparse.Namespace) -> None:
    """Refuse ``--backend``, ``--address``, ``--cpus`` where they cannot apply, before any work.

    :param args: parsed ``train-world-model`` arguments.
    """
    if args.datasets is None:
        if args.backend != "local" or args.address is not None or args.cpus is not None:
            raise ValueError("--backend, --address and --cpus apply to --datasets (several trainings, here or on "
                             "Ray); pass --datasets instead of --dataset")
        return
    if args.backend == "local" and (args.address is not None or args.cpus is not None):
        raise ValueError("--address and --cpus need --backend ray")
    check_backend(args.backend, args.address, args.cpus)


def train_datasets(args: argparse.Namespace, train: Any) -> Iterator[DatasetRun]:
    """Train every dataset of ``args.datasets``, yielding each one's :class:`DatasetRun` as it finishes.

    :param args: parsed ``train-world-model`` arguments with ``datasets``, ``backend``, ``address``, ``cpus``.
    :param train: :func:`~itpo_wrap.training.commands.train_and_evaluate`.
    :raises RuntimeError: on Ray, after the other datasets finished, when one failed (the first error chained).
    """
    check(args)
    runs = plan(args)
    threads = args.workers * args.threads  # both part threads of --workers 2 use --threads torch threads
    for _, done in run_tasks(train_one, runs, shared=train, backend=args.backend, address=args.address,
                             workers=args.cpus, threads=threads):
        yield done


def train_many_command(args: argparse.Namespace, train: Any) -> int:
    """Run ``train-world-model --datasets``: one line per dataset as it finishes.

    :param args: parsed ``train-world-model`` arguments with ``datasets``.
    :param train: :func:`~itpo_wrap.training.commands.train_and_evaluate`.
    """
    print(f"training {len(args.datasets)} world model(s) ({args.dynamics}) "
          + ("one after another" if args.backend == "local" else "as Ray tasks"))
    for run in train_datasets(args, train):
        dyn = run.evaluation.get("dynamics", {})
        print(f"{dataset_name(run.dataset)}: {run.out} in {run.wall_s:.0f} s; held-out 1-step RMSE "
              f"{dyn.get('one_step_rmse_state_std', float('nan')):.4f} state std"
              + (f"; NOT fit to plan with: {'; '.join(run.problems)}" if run.problems else ""))
    return 0
