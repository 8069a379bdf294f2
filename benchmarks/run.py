"""The score experiment (issue 6): a zoo entry's base policy against the same policy wrapped with ITPO
(diffusion and MeanFlow world models) and against MPPI on the same world model and critic, **paired**
on the same env seeds.

A front over the library's ``itpo evaluate`` (:mod:`itpo_wrap.evaluate_command`: the same flags and rows)
that adds the lab's MPPI baseline (``--method mppi``, ``--mppi``). Every finished episode is appended as one
CSV row (``--out``), keyed by (entry, policy, method, world model, settings, seed); rerunning the same
command skips the rows already there, so a killed run resumes where it stopped. ``--backend ray`` runs the
episodes as Ray tasks (``docs/scaling.md``). ``benchmarks/summarize.py`` turns the rows into
``docs/results.md`` and plots.

Seeds: evaluation uses ``--seeds`` (default 1000..1009, the zoo cards' seeds); tuning (``--split tune``)
uses 0..4 unless given, disjoint from evaluation as in the paper.

    # evaluation, 10 paired episodes, one torch thread
    .venv/bin/python benchmarks/run.py --entry hopper-medium-replay --method base
    .venv/bin/python benchmarks/run.py --entry hopper-medium-replay --method itpo --kind meanflow --step-size 1e-3
    .venv/bin/python benchmarks/run.py --entry hopper-medium-replay --method mppi --kind meanflow
    # step-size grid on the tuning seeds
    .venv/bin/python benchmarks/run.py --entry hopper-medium-replay --method itpo --kind meanflow \\
        --split tune --step-size 3e-4 1e-3 3e-3 1e-2
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from itpo_lab.mppi import MPPIConfig, mppi_agent
from itpo_wrap import zoo
from itpo_wrap.episodes import FIELDS, done_keys, settings_key
from itpo_wrap.evaluate import load_world_model
from itpo_wrap.evaluate_command import (
    DEFAULT_OUT,
    add_arguments,
    backends,
    configs_from_args,
    itpo_grid,
    run_evaluate,
)
from itpo_wrap.parallel import check_backend

__all__ = ["DEFAULT_OUT", "FIELDS", "build_parser", "done_keys", "itpo_grid", "load_entry", "load_world_model",
           "main", "settings_key"]


def load_entry(name: str, policy: str | None = None, root: str | None = None) -> zoo.ZooEntry:
    """``zoo.load`` for the scripts: a wrong entry or policy name ends the script with the library's one-line
    message (it lists the known names), not a traceback."""
    try:
        return zoo.load(name, policy=policy, root=root)
    except KeyError as err:
        raise SystemExit(f"error: {err.args[0]}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (also what other scripts parse to name its rows): ``itpo evaluate``'s
    flags plus the lab's MPPI baseline."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, methods=("base", "itpo", "mppi"))
    p.add_argument("--mppi", default="{}", help="MPPIConfig overrides as JSON, e.g. '{\"samples\": 128}'")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    grid: list[tuple[dict[str, Any], Any, Any]] | None = None
    if args.method == "mppi":
        mcfg = MPPIConfig(**json.loads(args.mppi))
        grid = [(mcfg.to_dict(), None, functools.partial(mppi_agent, mcfg))]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        where, _ = backends(args)
        check_backend(where, args.address, args.workers)  # a missing Ray: its install hint, before any work
        configs = configs_from_args(args, grid)
    except KeyError as err:  # an unknown entry or policy: the library's message lists the known names
        raise SystemExit(f"error: {err.args[0]}") from None
    except (ValueError, ImportError) as err:
        raise SystemExit(f"error: {err}") from None
    run_evaluate(args, configs)


if __name__ == "__main__":
    main()
