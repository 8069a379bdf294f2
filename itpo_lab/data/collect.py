"""D4RL-style dataset recipes, generated locally and deterministically from committed policies.

Levels follow D4RL (Fu et al. 2020): ``random`` (uniform actions), ``medium`` and ``expert``
(samples of the behaviour checkpoints, non-deterministic like Minari's ``mujoco/*`` data),
``medium-replay`` (the online run's replay buffer up to the medium checkpoint, committed as
``medium_replay.npz``), ``medium-expert`` (medium and expert episodes together).

Determinism: env resets are seeded per episode, uniform actions come from a seeded NumPy
generator, policy sampling from a seeded torch generator with one torch thread; the same seed
gives identical arrays.

Reference scores: every dataset stores the env's fixed ``ref_min_score`` / ``ref_max_score`` from
:mod:`itpo_lab.data.reference` (our own random and SAC-expert returns, measured once), never values
measured by this run, so the normalized scale does not move with ``--transitions`` or ``--seed``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from itpo_lab.data.behavior import load_episodes
from itpo_lab.data.reference import MEASURED_SEED, MEASURED_TRANSITIONS, reference_scores
from itpo_lab.paths import policies_root
from itpo_wrap.data.minari import normalized_score, write_dataset
from itpo_wrap.rollout import RecordingEnv, run_episode

ENVS: dict[str, str] = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")
Episode = dict[str, np.ndarray]


def dataset_id(env: str, level: str, version: int = 0) -> str:
    """``itpo/<env>/<level>-v<version>``, e.g. ``itpo/hopper/medium-replay-v0``."""
    return f"itpo/{env}/{level}-v{version}"


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What ``itpo-lab collect`` makes.

    :param env: short env name, one of :data:`ENVS`.
    :param levels: levels to write, from :data:`LEVELS`.
    :param transitions: minimum transitions of the sampled levels (whole episodes are kept).
    :param seed: base seed of env resets and action sampling.
    :param behavior_dir: folder of the committed behaviour artefacts (``policies/behavior/<env>``).
    :param overwrite: replace datasets that already exist.
    :param version: dataset version suffix.
    """

    env: str
    levels: tuple[str, ...] = LEVELS
    transitions: int = 200_000
    seed: int = 0
    behavior_dir: str = ""
    overwrite: bool = False
    version: int = 0

    def __post_init__(self) -> None:
        if self.env not in ENVS:
            raise ValueError(f"env={self.env!r} has no recipe; choose one of {sorted(ENVS)}")
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels:
            raise ValueError(f"levels={self.levels!r}: unknown {bad}; choose from {LEVELS}")
        if self.transitions < 1:
            raise ValueError(f"transitions={self.transitions} must be >= 1")

    @property
    def env_id(self) -> str:
        return ENVS[self.env]

    @property
    def behavior_path(self) -> Path:
        if self.behavior_dir:
            return Path(self.behavior_dir)
        return policies_root() / "behavior" / self.env


def rollout(env_id: str, act: Callable[[np.ndarray], np.ndarray], transitions: int, seed: int) -> list[Episode]:
    """Whole episodes of ``act`` until at least ``transitions`` steps; episode ``i`` resets with ``seed + i``.
    The episodes run in the product's runner (``itpo_wrap.rollout.run_episode``), recorded by ``RecordingEnv``;
    ``act`` sees one env's observation and its action is recorded as float32, as the env received it."""

    def predict(observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return np.asarray(act(observation[0]), dtype=np.float32)[None], state

    env = RecordingEnv(gym.make(env_id))
    episodes: list[Episode] = []
    total = 0
    try:
        while total < transitions:
            ep_seed = seed + len(episodes)
            run_episode(predict, env, ep_seed, deterministic=False)
            ep = env.episode()
            ep["seed"] = np.asarray(ep_seed)
            episodes.append(ep)
            total += len(ep["actions"])
    finally:
        env.close()
    return episodes


def random_episodes(env_id: str, transitions: int, seed: int) -> list[Episode]:
    """Uniform actions over the Box (D4RL ``random``)."""
    space = gym.make(env_id).action_space
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"{env_id} has a {type(space).__name__} action space; the random recipe needs a Box")
    rng = np.random.default_rng(seed)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return rollout(env_id, lambda _obs: rng.uniform(low, high), transitions, seed)


