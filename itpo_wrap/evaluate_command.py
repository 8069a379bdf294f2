"""``itpo evaluate``: paired base and wrapped episodes of a zoo entry, one CSV row each, here or on Ray.

    itpo evaluate --entry hopper-medium-replay --method base
    itpo evaluate --entry hopper-medium-replay --method itpo --kind meanflow --step-size 1e-4 3e-4
    itpo evaluate --entry hopper-medium-replay --method itpo --backend ray --workers 2   # a local Ray
    itpo evaluate --entry hopper-medium-replay --method itpo --backend ray --address auto  # a cluster

The flags and rows are ``benchmarks/run.py``'s (which is a front over this command): the row key
(``settings``) names everything that defines a configuration, so a rerun skips the episodes already in
``--out`` and a killed run resumes. Seeds: ``--split eval`` uses 1000..1009 unless given, ``--split tune``
0..4, disjoint as in the paper.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from itpo_wrap.config import AdaptConfig
from itpo_wrap.parallel import BACKENDS
from itpo_wrap.world_model.kinds import kind_names

DEFAULT_OUT = "benchmarks/results/episodes.csv"
STEP_BACKENDS = ("auto", "eager", "compile")
#: one configuration: ``(row-key settings, AdaptConfig or None, agent factory or None)``
GridItem = tuple[dict[str, Any], AdaptConfig | None, Any]


def add_backend_arguments(p: argparse.ArgumentParser, extra: dict[str, str] | None = None) -> None:
    """``--backend local|ray``, ``--address``, ``--workers`` and ``--step-backend`` (AdaptConfig.backend).

    :param p: the parser to add them to.
    :param extra: further ``--backend`` choices this command has, with their help (``itpo tune``'s ray-tune).
    """
    extra = extra or {}
    p.add_argument("--backend", choices=[*BACKENDS, *extra, *STEP_BACKENDS], default="local",
                   help="where episodes run: local (one after another, here) or ray (one Ray task per episode)"
                        + "".join(f"; {name}: {text}" for name, text in extra.items())
                        + "; auto/eager/compile are the old spelling of --step-backend")
    on = "with --backend " + "/".join(["ray", *extra])
    p.add_argument("--address", default=None, help=f"{on}: join this Ray cluster ('auto': this node's)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"{on}: start a local Ray with this many CPUs (default: all)")
    p.add_argument("--step-backend", choices=STEP_BACKENDS, default="auto",
                   help="AdaptConfig.backend (not part of the row key: the backends compute the same steps)")


def backends(args: argparse.Namespace) -> tuple[str, Any]:
    """``(where episodes run, AdaptConfig.backend)`` of parsed arguments; ``--backend eager`` (the flag's
    meaning before the ray backend) still means ``--step-backend eager``, run locally.

    :param args: parsed arguments with :func:`add_backend_arguments`'s flags.
    """
    if args.backend in STEP_BACKENDS:
        return "local", args.backend
    return args.backend, args.step_backend


def add_arguments(p: argparse.ArgumentParser, methods: tuple[str, ...] = ("base", "itpo")) -> None:
    """Every flag of ``itpo evaluate`` (and of ``benchmarks/run.py``, which adds ``mppi``).

    :param p: the parser to add them to.
    :param methods: the ``--method`` choices.
    """
    p.add_argument("--entry", required=True, nargs="+",
                   help="zoo entry, e.g. hopper-medium-replay; several: every configuration on each (one run, "
                        "one pool of tasks)")
    p.add_argument("--policy", default=None, help="the entry's policy (its default when omitted)")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's policies/zoo)")
    p.add_argument("--method", choices=list(methods), required=True,
                   help="base: the policy alone; itpo: wrapped" + ("; mppi: the lab's planner" if "mppi" in methods else ""))
    p.add_argument("--kind", choices=kind_names(), default="meanflow",
                   help="world model; mlp: the diffusion bundle's deterministic MLP baseline as dynamics (ablation)")
    p.add_argument("--split", choices=["eval", "tune"], default="eval",
                   help="which seeds the rows are (a row column): evaluation or tuning")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default: 1000..1009 (eval), 0..4 (tune)")
    p.add_argument("--step-size", type=float, nargs="*", default=[1e-3], help="ITPO step sizes (a grid)")
    p.add_argument("--steps", type=int, default=5, help="E")
    p.add_argument("--particles", type=int, default=8, help="M")
    p.add_argument("--horizon", type=int, default=5, help="H")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="AdaptConfig.optimizer")
    p.add_argument("--gate", choices=["off", "held_out", "paired"], default="off", help="AdaptConfig.gate")
    p.add_argument("--gate-z", type=float, default=1.0, help="AdaptConfig.gate_z (with --gate paired)")
    p.add_argument("--max-drift", type=float, default=None, help="AdaptConfig.max_drift (default: no bound)")
    p.add_argument("--max-model-error", type=float, default=None,
                   help="AdaptConfig.max_model_error: the reality check, in state-std units (default: none)")
    p.add_argument("--termination", choices=["hard", "soft"], default="hard", help="AdaptConfig.termination")
    p.add_argument("--persistence", choices=["persistent", "reset_each_step"], default="persistent",
                   help="AdaptConfig.persistence")
    p.add_argument("--max-action-change", type=float, default=None,
                   help="AdaptConfig.max_action_change: trust region on the executed action (default: none)")
    p.add_argument("--sampling-steps", type=int, default=None, help="diffusion: denoising steps (default: the bundle's)")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm", help="diffusion sampler with --sampling-steps")
    p.add_argument("--critic-policy", default=None,
                   help="terminal critic from another policy of the entry (e.g. rebrac), the wrapped policy "
                        "unchanged: tests whether a better-calibrated critic helps; part of the row key")
    p.add_argument("--threads", type=int, default=1, help="torch threads per episode")
    p.add_argument("--out", default=DEFAULT_OUT, help="the episode table (CSV) rows are appended to")
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes (smoke tests, short tuning runs); part of the row key")
    p.add_argument("--tag", default="", help="label of the world model's version (part of the row key), e.g. after "
                                             "retraining a bundle, so its rows never mix with the old one's")
    add_backend_arguments(p)


def itpo_grid(args: argparse.Namespace) -> list[tuple[dict[str, Any], AdaptConfig]]:
    """``(row-key settings, config)`` per step size of an ``--method itpo`` command line.

    :param args: parsed :func:`add_arguments` flags.
    """
    grid = []
    for alpha in args.step_size:
        cfg = AdaptConfig(horizon=args.horizon, particles=args.particles, steps=args.steps, step_size=alpha,
                          optimizer=args.optimizer, gate=args.gate, device="cpu", track_j_after=False,
                          persistence=args.persistence, max_action_change=args.max_action_change,
                          gate_z=args.gate_z, max_drift=args.max_drift, termination=args.termination,
                          backend=backends(args)[1], model_check="off", max_model_error=args.max_model_error)
        keep: tuple[str, ...] = ("horizon", "particles", "steps", "step_size", "optimizer", "gate", "discount", "persistence")
        # a new setting joins the row key only when used, so older rows keep their keys
        keep += ("max_action_change",) if cfg.max_action_change is not None else ()
        keep += ("gate_z",) if cfg.gate == "paired" else ()
        keep += ("max_drift",) if cfg.max_drift is not None else ()
        keep += ("termination",) if cfg.termination != "hard" else ()
        keep += ("max_model_error",) if cfg.max_model_error is not None else ()
        grid.append(({k: cfg.to_dict()[k] for k in keep}, cfg))
    return grid


def absolute(path: str | None) -> str | None:
    """``path`` made absolute (a Ray worker need not share the driver's working directory).

    :param path: a folder, or ``None``.
    """
    return None if path is None else str(Path(path).resolve())


def default_seeds(args: argparse.Namespace) -> list[int]:
    """``--seeds``, else 1000..1009 for ``--split eval`` and 0..4 for ``--split tune``.

    :param args: parsed :func:`add_arguments` flags.
    """
    if args.seeds is not None:
        return list(args.seeds)
    return list(range(1000, 1010)) if args.split == "eval" else list(range(5))


def configs_from_args(args: argparse.Namespace, grid: list[GridItem] | None = None) -> list[Any]:
    """The :class:`~itpo_wrap.evaluate.EvalConfig` of each configuration a command line names.

    :param args: parsed :func:`add_arguments` flags.
    :param grid: the configurations of a method beyond base and itpo; default: ``--method``'s own.
    """
    from itpo_wrap.evaluate import git_commit

    entries = [args.entry] if isinstance(args.entry, str) else list(args.entry)
    if args.critic_policy is not None and args.method == "base":
        raise ValueError("--critic-policy needs a wrapped method (itpo, or the lab's mppi): the base policy "
                         "uses no critic")
    if grid is None:
        grid = [(s, cfg, None) for s, cfg in itpo_grid(args)] if args.method == "itpo" else [({}, None, None)]
    commit = git_commit()
    return [config for name in entries for config in _entry_configs(args, name, grid, commit)]


def _entry_configs(args: argparse.Namespace, name: str, grid: list[GridItem], commit: str) -> list[Any]:
    from itpo_wrap.evaluate import EvalConfig, load_entry

    entry = load_entry(name, args.policy, args.zoo_dir)
    critic = None
    if args.critic_policy is not None:  # an unknown name lists the entry's policies
        critic = load_entry(name, args.critic_policy, args.zoo_dir).policy_name
    kind = "" if args.method == "base" else args.kind
    sampling = (args.sampling_steps, args.sampler) if args.sampling_steps else None
    configs = []
    for settings, adapt, agent in grid:
        if sampling is not None:
            settings = {**settings, "sampling_steps": sampling[0], "sampler": sampling[1]}
        if args.max_steps is not None:  # truncated episodes are another experiment: never mix their rows
            settings = {**settings, "max_steps": args.max_steps}
        if args.tag and args.method != "base":
            settings = {**settings, "tag": args.tag}
        if critic is not None and critic != entry.policy_name:
            settings = {**settings, "critic": critic}
        configs.append(EvalConfig(entry=entry.name, policy=entry.policy_name, method=args.method, kind=kind,
                                  split=args.split, settings=settings, adapt=adapt, max_steps=args.max_steps,
                                  zoo_dir=absolute(args.zoo_dir), sampling=sampling, critic_policy=critic, agent=agent,
                                  threads=args.threads, commit=commit))
    return configs


def run_evaluate(args: argparse.Namespace, configs: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run a command line's configurations on its seeds, appending rows to ``--out``.

    :param args: parsed :func:`add_arguments` flags.
    :param configs: the configurations (default: :func:`configs_from_args`).
    :return: the rows written.
    """
    from itpo_wrap.evaluate import evaluate

    where, _ = backends(args)
    if args.backend in STEP_BACKENDS:
        print(f"note: --backend {args.backend} means --step-backend {args.backend} (--backend is local|ray now)",
              file=sys.stderr)
    if where == "local" and (args.address is not None or args.workers is not None):
        raise ValueError("--address and --workers need --backend ray")
    configs = configs if configs is not None else configs_from_args(args)
    return evaluate(configs, default_seeds(args), args.out, backend=where,
                    address=args.address, workers=args.workers)


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``evaluate``.

    :param args: the parsed ``evaluate`` arguments.
    """
    start = time.perf_counter()
    rows = run_evaluate(args)
    print(f"{len(rows)} row(s) written to {args.out} in {time.perf_counter() - start:.1f} s "
          f"({backends(args)[0]} backend)")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate`` to an argparse subparsers object.

    :param subparsers: the result of ``parser.add_subparsers()``.
    :return: the new parser.
    """
    p = subparsers.add_parser("evaluate", help="paired base and wrapped episodes of a zoo entry, one CSV row each "
                                               "(resumable; --backend ray runs them on Ray)",
                              description="Paired base and wrapped episodes of a zoo entry, one CSV row each (the rows "
                                          "the results tables are built from). A rerun skips the rows --out holds, so a "
                                          "killed run resumes; --backend ray runs one Ray task per episode, results "
                                          "written by this process alone (docs/scaling.md).")
    add_arguments(p)
    p.set_defaults(func=evaluate_command)
    return p
