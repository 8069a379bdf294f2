"""``itpo tune``: :func:`itpo_wrap.tune.tune` on a zoo entry, from the command line.

    itpo tune --entry hopper-medium --kind diffusion --step-size 3e-5 1e-4 3e-4 --seeds 0 1 [--record]

The grid is the product of the listed values over ``AdaptConfig()``'s defaults; ``E = 0`` (the base) is
always a candidate. ``--record`` stores the choice in the entry (``zoo.set_tuned_settings``) only as
tuned: when nothing beat the base, what is recorded is ``steps = 0`` and the note says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from typing import Any

from itpo_wrap.config import AdaptConfig


def register(subparsers: Any) -> None:
    """Add ``tune`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    """
    d = AdaptConfig()
    p = subparsers.add_parser("tune", help="choose a zoo entry's adaptation settings on tuning seeds (E = 0 always a "
                                           "candidate; nothing that loses to the base is recorded)")
    p.add_argument("--entry", required=True, help="zoo entry (itpo zoo list)")
    p.add_argument("--kind", default="diffusion", choices=["diffusion", "meanflow"], help="world model")
    p.add_argument("--policy", default=None, help="which of the entry's policies (default: its default one)")
    p.add_argument("--step-size", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4], help="grid of step sizes")
    p.add_argument("--persistence", nargs="+", choices=["persistent", "reset_each_step"], default=[d.persistence],
                   help="grid of persistence modes (AdaptConfig.persistence)")
    p.add_argument("--steps", type=int, nargs="+", default=[d.steps], help="grid of ascent steps E")
    p.add_argument("--max-drift", type=_drift, nargs="+", default=[d.max_drift],
                   help="grid of parameter trust regions ('none' for no bound)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="tuning seeds (not your evaluation seeds)")
    p.add_argument("--max-steps", type=int, default=None, help="cap tuning episodes (cheaper; reported as a risk)")
    p.add_argument("--backend", default="auto", choices=["auto", "eager", "compile"], help="AdaptConfig.backend")
    p.add_argument("--record", action="store_true", help="store the choice in the entry (ZooEntry.adapt_config)")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's)")
    p.set_defaults(func=tune_command)


def _drift(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def grid(args: argparse.Namespace) -> list[AdaptConfig]:
    """The candidates: the product of the listed values over ``AdaptConfig()``."""
    return [AdaptConfig(step_size=a, persistence=p, steps=e, max_drift=r, backend=args.backend)
            for a, p, e, r in itertools.product(args.step_size, args.persistence, args.steps, args.max_drift)]


def tune_command(args: argparse.Namespace) -> int:
    """Run ``tune``."""
    from itpo_wrap import zoo
    from itpo_wrap.tune import tune

    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    wm = entry.load_world_model(args.kind)
    candidates = grid(args)
    print(f"tuning {entry.name} ({entry.policy_name}, {args.kind} world model): {len(candidates)} candidate(s) + "
          f"the base on seeds {args.seeds}" + (f", episodes capped at {args.max_steps}" if args.max_steps else ""))
    report = tune(entry.policy, wm, entry.make_env, candidates, args.seeds, max_steps=args.max_steps,
                  score=lambda r: float(entry.normalized_score(r)), progress=print)
    print(report.summary())
    if args.record:
        # every field that shapes the adaptation, named explicitly (ZooEntry.adapt_config treats records
        # without "termination" as pre-issue-20 ones)
        keep = ("step_size", "steps", "particles", "horizon", "persistence", "gate", "gate_z", "max_drift",
                "termination", "optimizer", "max_action_change")
        settings = {k: v for k, v in dataclasses.asdict(report.chosen_config).items() if k in keep}
        zoo.set_tuned_settings(entry.name, args.kind, settings, note="itpo tune: " + report.summary().replace("\n", " "),
                               root=args.zoo_dir)
        print(f"recorded {settings} for {entry.name} / {args.kind}"
              + ("" if report.beat_base else " (E = 0: nothing beat the base)"))
    return 0