def policy_episodes(env_id: str, model_path: str | Path, transitions: int, seed: int) -> list[Episode]:
    """Non-deterministic samples of an SB3 SAC checkpoint (Minari's ``mujoco/*`` recipe)."""
    from itpo_wrap.formats.sb3 import load_sb3_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bitwise-identical matmuls, hence identical samples
    try:
        torch.manual_seed(seed)
        model = load_sb3_model(model_path, "sac")  # SAC.load on the CPU, eval mode (predict sets it anyway)
        return rollout(env_id, lambda obs: model.predict(obs, deterministic=False)[0], transitions, seed)
    finally:
        torch.set_num_threads(threads)


def _returns(episodes: Sequence[Episode]) -> np.ndarray:
    return np.array([float(np.sum(ep["rewards"])) for ep in episodes])


def summarize(episodes: Sequence[Episode], ref_min: float, ref_max: float) -> dict[str, Any]:
    """Transitions, episodes, mean/std return and mean normalized score (x100) of a level."""
    rets = _returns(episodes)
    return {
        "transitions": int(sum(len(ep["actions"]) for ep in episodes)),
        "episodes": len(episodes),
        "return_mean": float(rets.mean()),
        "return_std": float(rets.std()),
        "normalized_score": float(normalized_score(rets, ref_min, ref_max).mean()),
    }


