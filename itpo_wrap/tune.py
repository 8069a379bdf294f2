"""``itpo tune``: choose adaptation settings on tuning seeds, where doing nothing is always a candidate.

A user's own env, policy and world model, or a zoo entry: every candidate ``AdaptConfig`` and the base
policy (``E = 0``, the base action exactly) run the same seeded episodes; the winner is the candidate with
the highest mean score **that beats the base** on those seeds, and when none does the result is ``E = 0``,
said in words. A candidate that lost to the base is never recorded as tuned (the failure that made this a
library command: a benchmark script once recorded a step size that had already lost 8.4 vs 28.6).

Capped tuning episodes are a risk, reported as one: a 300-step cap hid a fall at step 300 that full
episodes showed; the report counts the episodes the cap cut short.

Tune on seeds you will not evaluate on (the evaluation seeds of ``docs/results.md`` are 1000-1009).

Whoever schedules the episodes (here, Ray tasks, or Ray Tune's grid and ASHA in
:mod:`itpo_wrap.tune_search`), the choice is made by one function, :func:`decide`, from full-fidelity
episodes only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from itpo_wrap.config import AdaptConfig
from itpo_wrap.parallel import run_tasks
from itpo_wrap.rollout import Episode, run_episode
from itpo_wrap.world_model.protocol import WorldModelLike

BASE = "base (E=0)"


@dataclass(frozen=True)
class TuneReport:
    """What ``tune`` ran and chose.

    :ivar seeds: the tuning seeds (``env.reset(seed=...)``).
    :ivar max_steps: the episode cap, ``None`` for full episodes.
    :ivar scores: per candidate label (``BASE`` included), the per-seed scores.
    :ivar configs: per candidate label, its ``AdaptConfig`` (the base's has ``steps=0``).
    :ivar chosen: the winning label (``BASE`` when no candidate beat the base).
    :ivar capped: per label, how many of its episodes the cap cut short.
    :ivar stopped: candidates a search stopped on truncated episodes before the full-fidelity rung (ASHA,
        :mod:`itpo_wrap.tune_search`): label -> the step cap of the rung it stopped at. They have no
        ``scores`` and cannot be chosen.
    """

    seeds: tuple[int, ...]
    max_steps: int | None
    scores: dict[str, list[float]]
    configs: dict[str, AdaptConfig]
    chosen: str
    capped: dict[str, int]
    stopped: dict[str, int] = field(default_factory=dict)

    @property
    def chosen_config(self) -> AdaptConfig:
        return self.configs[self.chosen]

    @property
    def beat_base(self) -> bool:
        return self.chosen != BASE

    def mean(self, label: str) -> float:
        return float(np.mean(self.scores[label]))

    def summary(self) -> str:
        """The decision in words, with every mean and the cap's risk."""
        base = self.mean(BASE)
        lines = [f"{label}: {self.mean(label):.1f} ({self.mean(label) - base:+.1f} vs base)"
                 for label in self.scores if label != BASE]
        head = (f"chose {self.chosen}: {self.mean(self.chosen):.1f} vs base {base:.1f} on seeds {list(self.seeds)}"
                if self.beat_base else
                f"no setting beat the base ({base:.1f}) on seeds {list(self.seeds)}: chose E = 0, the base action "
                "exactly (wrapping cannot help here with these settings)")
        out = [head, *("  " + line for line in lines)]
        if self.stopped:
            out.append(f"{len(self.stopped)} candidate(s) stopped early on truncated episodes, not chosen: "
                       + "; ".join(f"{label} (at {cap} steps)" for label, cap in self.stopped.items())
                       + ". A setting that starts slowly and ends well may be among them.")
        cut = sum(self.capped.values())
        if self.max_steps is not None and cut:
            out.append(f"RISK: {cut} tuning episode(s) were cut at the {self.max_steps}-step cap; a fall after the "
                       "cap is invisible to tuning. Tune on full episodes where compute allows.")
        return "\n".join(out)


def candidate_label(cfg: AdaptConfig, default: AdaptConfig | None = None) -> str:
    """The fields where ``cfg`` differs from ``default`` (``AdaptConfig()``), e.g. ``step_size=0.0001``."""
    ref = (default or AdaptConfig()).to_dict()
    diff = [f"{k}={v}" for k, v in cfg.to_dict().items() if ref.get(k) != v and k not in ("backend", "device")]
    return ", ".join(diff) or "defaults"


@dataclass(frozen=True)
class _Objects:
    """A setup of objects already loaded (what ``tune``'s first three arguments are)."""

    policy: Any
    world_model: Any
    make_env: Callable[[], Any]

    def __call__(self) -> tuple[Any, Any, Callable[[], Any]]:
        return self.policy, self.world_model, self.make_env


def _episode(setup: Callable[[], tuple[Any, Any, Callable[[], Any]]],
             task: tuple[AdaptConfig, int, int | None]) -> Episode:
    """One tuning episode (a task of :func:`~itpo_wrap.parallel.run_tasks`): a fresh wrapper, so no adapted
    state crosses episodes, on a fresh env."""
    from itpo_wrap.wrapper import ITPOPolicyWrapper

    cfg, seed, max_steps = task
    policy, world_model, make_env = setup()
    env = make_env()
    try:
        with ITPOPolicyWrapper(policy, world_model, cfg) as w:
            return run_episode(w.predict, env, seed, max_steps=max_steps)
    finally:
        env.close()


def _check(seeds: tuple[int, ...], candidates: Sequence[AdaptConfig], max_steps: int | None) -> None:
    if not seeds:
        raise ValueError("seeds is empty; pass at least one tuning seed (e.g. 0 1), distinct from evaluation seeds")
    if not candidates:
        raise ValueError("candidates is empty; pass at least one AdaptConfig to compare with the base")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps={max_steps} must be >= 1, or None for full episodes")
    for c in candidates:
        if not isinstance(c, AdaptConfig):
            raise TypeError(f"candidates must be AdaptConfig objects, got a {type(c).__name__}")


def tune(
    policy: Any,
    world_model: WorldModelLike | None,
    make_env: Callable[[], Any] | None,
    candidates: Sequence[AdaptConfig],
    seeds: Sequence[int],
    *,
    max_steps: int | None = None,
    score: Callable[[float], float] | None = None,
    progress: Callable[[str], None] | None = None,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    setup: Callable[[], tuple[Any, Any, Callable[[], Any]]] | None = None,
) -> TuneReport:
    """Run the base and every candidate on ``seeds``; choose the best candidate that beats the base.

    Every (candidate, seed) episode is one task of :func:`~itpo_wrap.parallel.run_tasks`: here, in order,
    or one Ray task each with ``backend="ray"``; the choice is made here once every episode returned, by
    the same rule either way.

    :param policy: what :class:`~itpo_wrap.ITPOPolicyWrapper` takes (SB3 model, torch actor, adapter).
    :param world_model: the world model to plan with.
    :param make_env: a fresh Gymnasium env per call.
    :param candidates: configurations to try (the base, ``steps=0``, is always added).
    :param seeds: tuning seeds, at least one; not the seeds you evaluate on.
    :param max_steps: cap each episode (cheaper, and reported as a risk); ``None``: full episodes.
    :param score: return -> score (e.g. a zoo entry's normalized score); identity when ``None``.
    :param progress: called with one line per finished candidate.
    :param backend: ``"local"`` or ``"ray"`` (:mod:`itpo_wrap.parallel`).
    :param address: the Ray cluster to join (``ray`` only).
    :param workers: CPUs of a local Ray (``ray`` only).
    :param setup: instead of ``policy``, ``world_model`` and ``make_env`` (pass ``None`` for them): a
        picklable callable returning the three, called where the episodes run (in each Ray worker), so
        nothing large is shipped.
    """
    seeds = tuple(int(s) for s in seeds)
    _check(seeds, candidates, max_steps)
    if setup is None and (world_model is None or make_env is None):
        raise ValueError("pass policy, world_model and make_env, or setup= a callable that returns the three")
    to_score = score or (lambda r: r)
    configs = candidate_configs(candidates)
    shared = setup if setup is not None else _Objects(policy, world_model, make_env)  # type: ignore[arg-type]
    labels = [label for label in configs for _ in seeds]
    tasks = [(cfg, seed, max_steps) for cfg in configs.values() for seed in seeds]
    episodes: dict[str, dict[int, Episode]] = {label: {} for label in configs}
    for i, ep in run_tasks(_episode, tasks, shared=shared, backend=backend, address=address, workers=workers):
        label = labels[i]
        episodes[label][i % len(seeds)] = ep
        if progress is not None and len(episodes[label]) == len(seeds):
            mean = np.mean([to_score(e.episode_return) for e in episodes[label].values()])
            progress(f"{label}: mean {mean:.1f} over seeds {list(seeds)}")
    return decide(seeds, max_steps, configs, {label: [eps[j] for j in range(len(seeds))]
                                              for label, eps in episodes.items()}, to_score)


def candidate_configs(candidates: Sequence[AdaptConfig]) -> dict[str, AdaptConfig]:
    """The base (``BASE``: the first candidate with ``steps=0``) and every candidate, by label, in order.

    :param candidates: the configurations to try, each once.
    """
    configs: dict[str, AdaptConfig] = {BASE: dataclasses.replace(candidates[0], steps=0)}
    for c in candidates:
        label = candidate_label(c)
        if label in configs:
            raise ValueError(f"two candidates are the same configuration ({label}); pass each once")
        configs[label] = c
    return configs


def decide(seeds: tuple[int, ...], max_steps: int | None, configs: dict[str, AdaptConfig],
           episodes: Mapping[str, Sequence[Episode]], score: Callable[[float], float],
           stopped: Mapping[str, int] | None = None) -> TuneReport:
    """The one place a tuning choice is made, whoever ran the episodes: by :func:`choose` over the
    full-fidelity episodes (one per seed, in ``seeds`` order, each run to ``max_steps``).

    :param seeds: the tuning seeds.
    :param max_steps: the cap of these episodes (``None``: full episodes).
    :param configs: every candidate by label, ``BASE`` included (:func:`candidate_configs`).
    :param episodes: label -> its full-fidelity episodes; the labels a search stopped early are absent.
    :param score: return -> score.
    :param stopped: label -> the step cap at which a search stopped it (not chosen, reported).
    :raises RuntimeError: when the base or a candidate that was not stopped lacks its episodes: no choice
        is made from an incomplete comparison.
    """
    stopped = dict(stopped or {})
    if BASE in stopped:
        raise RuntimeError("the base (E = 0) was stopped before full fidelity; no choice is made without it")
    missing = [label for label in configs if label not in stopped
               and [e.seed for e in episodes.get(label, ())] != list(seeds)]
    if missing:
        raise RuntimeError(f"no full-fidelity episodes on seeds {list(seeds)} for {missing}; no choice is made")
    scores = {label: [float(score(e.episode_return)) for e in episodes[label]] for label in configs
              if label not in stopped}
    capped = {label: sum(max_steps is not None and e.length >= max_steps and not e.terminated
                         for e in episodes[label]) for label in scores}
    return TuneReport(seeds, max_steps, scores, configs, choose(scores), capped, stopped)


def choose(scores: dict[str, list[float]]) -> str:
    """The label with the highest mean among those whose mean beats the base's; ``BASE`` when none does
    (a tie goes to the base: the same score for no latency)."""
    base = float(np.mean(scores[BASE]))
    better = {k: float(np.mean(v)) for k, v in scores.items() if k != BASE and float(np.mean(v)) > base}
    return max(better, key=lambda k: better[k]) if better else BASE
