"""Register an SB3 SAC or TD3 model (e.g. a behaviour expert) as a zoo base policy, with its own critic.

An SB3 off-policy model already has what ITPO needs from a base: a deterministic tanh actor
(``policy.actor``) and twin critics on scaled actions (``policy.critic``). This script evaluates the
model deterministically (10 episodes, D4RL-normalized with the dataset's reference returns) and adds
it to ``<zoo-dir>/<env>-<level>/`` as a policy of kind ``sb3``; ``itpo_wrap.zoo.load(name,
policy=...)`` then returns the SB3 model as ``.policy``, a differentiable actor view as ``.actor``
and the critic view as ``.critic`` (``itpo_wrap.formats.sb3.load_sb3_base``).

Sources: SB3 (Raffin et al. 2021, JMLR 22(268)) SAC/TD3 policies; the behaviour experts come from
``policies/sac_behavior.py`` / ``itpo_lab.data.behavior`` (D4RL's recipe, Fu et al. 2020).

Usage::

    python policies/sb3_base.py --model policies/behavior/hopper/expert.zip \\
        --dataset itpo/hopper/medium-replay-v0 --name sac_expert --zoo-dir policies/zoo

The zoo stores the model converted to a weights-only file (``<name>.pt``, no pickle; see
``itpo_wrap.formats.sb3_weights``) inside the entry, whatever ``--copy``/``--no-copy`` says: entries open
only their own files.
"""

from __future__ import annotations

import dataclasses

import torch

from itpo_lab import zoo_write
from itpo_lab.offline import evaluate_actor, load_sb3_base, parse_args
from itpo_lab.offline.run import load_offline_dataset
from itpo_wrap import provenance, zoo


@dataclasses.dataclass(frozen=True)
class Args:
    model: str = "policies/behavior/hopper/expert.zip"  # SB3 SAC or TD3 zip written by model.save()
    dataset: str = "itpo/hopper/medium-replay-v0"  # gives env id, reference scores and the entry name
    algorithm: str = "auto"  # sac | td3 | auto (read from the zip)
    name: str = "sac_expert"  # policy key inside the zoo entry
    zoo_dir: str = "policies/zoo"
    eval_episodes: int = 10
    eval_seed: int = 1000
    default: bool = False  # make it the entry's default policy
    copy: bool = True  # kept for old command lines: an SB3 zip is always stored converted inside the entry
    threads: int = 1


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    dataset = load_offline_dataset(args.dataset)
    if not dataset.env_id:
        raise ValueError(f"dataset {args.dataset!r} stores no env_id; the SB3 base cannot be evaluated")
    actor, _, meta = load_sb3_base(args.model, args.algorithm, env_id=dataset.env_id, dataset_id=args.dataset)
    result = evaluate_actor(actor, dataset.env_id, episodes=args.eval_episodes, seed=args.eval_seed,
                            ref_min_score=dataset.ref_min_score, ref_max_score=dataset.ref_max_score)
    ev = {"episodes": args.eval_episodes, "seed": args.eval_seed,
          **{k.removeprefix("eval/"): v for k, v in result.row().items()}}
    folder = zoo_write.add_policy(zoo.entry_name(args.dataset), args.name, args.model, kind="sb3", dataset_id=args.dataset,
                            env_id=dataset.env_id, default=args.default, copy=args.copy, root=args.zoo_dir,
                            info={"algorithm": meta["algorithm"],
                                  provenance.KEY: provenance.from_dataclass("policies/sb3_base.py", args).to_dict(),
                                  "eval": ev, "notes": f"SB3 model imported from {args.model}."})
    print(f"{args.name}: return {result.mean_return:.1f}, normalized {result.mean_score:.1f} -> {folder}")


if __name__ == "__main__":
    main(parse_args(Args, description=__doc__))