def collect(cfg: CollectConfig, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Generate and write the datasets of ``cfg``; return a summary row per level.

    Every dataset, and every summary row, gets the env's fixed reference scores
    (:func:`itpo_lab.data.reference.reference_scores`), whatever the budget or seed. Only the levels
    asked for are generated (``medium-expert`` reuses the medium and expert episodes); when the
    ``random`` or ``expert`` episodes are made, their mean return is logged beside the fixed
    reference as a check (with the committed behaviour policies at the measuring run's seed and
    budget, seed 0 and 200,000 transitions, the two agree; a mismatch there is logged as a warning).

    :param cfg: what to make.
    :param log: receives one line per check and per dataset written.
    :return: ``{level: row}`` with transitions, episodes, return mean/std, normalized score,
        dataset id, the fixed ``ref_min_score`` / ``ref_max_score`` and seconds.
    """
    bdir = cfg.behavior_path
    for name in ("expert.zip", "medium.zip", "medium_replay.npz"):
        if not (bdir / name).exists():
            raise FileNotFoundError(
                f"{bdir / name} is missing; train and export the behaviour policy first "
                f"(python policies/sac_behavior.py --env {cfg.env_id} --run-dir runs/behavior/{cfg.env})"
            )
    ref = reference_scores(cfg.env)
    ref_min, ref_max = ref.ref_min_score, ref.ref_max_score
    made, timings = _make_episodes(cfg)
    _check_references(cfg, made, ref_min, ref_max, log)
    card = json.loads((bdir / "card.json").read_text()) if (bdir / "card.json").exists() else {}
    summary: dict[str, dict[str, Any]] = {}
    for level in cfg.levels:
        did = dataset_id(cfg.env, level, cfg.version)
        t0 = time.perf_counter()
        write_dataset(
            did, made[level], env_id=cfg.env_id, ref_min_score=ref_min, ref_max_score=ref_max,
            algorithm_name=_algorithm(level, card),
            description=f"D4RL-style '{level}' data on {cfg.env_id}, made by itpo-wrap's recipe "
                        f"(seed {cfg.seed}, >= {cfg.transitions} transitions for sampled levels). Reference "
                        "scores: itpo-wrap's fixed ones (100 = our own SAC expert's mean return, not D4RL's).",
            overwrite=cfg.overwrite,
        )
        row: dict[str, Any] = dict(summarize(made[level], ref_min, ref_max))
        row.update(dataset_id=did, ref_min_score=ref_min, ref_max_score=ref_max,
                   seconds=timings.get(level, 0.0) + time.perf_counter() - t0)
        summary[level] = row
        log(f"{did}: {row['transitions']} transitions, {row['episodes']} episodes, "
            f"return {row['return_mean']:.1f} +- {row['return_std']:.1f}, score {row['normalized_score']:.1f}")
    return summary


def _make_episodes(cfg: CollectConfig) -> tuple[dict[str, list[Episode]], dict[str, float]]:
    """The episodes of the levels ``cfg`` asks for (and of those ``medium-expert`` is made of), and the
    seconds each sampled level took.

    Each level has its own seeds (seed, seed + 1e6, seed + 2e6) and its own generators, so skipping
    a level leaves the others' episodes bitwise unchanged.
    """
    bdir, levels = cfg.behavior_path, set(cfg.levels)
    timings: dict[str, float] = {}

    def timed(level: str, fn: Callable[[], list[Episode]]) -> list[Episode]:
        t0 = time.perf_counter()
        out = fn()
        timings[level] = time.perf_counter() - t0
        return out

    made: dict[str, list[Episode]] = {}
    if "random" in levels:
        made["random"] = timed("random", lambda: random_episodes(cfg.env_id, cfg.transitions, cfg.seed))
    if {"expert", "medium-expert"} & levels:
        made["expert"] = timed("expert", lambda: policy_episodes(cfg.env_id, bdir / "expert.zip", cfg.transitions, cfg.seed + 1_000_000))
    if {"medium", "medium-expert"} & levels:
        made["medium"] = timed("medium", lambda: policy_episodes(cfg.env_id, bdir / "medium.zip", cfg.transitions, cfg.seed + 2_000_000))
    if "medium-replay" in levels:
        made["medium-replay"] = load_episodes(bdir / "medium_replay.npz")
    if "medium-expert" in levels:
        made["medium-expert"] = made["medium"] + made["expert"]
    return made, timings


def _check_references(cfg: CollectConfig, made: dict[str, list[Episode]], ref_min: float, ref_max: float,
                      log: Callable[[str], None]) -> None:
    """Log the random and expert episodes' mean return beside the fixed reference it stands for (a check
    only: what is written is the fixed value), with a warning where the measuring run's own seed and
    budget no longer reproduce it."""
    for level, name, fixed in (("random", "ref_min_score", ref_min), ("expert", "ref_max_score", ref_max)):
        if level in made:
            measured = float(_returns(made[level]).mean())
            log(f"{cfg.env} {level}: measured mean return {measured:.3f} over {len(made[level])} episodes vs fixed "
                f"{name} {fixed:.3f} (itpo_lab/data/reference.py; stored: the fixed value)")
            if (cfg.seed, cfg.transitions) == (MEASURED_SEED, MEASURED_TRANSITIONS) and not math.isclose(measured, fixed, rel_tol=1e-9):
                # the measuring run's own settings: a gap means the policy or the env changed since
                log(f"WARNING: {cfg.env} {level}: the measuring run's seed and budget no longer reproduce {name}; "
                    f"check {cfg.behavior_path} and the env version against reference_scores({cfg.env!r}).measurement()")


def _algorithm(level: str, card: dict[str, Any]) -> str:
    steps = card.get("selection", {})
    return {
        "random": "uniform random actions",
        "medium": f"SB3 SAC checkpoint at {steps.get('medium_step', '?')} steps, stochastic samples",
        "expert": f"SB3 SAC checkpoint at {steps.get('expert_step', '?')} steps, stochastic samples",
        "medium-replay": f"SB3 SAC replay buffer up to {steps.get('medium_step', '?')} steps",
        "medium-expert": "medium and expert episodes concatenated",
    }[level]
