"""One offline trainer (``policies/td3_bc.py``, ``policies/rebrac.py``) on several datasets, one after another
or as Ray tasks, through the library's task runner (:func:`itpo_wrap.parallel.run_tasks`)::

    python policies/td3_bc.py --datasets itpo/hopper/medium-v0 itpo/walker2d/medium-v0 --backend ray --cpus 2
    python policies/rebrac.py --datasets itpo/hopper/medium-v0 itpo/hopper/expert-v0 --zoo-dir policies/zoo

Each dataset is one task that runs the script's own ``main`` with the script's other flags and its own run
dir (default ``runs/<algorithm>/<entry>-seed<seed>``; a given ``--run-dir`` needs ``{entry}`` when there are
several datasets), so a task whose process died resumes from its newest checkpoint when Ray reruns it or
when the command is rerun, exactly as the single-dataset command does. A task loads the trainer from the
script's path (the checkout must be at the same path on every node of a cluster) and uses the script's
``--threads`` torch threads, reserving as many CPUs from Ray. The same seeds give the same policies and
logs on either backend.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itpo_lab.offline.loop import parse_args
from itpo_lab.offline.run import default_run_dir, run_name
from itpo_lab.scripts import load_script
from itpo_wrap.parallel import BACKENDS, check_backend, run_tasks

ENTRY = "{entry}"
FRONT_HELP = ("several datasets: --datasets A B C [--backend local|ray] [--address ADDR] [--cpus N]; one training "
              "per dataset, here one after another or one Ray task each (itpo_lab.offline.many); {entry} in "
              "--run-dir names each one's entry")


@dataclass(frozen=True)
class TrainerTask:
    """One dataset's training.

    :param script: the trainer script's absolute path (``policies/td3_bc.py``).
    :param args: its ``Args`` fields, ``dataset`` and ``run_dir`` set.
    """

    script: str
    args: dict[str, Any]


def train_one(_shared: Any, task: TrainerTask) -> dict[str, str]:
    """A task of :func:`~itpo_wrap.parallel.run_tasks`: the script's ``main`` on one dataset.

    :param _shared: unused.
    :param task: the script and its arguments.
    :return: ``dataset``, ``run_dir`` and ``policy`` (the written ``policy.pt``).
    """
    module = load_script(task.script)
    path = module.main(module.Args(**task.args))
    return {"dataset": task.args["dataset"], "run_dir": task.args["run_dir"], "policy": str(path)}


def plan(script: str, args: Any, datasets: Sequence[str], algorithm: str) -> list[TrainerTask]:
    """One task per dataset: ``{entry}`` filled in, paths absolute (a Ray worker need not share this working
    directory).

    :param script: the trainer script's path.
    :param args: the script's ``Args`` with the flags given (its ``dataset`` is replaced).
    :param datasets: Minari ids or dataset folders, each once.
    :param algorithm: the script's ``ALGORITHM`` (the default run dir's folder).
    """
    names = [run_name(str(d).rstrip("/")) for d in datasets]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--datasets names {twice} more than once; pass each dataset once")
    if len(datasets) > 1 and args.run_dir is not None and ENTRY not in args.run_dir:
        raise ValueError(f"--run-dir {args.run_dir} would hold all {len(datasets)} runs; put {ENTRY} in it, "
                         f"e.g. runs/{algorithm}/{ENTRY}, or leave it out (runs/{algorithm}/<entry>-seed<seed>)")

    def absolute(path: Any) -> Any:
        return None if path is None else str(Path(path).expanduser().resolve())

    tasks = []
    for dataset, name in zip(datasets, names, strict=True):
        data = absolute(dataset) if Path(dataset).expanduser().is_dir() else dataset
        run_dir = (args.run_dir.replace(ENTRY, name) if args.run_dir is not None
                   else default_run_dir(algorithm, str(dataset).rstrip("/"), args.seed))
        fields = dataclasses.asdict(dataclasses.replace(args, dataset=data, run_dir=absolute(run_dir)))
        for key in ("zoo_dir", "tensorboard"):
            if fields.get(key) is not None:
                fields[key] = absolute(fields[key])
        tasks.append(TrainerTask(str(Path(script).resolve()), fields))
    return tasks


def train_datasets(script: str, args: Any, datasets: Sequence[str], algorithm: str, *, backend: str = "local",
                   address: str | None = None, cpus: int | None = None) -> Iterator[dict[str, str]]:
    """Train on every dataset, yielding each one's result (:func:`train_one`) as it finishes.

    :param script: the trainer script's path.
    :param args: the script's ``Args`` (``args.threads`` torch threads per task).
    :param datasets: Minari ids or dataset folders.
    :param algorithm: the script's ``ALGORITHM``.
    :param backend: ``"local"`` or ``"ray"``.
    :param address: the Ray cluster to join (``ray`` only).
    :param cpus: CPUs of a local Ray (``ray`` only).
    """
    check_backend(backend, address, cpus)
    tasks = plan(script, args, datasets, algorithm)
    if backend == "ray":
        tasks = [dataclasses.replace(t, args={**t.args, "progress": False}) for t in tasks]  # no interleaved bars
    for _, result in run_tasks(train_one, tasks, backend=backend, address=address, workers=cpus,
                               threads=args.threads):
        yield result


def run_script(script: str, args_cls: type[Any], main: Callable[[Any], Path], algorithm: str, doc: str | None,
               argv: Sequence[str] | None = None) -> int:
    """A trainer script's command line: its own flags for one ``--dataset``, or ``--datasets`` (with
    ``--backend``, ``--address``, ``--cpus``) for several.

    :param script: the script's path (``__file__``).
    :param args_cls: its ``Args`` dataclass.
    :param main: its ``main(args)``.
    :param algorithm: its ``ALGORITHM``.
    :param doc: its help text.
    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    front = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --dataset is not --datasets
    front.add_argument("--datasets", nargs="+", default=None)
    front.add_argument("--backend", choices=BACKENDS, default=None)
    front.add_argument("--address", default=None)
    front.add_argument("--cpus", type=int, default=None)
    known, rest = front.parse_known_args(argv)
    args = parse_args(args_cls, rest, description=f"{doc or ''}\n\n{FRONT_HELP}")
    if known.datasets is None:
        if known.backend is not None or known.address is not None or known.cpus is not None:
            raise SystemExit("--backend, --address and --cpus apply to --datasets (several trainings); "
                             "pass --datasets instead of --dataset")
        main(args)
        return 0
    if "--dataset" in rest or any(a.startswith("--dataset=") for a in rest):
        raise SystemExit("pass --dataset (one) or --datasets (several), not both")
    if known.backend != "ray" and (known.address is not None or known.cpus is not None):
        raise SystemExit("--address and --cpus need --backend ray")
    try:
        for result in train_datasets(script, args, known.datasets, algorithm, backend=known.backend or "local",
                                     address=known.address, cpus=known.cpus):
            print(f"{result['dataset']}: {result['policy']}")
    except (ValueError, ImportError, FileNotFoundError) as err:
        raise SystemExit(f"{Path(script).name}: error: {err}") from err
    return 0
