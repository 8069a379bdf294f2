"""The score experiment (issue 6): a zoo entry's base policy against the same policy wrapped with ITPO
(diffusion and MeanFlow world models) and against MPPI on the same world model and critic, **paired**
on the same env seeds.

Every finished episode is appended as one CSV row (``--out``), keyed by (entry, policy, method, world
model, settings, seed); rerunning the same command skips the rows already there, so a killed run
resumes where it stopped. ``benchmarks/summarize.py`` turns the rows into ``docs/results.md`` and plots.

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
import csv
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from itpo_lab.mppi import MPPIConfig, MPPIPlanner
from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo
from itpo_wrap.rollout import run_episode
from itpo_wrap.world_model.kinds import kind_names

FIELDS = ["entry", "policy", "method", "kind", "split", "seed", "episode_return", "score", "length", "ms_per_step",
          "terminated", "fallbacks", "step_size", "steps", "particles", "horizon", "gate", "settings", "commit",
          "threads", "finished_at"]
DEFAULT_OUT = "benchmarks/results/episodes.csv"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def settings_key(method: str, kind: str, settings: dict[str, Any]) -> str:
    """A stable string of everything that defines a configuration (the resume key, with entry and seed)."""
    return json.dumps({"method": method, "kind": kind, **settings}, sort_keys=True)


def done_keys(path: Path) -> set[tuple[str, str, str, str, str]]:
    if not path.is_file():
        return set()
    with open(path, newline="") as f:
        return {(r["entry"], r["policy"], r["split"], r["settings"], r["seed"]) for r in csv.DictReader(f)}


def load_world_model(entry: zoo.ZooEntry, kind: str, sampling: tuple[int, str] | None = None,
                     critic_from: zoo.ZooEntry | None = None) -> Any:
    """The entry's ``kind`` world model; ``sampling`` = (steps, sampler) overrides a diffusion model's
    sampler (the same trained model, fewer denoising steps); ``critic_from`` (the same entry loaded with
    another policy) supplies the terminal critic instead of the wrapped policy's own."""
    wm = (critic_from or entry).load_world_model(kind)
    if sampling is not None:
        if kind != "diffusion":
            raise ValueError(f"--sampling-steps applies to the diffusion model, not {kind!r}")
        wm.dynamics.set_timesteps(sampling[0], sampling[1])
    return wm


def make_agent(entry: zoo.ZooEntry, method: str, kind: str, adapt: AdaptConfig | None,
               mppi: MPPIConfig | None, sampling: tuple[int, str] | None = None, wm: Any = None) -> tuple[Any, Any]:
    """``(predict, info_fn)`` for one configuration.

    :param wm: a world model loaded once for the configuration (:func:`load_world_model`), so episodes do
        not pay its loading again (the compiled step is shared by every wrapper either way).
    """
    if method == "base":
        return entry.base_predict(), None
    wm = wm if wm is not None else load_world_model(entry, kind, sampling)
    if method == "itpo":
        w = ITPOPolicyWrapper(entry.policy, wm, adapt)
        return w.predict, lambda: w.last_info
    if method == "mppi":
        return MPPIPlanner(entry.actor, wm, mppi).predict, None
    raise ValueError(f"method={method!r}; choose base, itpo or mppi")


def load_entry(name: str, policy: str | None = None, root: str | None = None) -> zoo.ZooEntry:
    """``zoo.load`` for the scripts: a wrong entry or policy name ends the script with the library's one-line
    message (it lists the known names), not a traceback."""
    try:
        return zoo.load(name, policy=policy, root=root)
    except KeyError as err:
        raise SystemExit(f"error: {err.args[0]}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (also what other scripts parse to name its rows)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entry", required=True, help="zoo entry, e.g. hopper-medium-replay")
    p.add_argument("--policy", default=None, help="the entry's policy (its default when omitted)")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's policies/zoo)")
    p.add_argument("--method", choices=["base", "itpo", "mppi"], required=True)
    p.add_argument("--kind", choices=kind_names(), default="meanflow",
                   help="world model; mlp: the diffusion bundle's deterministic MLP baseline as dynamics (ablation)")
    p.add_argument("--split", choices=["eval", "tune"], default="eval")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default: 1000..1009 (eval), 0..4 (tune)")
    p.add_argument("--step-size", type=float, nargs="*", default=[1e-3], help="ITPO step sizes (a grid)")
    p.add_argument("--steps", type=int, default=5, help="E")
    p.add_argument("--particles", type=int, default=8, help="M")
    p.add_argument("--horizon", type=int, default=5, help="H")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--gate", choices=["off", "held_out", "paired"], default="off")
    p.add_argument("--gate-z", type=float, default=1.0, help="AdaptConfig.gate_z (with --gate paired)")
    p.add_argument("--max-drift", type=float, default=None, help="AdaptConfig.max_drift (default: no bound)")
    p.add_argument("--max-model-error", type=float, default=None,
                   help="AdaptConfig.max_model_error: the reality check, in state-std units (default: none)")
    p.add_argument("--termination", choices=["hard", "soft"], default="hard", help="AdaptConfig.termination")
    p.add_argument("--backend", choices=["auto", "eager", "compile"], default="auto",
                   help="AdaptConfig.backend (not part of the row key: the backends compute the same steps)")
    p.add_argument("--persistence", choices=["persistent", "reset_each_step"], default="persistent")
    p.add_argument("--max-action-change", type=float, default=None,
                   help="AdaptConfig.max_action_change: trust region on the executed action (default: none)")
    p.add_argument("--mppi", default="{}", help="MPPIConfig overrides as JSON, e.g. '{\"samples\": 128}'")
    p.add_argument("--sampling-steps", type=int, default=None, help="diffusion: denoising steps (default: the bundle's)")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm", help="diffusion sampler with --sampling-steps")
    p.add_argument("--critic-policy", default=None,
                   help="terminal critic from another policy of the entry (e.g. rebrac), the wrapped policy "
                        "unchanged: tests whether a better-calibrated critic helps; part of the row key")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes (smoke tests, short tuning runs); part of the row key")
    p.add_argument("--tag", default="", help="label of the world model's version (part of the row key), e.g. after "
                                             "retraining a bundle, so its rows never mix with the old one's")
    return p


