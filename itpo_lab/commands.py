"""The ``itpo-lab`` commands: thin front ends over the lab's functions (datasets, behaviour exports, zoo
records, tables, settings checks) and the zoo-writing halves of ``train-world-model`` and ``tune``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from itpo_wrap import provenance


def _parse_levels(text: str) -> tuple[str, ...]:
    from itpo_lab.data.collect import LEVELS

    if text == "all":
        return LEVELS
    return tuple(x.strip() for x in text.split(",") if x.strip())


def cmd_collect(args: argparse.Namespace) -> int:
    """Run ``collect``: D4RL-style Minari datasets from the committed behaviour policies.

    :param args: the parsed ``collect`` arguments.
    """
    from itpo_lab.data.collect import ENVS, CollectConfig, collect

    envs = list(ENVS) if args.env == "all" else [args.env]
    for env in envs:
        cfg = CollectConfig(env=env, levels=_parse_levels(args.levels), transitions=args.transitions, seed=args.seed,
                            behavior_dir=args.behavior_dir or "", overwrite=args.overwrite, version=args.version)
        t0 = time.perf_counter()
        summary = collect(cfg)
        print(f"{env}: {time.perf_counter() - t0:.1f}s")
        if args.summary:
            out = cfg.behavior_path / "datasets.json"
            old = json.loads(out.read_text()) if out.exists() else {}
            old.update(summary)
            out.write_text(json.dumps(old, indent=2) + "\n")
    return 0


def cmd_export_behavior(args: argparse.Namespace) -> int:
    """Run ``export-behavior``: select expert/medium checkpoints of a SAC run and export them.

    :param args: the parsed ``export-behavior`` arguments.
    """
    from itpo_lab.data.behavior import export_behavior
    from itpo_lab.data.collect import ENVS

    out = Path(args.out or f"policies/behavior/{args.env}")
    card = export_behavior(args.run_dir, out, ENVS[args.env])
    print(json.dumps(card, indent=2))
    return 0


def cmd_datasets_table(args: argparse.Namespace) -> int:
    """Run ``datasets-table``: render ``docs/datasets.md`` from the behaviour cards.

    :param args: the parsed ``datasets-table`` arguments.
    """
    from itpo_lab.data.tables import datasets_markdown

    text = datasets_markdown(Path(args.behavior_root))
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_zoo_tables(args: argparse.Namespace) -> int:
    """Run ``zoo-tables``: render the zoo's docs tables and curves.

    :param args: the parsed ``zoo-tables`` arguments.
    """
    from itpo_lab.zoo_tables import write_tables

    for path in write_tables(Path(args.out_dir)):
        print(f"wrote {path}")
    return 0


def cmd_critic_calibration(args: argparse.Namespace) -> int:
    """Run ``critic-calibration``: a policy's critic against the discounted return its actor collects.

    :param args: the parsed ``critic-calibration`` arguments.
    """
    import torch

    from itpo_lab.offline.calibration import calibrate_policy_file, value_calibration
    from itpo_lab.zoo_write import record_policy_facts
    from itpo_wrap import zoo

    torch.set_num_threads(args.threads)
    if args.policy_file is not None:
        # a run that is not (yet) a zoo entry, e.g. a betas check in runs/: its own env, nothing recorded
        if args.record or args.policy is not None:
            raise SystemExit(f"--policy-file {args.policy_file} is not a zoo entry: drop --record and --policy, "
                             "or pass --entry to calibrate (and record into) a zoo policy")
        result, meta = calibrate_policy_file(args.policy_file, episodes=args.episodes, seed=args.seed,
                                             gamma=args.gamma)
        print(json.dumps({"policy_file": str(args.policy_file), "algorithm": meta.get("algorithm"),
                          "dataset_id": meta.get("dataset_id"), **result.summary()}, indent=2))
        return 0
    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    result = value_calibration(entry.actor, entry.critic, entry.make_env, episodes=args.episodes, seed=args.seed,
                               gamma=args.gamma)
    summary = result.summary()
    print(json.dumps({"entry": entry.name, "policy": entry.policy_name, **summary}, indent=2))
    if args.record:
        record_policy_facts(entry.name, entry.policy_name, {"critic_calibration": {"seed": args.seed, **summary}},
                            root=args.zoo_dir)
        print(f"recorded in {entry.directory / 'entry.json'}")
    return 0


def cmd_record_check(args: argparse.Namespace) -> int:
    """Run ``record-check``: keep a finished settings-check run's logs and figures in ``policies/checks/``.

    :param args: the parsed ``record-check`` arguments.
    """
    import torch

    from itpo_lab.offline.checks import record_check

    torch.set_num_threads(args.threads)
    folder = record_check(args.run_dir, args.checks_dir, variant=args.variant, note=args.note,
                          calibrate=not args.no_calibration, episodes=args.episodes, seed=args.seed)
    print(f"recorded {folder}; regenerate the docs with: itpo-lab zoo-tables --out-dir docs")
    return 0


def cmd_render_cards(args: argparse.Namespace) -> int:
    """Run ``render-cards``: every ``MODEL_CARD.md`` and ``CARD.md`` under the paths, from its JSON.

    :param args: the parsed ``render-cards`` arguments.
    """
    from itpo_lab.cards import render_cards

    for path in render_cards(args.paths, args.out_dir):
        print(f"wrote {path}")
    return 0


def cmd_migrate_provenance(args: argparse.Namespace) -> int:
    """Run ``migrate-provenance``: older files' command lines become provenance records, cards re-rendered.

    :param args: the parsed ``migrate-provenance`` arguments.
    """
    from itpo_lab.migrate import migrate_paths

    done = migrate_paths(args.paths)
    for path, count in done.items():
        print(f"{path}: {count} command line(s) -> provenance records")
    print(f"migrated {len(done)} file(s); regenerate the docs with: itpo-lab zoo-tables --out-dir docs and "
          "itpo-lab datasets-table --out docs/datasets.md")
    return 0


def cmd_convert_logs(args: argparse.Namespace) -> int:
    """Run ``convert-logs``: the old wide ``train.csv`` / ``eval.csv`` of each folder as one ``metrics.csv``.

    :param args: the parsed ``convert-logs`` arguments.
    """
    from itpo_lab.convert_logs import convert_folder

    for folder in args.folders:
        written = convert_folder(folder)
        print(f"{folder}: " + (", ".join(p.name for p in written) if written else "no wide logs"))
    return 0


def cmd_train_world_model(args: argparse.Namespace) -> int:
    """Run ``itpo train-world-model``, then, with ``--zoo-dir``, add the bundle (without a critic) to the zoo
    entry of ``--dataset`` with its held-out evaluation (the entry must exist: a base policy comes first).
    With ``--datasets`` (here or as Ray tasks), each bundle is added here, by this process, as its training
    finishes.

    :param args: the parsed ``train-world-model`` arguments plus ``zoo_dir``.
    """
    from itpo_wrap.training import many
    from itpo_wrap.training.commands import train_and_evaluate

    many.check(args)
    if args.datasets is None:
        wm, result, dataset = train_and_evaluate(args)
        runs: Any = [(dataset.dataset_id or args.dataset, args.out, result, float(wm.info["train_wall_s"]))]
    else:
        runs = ((r.dataset_id, r.out, r.evaluation, r.wall_s) for r in many.train_datasets(args, train_and_evaluate))
    for dataset_id, out, result, wall_s in runs:
        print(f"trained {dataset_id}: {out}")
        if args.zoo_dir:
            _add_world_model(args, dataset_id, out, result, wall_s)
    return 0


def _add_world_model(args: argparse.Namespace, dataset_id: str, out: str, result: dict[str, Any],
                     wall_s: float) -> None:
    from itpo_lab.zoo_write import add_world_model
    from itpo_wrap import zoo

    name = zoo.entry_name(dataset_id)
    keep = ("one_step_rmse", "one_step_rmse_state_std", "open_loop_rmse_state_std")
    ev = {k: result["dynamics"][k] for k in keep}
    if "baseline" in result:
        ev["mlp_baseline_one_step_rmse_state_std"] = result["baseline"]["one_step_rmse_state_std"]
    ev.update({k: result[k] for k in ("reward_rmse", "termination_accuracy", "episodes", "rows")})
    # the whole command's record, also for one dataset of --datasets: that command is what made it
    made_by = provenance.from_namespace("itpo-lab train-world-model", args).to_dict()
    info = {provenance.KEY: made_by, "wall_s": round(wall_s, 1), "eval": ev}
    folder = add_world_model(name, args.dynamics, out, info=info, root=args.zoo_dir)
    print(f"added to zoo entry {folder}")


# every field that shapes the adaptation, named explicitly (ZooEntry.adapt_config treats records without
# "termination" as pre-issue-20 ones)
TUNED_FIELDS = ("step_size", "steps", "particles", "horizon", "persistence", "gate", "gate_z", "max_drift",
                "termination", "optimizer", "max_action_change")


def tuned_record(report: Any) -> tuple[dict[str, Any], str]:
    """What ``--record`` stores for a :class:`~itpo_wrap.tune.TuneReport`, whichever backend ran it: the
    chosen configuration's :data:`TUNED_FIELDS` (``steps = 0`` when nothing beat the base) and the note.

    :param report: the tuning report.
    """
    settings = {k: v for k, v in dataclasses.asdict(report.chosen_config).items() if k in TUNED_FIELDS}
    return settings, "itpo tune: " + report.summary().replace("\n", " ")


def cmd_tune(args: argparse.Namespace) -> int:
    """Run ``itpo tune``, then, with ``--record``, store the choice in the entry only as tuned: when nothing
    beat the base, what is recorded is ``steps = 0`` and the note says so.

    :param args: the parsed ``tune`` arguments plus ``record``.
    """
    from itpo_lab.zoo_write import set_tuned_settings
    from itpo_wrap.tune_command import run_tune

    entry, report = run_tune(args)
    if args.record:
        settings, note = tuned_record(report)
        set_tuned_settings(entry.name, args.kind, settings, note=note, root=args.zoo_dir)
        print(f"recorded {settings} for {entry.name} / {args.kind}"
              + ("" if report.beat_base else " (E = 0: nothing beat the base)"))
    return 0


def cmd_improve(args: argparse.Namespace) -> int:
    """Run ``itpo improve``, then, with ``--record``, add the improved policy to the entry as ``--name``, with
    its facts for the model card (base policy, world model, settings, wall time, held-out gain). A refused
    policy is never recorded: nothing is written and the status is 1.

    :param args: the parsed ``improve`` arguments plus ``record`` and ``name``.
    """
    from itpo_lab.zoo_write import add_policy
    from itpo_wrap import zoo
    from itpo_wrap.improve_command import run_improve

    if args.record:  # checked before the run: the base is never replaced
        spec = zoo.read_entry(args.entry, args.zoo_dir)
        if args.name == (args.policy or spec.get("default_policy")):
            raise ValueError(f"--name {args.name} is the base policy's own name; choose another (e.g. improved)")
    entry, result, out = run_improve(args, program="itpo-lab improve")
    if not result.accepted:
        if args.record:
            print(f"not recorded in {entry.name}: the verdict refused the improved policy")
        return 1
    if args.record:
        info = {"algorithm": "itpo_improve", "updates": result.best_step, "wall_s": round(result.wall_s, 1),
                provenance.KEY: provenance.from_namespace("itpo-lab improve", args).to_dict(),
                "improve": {"base_policy": entry.policy_name, "world_model": args.kind, **result.summary()}}
        folder = add_policy(entry.name, args.name, out / "improved.pt", kind="offline", dataset_id=entry.dataset_id,
                            env_id=entry.env_id, info=info, root=args.zoo_dir)
        print(f"recorded {args.name!r} in {folder}")
    return 0
