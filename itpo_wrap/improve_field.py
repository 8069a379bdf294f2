"""The real-env check of ``itpo improve``: episodes on tuning seeds decide which step, if any, is kept.

Why: the offline verdict pairs the improved policy and the base on held-out states *through the same world
model* the ascent exploited, so it cannot see the model being fooled. On the evaluation seeds of session 30
Walker2d medium's improved policy, accepted offline (held-out imagined gain far above 2 SE), fell in every
episode (-97.4 normalized). ``itpo tune`` already answers this for inference-time settings: run the
candidates and the base (doing nothing) on seeded episodes and keep only a candidate that beats the base.
Here the candidates are the parameters at every validated step of the run (``eval_every``: early steps
are closer to the base, late ones further along J), each deployed as the user would deploy it (the
wrapper at ``steps=0``, the base action mapping exactly), on ``ImproveConfig.env_seeds`` full episodes.

The rule (:func:`choose_step`): the candidate with the highest mean return among those whose gain over the
base, paired by seed, exceeds ``verdict_z`` standard errors; the base (step ``0``) when none does. Tune on
seeds you will not evaluate on (the project's evaluation seeds are 1000-1009; the default here is 0-9).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.improve_run import std_error
from itpo_wrap.rollout import run_episode
from itpo_wrap.wrapper import ITPOPolicyWrapper

SNAPSHOTS = "snapshots"  # the run folder's subfolder: the parameters at every validated step


def save_snapshot(folder: Path, step: int, params: Sequence[torch.Tensor]) -> None:
    """Keep the parameters validated at ``step`` (a resumed run rewrites the same file with the same bytes)."""
    path = folder / SNAPSHOTS / f"step_{step:07d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save([p.detach().cpu().clone() for p in params], tmp)
    tmp.replace(path)


def snapshot_steps(folder: Path, up_to: int) -> list[int]:
    """The validated steps with a snapshot, at most ``up_to`` (a longer earlier run's later files are ignored)."""
    steps = [int(p.stem.split("_")[1]) for p in (folder / SNAPSHOTS).glob("step_*.pt")]
    return sorted(s for s in steps if 0 < s <= up_to)


def load_snapshot(folder: Path, step: int, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters kept at ``step``, on the device and dtype of ``like``."""
    saved = torch.load(folder / SNAPSHOTS / f"step_{step:07d}.pt", map_location="cpu", weights_only=True)
    return [s.to(device=p.device, dtype=p.dtype) for s, p in zip(saved, like, strict=True)]


@dataclass(frozen=True)
class FieldCheck:
    """The real-env episodes and the choice made from them.

    :ivar seeds: the tuning seeds (``env.reset(seed=...)``), one full episode each per candidate.
    :ivar returns: candidate step -> its episode return per seed, in ``seeds`` order; step ``0`` is the base.
    :ivar falls: candidate step -> episodes ended by the env's termination (a fall), not the time limit.
    :ivar z: standard errors the paired gain had to beat.
    :ivar chosen: the kept step; ``0`` when no candidate beat the base.
    """

    seeds: tuple[int, ...]
    returns: dict[int, list[float]]
    falls: dict[int, int]
    z: float
    chosen: int

    def gain(self, step: int) -> tuple[float, float]:
        """The mean gain of ``step`` over the base, paired by seed, and its standard error."""
        return paired_gain(self.returns[step], self.returns[0])

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts (``result.json``, the checkpoint's record)."""
        return {"seeds": list(self.seeds), "z": self.z, "chosen": self.chosen,
                "candidates": {str(s): {"mean": float(np.mean(r)), "gain": self.gain(s)[0], "gain_se": self.gain(s)[1],
                                        "falls": self.falls[s]} for s, r in self.returns.items()}}

    def describe(self) -> str:
        """The decision in words, with every candidate's paired gain."""
        base = float(np.mean(self.returns[0]))
        lines = [f"  step {s}: {np.mean(r):.1f} ({self.gain(s)[0]:+.1f} +- {self.gain(s)[1]:.1f} vs base, "
                 f"{self.falls[s]} falls)" for s, r in self.returns.items() if s != 0]
        head = (f"real env, seeds {list(self.seeds)}: kept step {self.chosen} ({np.mean(self.returns[self.chosen]):.1f} "
                f"vs base {base:.1f})" if self.chosen else
                f"real env, seeds {list(self.seeds)}: no step beat the base ({base:.1f}, {self.falls[0]} falls) by "
                f"{self.z:g} standard errors; the base is kept")
        return "\n".join([head, *lines])


def paired_gain(new: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    """Mean of ``new - base`` seed by seed and its standard error (``0`` for one seed)."""
    d = torch.as_tensor(new, dtype=torch.float64) - torch.as_tensor(base, dtype=torch.float64)
    return float(d.mean()), std_error(d)


def choose_step(returns: dict[int, list[float]], z: float) -> int:
    """The step with the highest mean among those beating the base (step ``0``) by more than ``z`` standard
    errors of the paired gain; ``0`` when none does (a tie goes to the earlier step: closer to the base)."""
    winners = {}
    for step, r in returns.items():
        gain, se = paired_gain(r, returns[0])
        if step != 0 and gain > z * se:  # z, se >= 0: a winner's gain is positive
            winners[step] = float(np.mean(r))
    return max(sorted(winners), key=lambda s: winners[s]) if winners else 0


def field_check(policy_at: Callable[[int], Any], world_model: Any, make_env: Callable[[], Any],
                steps: Sequence[int], seeds: Sequence[int], z: float,
                progress: Callable[[str], None] | None = None) -> FieldCheck:
    """Run the base and the policy at every step of ``steps`` on the same seeded full episodes; choose.

    :param policy_at: step -> the policy holding that step's parameters (``0``: the base). Called once per
        step, before that step's episodes; the returned object is only read.
    :param world_model: the run's world model (the wrapper at ``steps=0`` holds it but never calls it).
    :param make_env: a fresh Gymnasium env per call.
    :param steps: the candidate steps (validated steps of the run).
    :param seeds: tuning seeds, at least two (a standard error needs two).
    :param z: standard errors the paired gain must beat (``ImproveConfig.verdict_z``).
    :param progress: called with one line per finished candidate.
    """
    act = AdaptConfig(steps=0, model_check="off")  # the base action exactly: how the saved policy is deployed
    returns: dict[int, list[float]] = {}
    falls: dict[int, int] = {}
    for step in (0, *steps):
        episodes = []
        with ITPOPolicyWrapper(policy_at(step), world_model, act) as wrapped:
            for seed in seeds:
                env = make_env()
                try:
                    episodes.append(run_episode(wrapped.predict, env, int(seed)))
                finally:
                    env.close()
        returns[step] = [e.episode_return for e in episodes]
        falls[step] = sum(e.terminated for e in episodes)
        if progress is not None:
            progress(f"step {step}: mean return {np.mean(returns[step]):.1f} over {len(seeds)} seeds, {falls[step]} falls")
    return FieldCheck(tuple(int(s) for s in seeds), returns, falls, z, choose_step(returns, z))
