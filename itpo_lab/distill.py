"""Amortised ITPO by distillation (issue 24, deliverable 2), a lab experiment: ``itpo-lab distill``.

The wrapper at its shipped defaults (``AdaptConfig()``) drives the base policy for one full episode per
collection seed in the entry's env; every state it visits and the action it took there are kept. A copy of
the base policy is then regressed onto those actions (Adam, mean squared error in the policy's own units, from
the base's parameters), its parameters snapshotted every ``eval_every`` steps. This is the first round of DAgger
(Ross et al. 2011) with the adapted policy as the expert: the states are the ones the adapted policy visits,
so the regression is trained where the distilled policy is meant to act.

Nothing here is new machinery: the snapshots go through ``itpo improve``'s real-env check
(:func:`itpo_wrap.improve_field.field_check`: the base and every snapshot run one full episode per tuning seed,
deployed as the wrapper at ``steps=0``; the best snapshot beating the base by ``z`` paired standard errors is
kept, else nothing), so the two routes to an amortised policy, direct ascent (``itpo improve``) and
distillation, are chosen by the same rule on the same seeds and compared on the evaluation seeds
(``docs/improve.md``). The collection seeds are tuning seeds; never pass evaluation seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap import ITPOPolicyWrapper
from itpo_wrap.adapters import make_adapter, to_policy_torch
from itpo_wrap.config import AdaptConfig
from itpo_wrap.improve_field import FieldCheck, field_check, load_snapshot, save_snapshot
from itpo_wrap.rollout import RecordingEnv, run_episode
from itpo_wrap.world_model.kinds import kind_names

__all__ = ["DistillConfig", "collect", "distill", "regress", "register"]


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation (fixed before any run; not tuned on any seed).

    :param seeds: tuning seeds: one collection episode each, and the real-env check's episodes.
    :param steps: regression steps (Adam).
    :param batch_size: visited states per step.
    :param lr: Adam's learning rate (``itpo improve``'s).
    :param eval_every: steps between snapshots (each a candidate of the real-env check).
    :param z: standard errors of the seed-paired gain a snapshot must beat the base by.
    :param seed: the minibatch generator's seed.
    """

    seeds: tuple[int, ...] = tuple(range(10))
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-4
    eval_every: int = 200
    z: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: pass at least two distinct tuning seeds (a standard error needs two)")
        for name in ("steps", "batch_size", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.eval_every > self.steps:
            raise ValueError(f"eval_every={self.eval_every} exceeds steps={self.steps}: no snapshot would be taken")
        if not (np.isfinite(self.lr) and self.lr > 0) or not (np.isfinite(self.z) and self.z >= 0):
            raise ValueError(f"lr={self.lr} must be > 0 and z={self.z} >= 0, both finite")


def collect(policy: Any, world_model: Any, make_env: Any, seeds: tuple[int, ...],
            cfg: AdaptConfig | None = None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The states the adapted policy visits and the actions it takes there, one full episode per seed.

    :param policy: the base policy (a zoo entry's ``policy``).
    :param world_model: its world model with the critic attached (``entry.load_world_model(kind)``).
    :param make_env: a fresh Gymnasium env per call.
    :param seeds: reset seeds (tuning seeds).
    :param cfg: the wrapper's settings (default ``AdaptConfig()``, as shipped).
    :return: ``(observations (N, obs_dim), env-space actions (N, act_dim), episode returns)``.
    """
    obs, actions, returns = [], [], []
    with ITPOPolicyWrapper(policy, world_model, cfg or AdaptConfig()) as wrapped:
        for seed in seeds:
            env = RecordingEnv(make_env())
            try:
                returns.append(run_episode(wrapped.predict, env, int(seed)).episode_return)
                cols = env.episode()
            finally:
                env.close()
            obs.append(cols["observations"][:-1])  # the state each action was taken in (not the final one)
            actions.append(cols["actions"])
    return np.concatenate(obs).astype(np.float32), np.concatenate(actions).astype(np.float32), returns


def regress(student: Any, obs: np.ndarray, actions: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
            cfg: DistillConfig, folder: Path) -> list[int]:
    """Fit ``student`` (a copy of the base, trained in place) to the collected actions; snapshot every
    ``eval_every`` steps into ``folder`` (:func:`itpo_wrap.improve_field.save_snapshot`).

    :param bounds: the env's action Box ``(low, high)``.
    :return: the snapshot steps.
    """
    adapter = make_adapter(student)
    x = torch.as_tensor(obs)
    y = torch.as_tensor(actions)
    if adapter.squashed:  # the wrapper acted in env units; the policy outputs [-1, 1]
        y = to_policy_torch(y, *(torch.as_tensor(np.asarray(b), dtype=torch.float32) for b in bounds))
    for p in adapter.params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(adapter.params, lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    steps = []
    with torch.inference_mode(False), torch.enable_grad():
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(len(x), (min(cfg.batch_size, len(x)),), generator=g)
            loss = torch.mean((adapter.forward(x[idx]) - y[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % cfg.eval_every == 0:
                save_snapshot(folder, step, [p.detach() for p in adapter.params])
                steps.append(step)
    return steps


def distill(entry: Any, kind: str, cfg: DistillConfig, folder: Path, progress: bool = True,
            adapt: AdaptConfig | None = None) -> tuple[Any | None, FieldCheck, dict[str, Any]]:
    """Collect, regress, check in the real env; the kept student (``None`` when no snapshot beat the base).

    :param entry: a zoo entry (``zoo.load``) with an offline base policy.
    :param kind: its world model used by the collecting wrapper.
    :param cfg: the settings.
    :param folder: the run folder (snapshots, ``result.json``).
    :param progress: print a line per finished stage and candidate.
    :param adapt: the collecting wrapper's settings (default ``AdaptConfig()``, as shipped).
    :return: ``(student or None, the check, facts for result.json)``.
    """
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    wm = entry.load_world_model(kind)
    obs, actions, returns = collect(entry.policy, wm, entry.make_env, cfg.seeds, adapt)
    collect_s = time.perf_counter() - start
    if progress:
        print(f"collected {len(obs)} states over {len(cfg.seeds)} adapted episodes (mean return "
              f"{np.mean(returns):.1f}) in {collect_s:.0f} s")
    student = copy.deepcopy(entry.policy)
    steps = regress(student, obs, actions, (entry.meta["action_low"], entry.meta["action_high"]), cfg, folder)
    params = make_adapter(student).params
    base_params = [p.detach().clone() for p in make_adapter(entry.policy).params]

    def policy_at(step: int) -> Any:
        if step == 0:
            return entry.policy
        with torch.no_grad():
            torch._foreach_copy_(params, load_snapshot(folder, step, params))
        return student

    check = field_check(policy_at, wm, entry.make_env, steps, cfg.seeds, cfg.z, progress=print if progress else None)
    kept = policy_at(check.chosen) if check.chosen else None
    with torch.no_grad():  # ||psi - psi_0|| / ||psi_0||, as itpo improve reports it
        drift = 0.0 if kept is None else float(
            torch.linalg.vector_norm(torch.cat([(p - b).flatten() for p, b in zip(params, base_params, strict=True)]))
            / torch.linalg.vector_norm(torch.cat([b.flatten() for b in base_params])))
    facts = {"accepted": kept is not None, "chosen": check.chosen, "states": len(obs),
             "adapted_returns": returns, "collect_s": round(collect_s, 1),
             "wall_s": round(time.perf_counter() - start, 1), "drift": drift, "kind": kind,
             "config": {**asdict(cfg), "seeds": list(cfg.seeds)}, "field": check.summary()}
    (folder / "result.json").write_text(json.dumps(facts, indent=2) + "\n")
    return kept, check, facts


def register(sub: Any) -> argparse.ArgumentParser:
    """Add ``distill`` to the ``itpo-lab`` subparsers (:mod:`itpo_lab.zoo_options`: it can write the zoo).

    :param sub: the subparsers object.
    :return: the new parser; :mod:`itpo_lab.cli` sets its function (:func:`itpo_lab.distill_command.cmd_distill`).
    """
    d = DistillConfig()
    p = sub.add_parser("distill", help="amortised ITPO: regress the base policy onto the wrapper's actions along its "
                                       "own episodes (tuning seeds), keep a snapshot only if it beats the base in the env",
                       description=__doc__.splitlines()[0])
    p.add_argument("--entry", required=True, help="zoo entry (itpo zoo list)")
    p.add_argument("--policy", default=None, help="the entry's offline policy (default: its default)")
    p.add_argument("--kind", default="meanflow", choices=kind_names(), help="the collecting wrapper's world model")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help="tuning seeds (never evaluation seeds)")
    p.add_argument("--steps", type=int, default=d.steps, help="regression steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="visited states per step")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between snapshots (candidates)")
    p.add_argument("--z", type=float, default=d.z, help="standard errors the paired gain must beat")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, help="run folder (default: runs/distill/<entry>-<policy>-<kind>)")
    p.add_argument("--zoo-dir", default=None, help="the zoo (default: the checkout's)")
    p.add_argument("--record", action="store_true", help="add the kept policy to the entry (never a loser)")
    p.add_argument("--name", default="distilled", help="its policy name in the entry")
    return p
