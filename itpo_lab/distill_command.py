"""``itpo-lab distill``: :func:`itpo_lab.distill.distill` on a zoo entry, from the command line; a kept student is
written as an offline-policy checkpoint and, with ``--record``, added to the entry. Apart from
:mod:`itpo_lab.distill` because it writes the zoo, whose card renderer reads the parsers that module registers."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from itpo_lab.distill import DistillConfig, distill
from itpo_lab.zoo_write import add_policy
from itpo_wrap import provenance, zoo
from itpo_wrap.formats.offline_policy import save_offline_policy
from itpo_wrap.networks import TwinQ

__all__ = ["cmd_distill"]


def cmd_distill(args: argparse.Namespace) -> int:
    """Run ``distill``; exit status 1 when no snapshot beat the base (nothing written to the zoo).

    :param args: the parsed ``distill`` arguments.
    """
    cfg = DistillConfig(tuple(args.seeds), args.steps, args.batch_size, args.lr, args.eval_every, args.z)
    entry = zoo.load(args.entry, policy=args.policy, root=args.zoo_dir)
    if args.record and args.name == entry.policy_name:
        raise ValueError(f"--name {args.name} is the base policy's own name; choose another (e.g. distilled)")
    critic = entry.critic
    if "model" in entry.meta or not isinstance(critic, TwinQ):  # checked before the run, not after ten minutes
        raise ValueError(f"{entry.name}/{entry.policy_name} is not an offline policy (td3_bc, rebrac): distill writes "
                         "offline checkpoints")
    torch.set_num_threads(args.threads)
    folder = Path(args.out or f"runs/distill/{entry.name}-{entry.policy_name}-{args.kind}")
    kept, check, facts = distill(entry, args.kind, cfg, folder)
    print(check.describe())
    print(f"wall time {facts['wall_s']:.0f} s (collection {facts['collect_s']:.0f} s)")
    if kept is None:
        print("refused: no snapshot beat the base in the real env; nothing written")
        return 1
    made_by = provenance.from_namespace("itpo-lab distill", args).to_dict()
    info = {"base_policy": entry.policy_name, "distill": facts, provenance.KEY: made_by}
    path = save_offline_policy(folder / "distilled.pt", kept, critic, algorithm="itpo_distill",
                               config=facts["config"], dataset_id=entry.dataset_id, env_id=entry.env_id,
                               action_low=entry.meta["action_low"], action_high=entry.meta["action_high"],
                               updates=check.chosen, info=info)
    print(f"wrote {path}")
    if args.record:
        record = {"algorithm": "itpo_distill", "updates": check.chosen, "wall_s": facts["wall_s"], **info}
        print(f"recorded {args.name!r} in " + str(add_policy(entry.name, args.name, path, kind="offline",
              dataset_id=entry.dataset_id, env_id=entry.env_id, info=record, root=args.zoo_dir)))
    return 0
