"""``itpo tune``: :func:`itpo_wrap.tune.tune` on a zoo entry, from the command line.

    itpo tune --entry hopper-medium --kind diffusion --step-size 3e-5 1e-4 3e-4 --seeds 0 1
    itpo tune --entry hopper-medium --kind diffusion --step-size 3e-5 1e-4 3e-4 --seeds 0 1 2 3 --backend ray
    itpo tune --entry hopper-medium --kind meanflow --step-size 3e-5 1e-4 3e-4 --persistence persistent \
        reset_each_step --seeds 0 1 2 --backend ray-tune --search asha --rungs 100 300

The grid is the product of the listed values over ``AdaptConfig()``'s defaults; ``E = 0`` (the base) is
always a candidate. With ``--backend ray`` every (candidate, seed) episode is a Ray task that loads the
entry in its worker; with ``--backend ray-tune`` every candidate is a Ray Tune trial, on the whole grid
(``--search grid``) or stopped early by ASHA on episodes cut at ``--rungs`` (``--search asha``,
:mod:`itpo_wrap.tune_search`). Either way the choice is made here, by the same function, from
full-fidelity episodes. The zoo is only read here; ``itpo-lab tune ... --record`` stores the choice in
the entry.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from typing import Any

from itpo_wrap.config import AdaptConfig
from itpo_wrap.evaluate_command import absolute, add_backend_arguments, backends
from itpo_wrap.parallel import check_backend
from itpo_wrap.tune_search import DEFAULT_RUNGS, SEARCHES, TuneSearch, require_tune, search
from itpo_wrap.world_model.kinds import kind_names


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``tune`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    :return: the new parser (the lab adds ``--record`` to it).
    """
    d = AdaptConfig()
    p = subparsers.add_parser("tune", help="choose a zoo entry's adaptation settings on tuning seeds (E = 0 always a "
                                           "candidate)")
    p.add_argument("--entry", required=True, help="zoo entry (itpo zoo list)")
    p.add_argument("--kind", default="diffusion", choices=kind_names(), help="world model")
    p.add_argument("--policy", default=None, help="which of the entry's policies (default: its default one)")
    p.add_argument("--step-size", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4], help="grid of step sizes")
    p.add_argument("--persistence", nargs="+", choices=["persistent", "reset_each_step"], default=[d.persistence],
                   help="grid of persistence modes (AdaptConfig.persistence)")
    p.add_argument("--steps", type=int, nargs="+", default=[d.steps], help="grid of ascent steps E")
    p.add_argument("--max-drift", type=_drift, nargs="+", default=[d.max_drift],
                   help="grid of parameter trust regions ('none' for no bound)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="tuning seeds (not your evaluation seeds)")
    p.add_argument("--max-steps", type=int, default=None, help="cap tuning episodes (cheaper; reported as a risk)")
    add_backend_arguments(p, {"ray-tune": "one Ray Tune trial per candidate (--search)"})
    p.add_argument("--search", choices=SEARCHES, default=None,
                   help="with --backend ray-tune: grid (every candidate on full episodes, the default) or asha "
                        "(stop poor candidates on episodes cut at --rungs)")
    p.add_argument("--rungs", type=int, nargs="+", default=None,
                   help=f"with --search asha: the low-fidelity step caps (default {' '.join(map(str, DEFAULT_RUNGS))}); "
                        "the full-fidelity rung is --max-steps, or full episodes")
    p.add_argument("--reduction-factor", type=int, default=None,
                   help="with --search asha: keep about 1/N of the candidates at each rung (default 3)")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's)")
    p.set_defaults(func=tune_command)
    return p


def _drift(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def grid(args: argparse.Namespace) -> list[AdaptConfig]:
    """The candidates: the product of the listed values over ``AdaptConfig()``."""
    step_backend = backends(args)[1]
    return [AdaptConfig(step_size=a, persistence=p, steps=e, max_drift=r, backend=step_backend)
            for a, p, e, r in itertools.product(args.step_size, args.persistence, args.steps, args.max_drift)]


def tune_command(args: argparse.Namespace) -> int:
    """Run ``tune``.

    :param args: the parsed ``tune`` arguments.
    """
    run_tune(args)
    return 0


def run_tune(args: argparse.Namespace) -> tuple[Any, Any]:
    """Tune the grid on the entry's world model and print the report.

    :param args: the parsed ``tune`` arguments.
    :return: ``(zoo entry, TuneReport)``.
    """
    from itpo_wrap import zoo
    from itpo_wrap.tune import tune

    where = backends(args)[0]
    if where == "local" and (args.address is not None or args.workers is not None):
        raise ValueError("--address and --workers need --backend ray or ray-tune")
    search_config = _search_config(args, where)
    check_backend("ray" if where == "ray-tune" else where, args.address, args.workers)  # a missing Ray: its hint
    if search_config is not None:  # before any loading: a missing Ray Tune, rungs that do not fit --max-steps
        require_tune()
        search_config.caps(args.max_steps)
    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    candidates = grid(args)
    print(f"tuning {entry.name} ({entry.policy_name}, {args.kind} world model): {len(candidates)} candidate(s) + "
          f"the base on seeds {args.seeds}" + (f", episodes capped at {args.max_steps}" if args.max_steps else "")
          + {"ray": ", as Ray tasks", "ray-tune": f", as Ray Tune trials ({getattr(search_config, 'search', '')})"}
          .get(where, ""))
    run = {"max_steps": args.max_steps, "score": lambda r: float(entry.normalized_score(r)), "progress": print,
           "address": args.address, "workers": args.workers}
    if where == "local":
        report = tune(entry.policy, entry.load_world_model(args.kind), entry.make_env, candidates, args.seeds,
                      backend=where, **run)
    else:  # each worker loads the entry itself: nothing large crosses the wire
        setup = ZooSetup(entry.name, entry.policy_name, absolute(args.zoo_dir), args.kind)
        if search_config is not None:
            report = search(None, None, None, candidates, args.seeds, config=search_config, setup=setup, **run)
        else:
            report = tune(None, None, None, candidates, args.seeds, setup=setup, backend=where, **run)
    print(report.summary())
    return entry, report


def _search_config(args: argparse.Namespace, where: str) -> TuneSearch | None:
    """``--search``, ``--rungs`` and ``--reduction-factor`` as a :class:`~itpo_wrap.tune_search.TuneSearch`
    (``None`` unless ``--backend ray-tune``)."""
    given = [f for f, v in (("--search", args.search), ("--rungs", args.rungs),
                            ("--reduction-factor", args.reduction_factor)) if v is not None]
    if where != "ray-tune":
        if given:
            raise ValueError(f"{', '.join(given)} need --backend ray-tune")
        return None
    search = args.search or "grid"
    if search == "grid" and (args.rungs is not None or args.reduction_factor is not None):
        raise ValueError("--rungs and --reduction-factor apply to --search asha; drop them or add --search asha")
    return TuneSearch(search, tuple(args.rungs or ()), args.reduction_factor or 3)


@dataclass(frozen=True)
class ZooSetup:
    """``tune``'s ``setup`` for a zoo entry: loads policy and world model once per process (a Ray worker).

    :param entry: entry name.
    :param policy: the entry's policy.
    :param zoo_dir: zoo folder (``None``: the default one; on a cluster, a path every node has).
    :param kind: the world model's kind.
    """

    entry: str
    policy: str
    zoo_dir: str | None
    kind: str

    def __call__(self) -> tuple[Any, Any, Any]:
        from itpo_wrap.evaluate import cached_world_model, load_entry

        loaded = load_entry(self.entry, self.policy, self.zoo_dir)
        return loaded.policy, cached_world_model(self.entry, self.policy, self.zoo_dir, self.kind), loaded.make_env