def itpo_grid(args: argparse.Namespace) -> list[tuple[dict[str, Any], AdaptConfig]]:
    """``(row-key settings, config)`` per step size of an ``--method itpo`` command line."""
    grid = []
    for alpha in args.step_size:
        cfg = AdaptConfig(horizon=args.horizon, particles=args.particles, steps=args.steps, step_size=alpha,
                          optimizer=args.optimizer, gate=args.gate, device="cpu", track_j_after=False,
                          persistence=args.persistence, max_action_change=args.max_action_change,
                          gate_z=args.gate_z, max_drift=args.max_drift, termination=args.termination,
                          backend=args.backend, model_check="off", max_model_error=args.max_model_error)
        keep = ("horizon", "particles", "steps", "step_size", "optimizer", "gate", "discount", "persistence")
        # a new setting joins the row key only when used, so older rows keep their keys
        keep += ("max_action_change",) if cfg.max_action_change is not None else ()
        keep += ("gate_z",) if cfg.gate == "paired" else ()
        keep += ("max_drift",) if cfg.max_drift is not None else ()
        keep += ("termination",) if cfg.termination != "hard" else ()
        keep += ("max_model_error",) if cfg.max_model_error is not None else ()
        grid.append(({k: cfg.to_dict()[k] for k in keep}, cfg))
    return grid


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    entry = load_entry(args.entry, args.policy, args.zoo_dir)
    critic_from = None
    if args.critic_policy is not None:
        if args.method == "base":
            raise SystemExit("--critic-policy needs --method itpo or mppi: the base policy uses no critic")
        critic_from = load_entry(args.entry, args.critic_policy, args.zoo_dir)  # an unknown name lists the entry's policies
    seeds = args.seeds if args.seeds is not None else (list(range(1000, 1010)) if args.split == "eval" else
                                                       list(range(5)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(out)
    commit = _commit()
    kind = "" if args.method == "base" else args.kind
    grid: list[tuple[dict[str, Any], AdaptConfig | None, MPPIConfig | None]] = []
    if args.method == "itpo":
        grid.extend((settings, cfg, None) for settings, cfg in itpo_grid(args))
    elif args.method == "mppi":
        mcfg = MPPIConfig(**json.loads(args.mppi))
        grid.append((mcfg.to_dict(), None, mcfg))
    else:
        grid.append(({}, None, None))

    sampling = (args.sampling_steps, args.sampler) if args.sampling_steps else None
    for settings, adapt, mppi in grid:
        if sampling is not None:
            settings = {**settings, "sampling_steps": sampling[0], "sampler": sampling[1]}
        if args.max_steps is not None:  # truncated episodes are another experiment: never mix their rows
            settings = {**settings, "max_steps": args.max_steps}
        if args.tag and args.method != "base":
            settings = {**settings, "tag": args.tag}
        if critic_from is not None and critic_from.policy_name != entry.policy_name:
            settings = {**settings, "critic": critic_from.policy_name}
        key = settings_key(args.method, kind, settings)
        todo = [s for s in seeds if (entry.name, entry.policy_name, args.split, key, str(s)) not in done]
        if not todo:
            print(f"{entry.name} {args.method} {kind} {settings}: all {len(seeds)} seeds done")
            continue
        env = entry.make_env()
        wm = None if args.method == "base" else load_world_model(entry, kind, sampling, critic_from)
        bar = tqdm(todo, desc=f"{entry.name} {args.method} {kind} {settings.get('step_size', '')}".strip())
        for seed in bar:
            # a fresh agent per episode (episodes are independent and a crash mid-run loses nothing) over one
            # loaded world model (the world model keeps no episode state)
            predict, info_fn = make_agent(entry, args.method, kind, adapt, mppi, sampling, wm)
            ep = run_episode(predict, env, seed, info_fn=info_fn, max_steps=args.max_steps)
            row = {"entry": entry.name, "policy": entry.policy_name, "method": args.method, "kind": kind,
                   "split": args.split, "seed": seed, "episode_return": f"{ep.episode_return:.3f}",
                   "score": f"{float(entry.normalized_score(ep.episode_return)):.3f}", "length": ep.length,
                   "ms_per_step": f"{ep.ms_per_step:.3f}", "terminated": int(ep.terminated),
                   "fallbacks": ep.fallbacks, "step_size": settings.get("step_size", ""),
                   "steps": settings.get("steps", ""), "particles": settings.get("particles", ""),
                   "horizon": settings.get("horizon", ""), "gate": settings.get("gate", ""), "settings": key,
                   "commit": commit, "threads": args.threads,
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            new = not out.is_file()
            with open(out, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            bar.set_postfix(score=row["score"], ms=row["ms_per_step"])
        env.close()


if __name__ == "__main__":
    main()
