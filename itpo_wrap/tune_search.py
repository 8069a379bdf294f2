"""``itpo tune --backend ray-tune``: the step-size/persistence search scheduled by Ray Tune, a grid or ASHA.

Each candidate (the base, ``E = 0``, included) is one Ray Tune trial that runs the tuning seeds' episodes
in one process with one torch thread. With ``search="grid"`` every trial runs its episodes to the
full-fidelity cap (``max_steps``, ``None``: the env's own time limit). With ``search="asha"`` the episodes
are first cut at the low-fidelity rungs (``rungs``, e.g. 100 and 300 steps) and Ray Tune's ASHA scheduler
stops a candidate whose mean return at a rung falls below the best ``1/reduction_factor`` of the others
there; a candidate it keeps continues the same episodes (nothing is rerun) to the next rung, up to full
fidelity. The base runs straight to full fidelity and reports nothing before, so ASHA never stops it.

Ray Tune only schedules episodes. The choice is :func:`itpo_wrap.tune.decide`'s, the same function the
local and ``ray`` backends use, and it sees full-fidelity episodes only: a candidate ASHA stopped is listed
in :attr:`~itpo_wrap.tune.TuneReport.stopped` and cannot be chosen, and a candidate that reached full
fidelity but does not beat the base there is not chosen either. ASHA ranks by mean return; ``score`` (a
normalized score, increasing in the return) is applied here, for the choice.

Ray Tune is part of the optional extra (``pip install 'itpo-wrap[ray]'``), imported only when used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from itpo_wrap.config import AdaptConfig
from itpo_wrap.parallel import MAX_RETRIES, ray_session, require_ray
from itpo_wrap.rollout import Episode, episode_rungs
from itpo_wrap.tune import TuneReport, _check, _Objects, candidate_configs, decide

SEARCHES = ("grid", "asha")
#: the step caps ASHA's low rungs use when none are given (the full-fidelity rung is ``max_steps``)
DEFAULT_RUNGS = (100, 300)
TUNE_HINT = ("--backend ray-tune needs Ray Tune 2.41 or newer: pip install 'itpo-wrap[ray]' "
             "(or pip install 'ray[tune]>=2.41')")


@dataclass(frozen=True)
class TuneSearch:
    """How Ray Tune schedules the candidates.

    :param search: ``"grid"``: every candidate on full-fidelity episodes; ``"asha"``: low-fidelity rungs
        first, poor candidates stopped there.
    :param rungs: ASHA's low-fidelity step caps, increasing, each below ``max_steps``; ``()`` with ASHA
        takes :data:`DEFAULT_RUNGS`. Not for the grid.
    :param reduction_factor: ASHA keeps about ``1/reduction_factor`` of the candidates at each rung.
    :param storage_path: where Ray Tune keeps its experiment state; ``None``: a temporary folder, removed
        afterwards (nothing of it is needed: the result is the returned report).
    """

    search: str = "grid"
    rungs: tuple[int, ...] = ()
    reduction_factor: int = 3
    storage_path: str | None = None

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search={self.search!r}; choose one of {list(SEARCHES)}")
        object.__setattr__(self, "rungs", tuple(int(r) for r in self.rungs))
        if self.search == "grid" and self.rungs:
            raise ValueError(f"rungs={list(self.rungs)} apply to search='asha' only; drop them or pass search='asha'")
        if self.rungs and (self.rungs[0] < 1 or list(self.rungs) != sorted(set(self.rungs))):
            raise ValueError(f"rungs={list(self.rungs)} must be increasing step caps >= 1, e.g. 100 300")
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) \
                or self.reduction_factor < 2:
            raise ValueError(f"reduction_factor={self.reduction_factor!r} must be an integer >= 2 (ASHA keeps "
                             "1/reduction_factor of the candidates at each rung; 3 is usual)")

    def caps(self, max_steps: int | None) -> tuple[int | None, ...]:
        """The step cap of every rung, the full-fidelity one (``max_steps``) last.

        :param max_steps: the full-fidelity cap; ``None``: full episodes.
        """
        if self.search == "grid":
            return (max_steps,)
        rungs = self.rungs or DEFAULT_RUNGS
        if max_steps is not None and rungs[-1] >= max_steps:
            raise ValueError(f"rungs={list(rungs)} must stay below max_steps={max_steps}, the full-fidelity rung; "
                             "pass smaller rungs or a larger max_steps")
        return (*rungs, max_steps)


def require_tune() -> Any:
    """The ``ray.tune`` module, or an ``ImportError`` that says how to install it."""
    require_ray()
    try:
        from ray import tune
    except ImportError as err:
        raise ImportError(TUNE_HINT) from err
    if not hasattr(tune, "report") or not hasattr(tune, "RunConfig"):
        raise ImportError(TUNE_HINT)
    return tune


def search(
    policy: Any,
    world_model: Any,
    make_env: Callable[[], Any] | None,
    candidates: Sequence[AdaptConfig],
    seeds: Sequence[int],
    *,
    config: TuneSearch | None = None,
    max_steps: int | None = None,
    score: Callable[[float], float] | None = None,
    progress: Callable[[str], None] | None = None,
    address: str | None = None,
    workers: int | None = None,
    setup: Callable[[], tuple[Any, Any, Callable[[], Any]]] | None = None,
) -> TuneReport:
    """:func:`itpo_wrap.tune.tune` with Ray Tune scheduling the candidates (a grid, or ASHA on truncated
    episodes); the choice made here by :func:`itpo_wrap.tune.decide` from full-fidelity episodes only.

    :param policy: what :class:`~itpo_wrap.ITPOPolicyWrapper` takes (or ``None`` with ``setup``).
    :param world_model: the world model to plan with (or ``None`` with ``setup``).
    :param make_env: a fresh Gymnasium env per call (or ``None`` with ``setup``).
    :param candidates: configurations to try (the base, ``steps=0``, is always added).
    :param seeds: tuning seeds, at least one; not the seeds you evaluate on.
    :param config: grid or ASHA and its rungs (default: the grid).
    :param max_steps: the full-fidelity cap (reported as a risk when it cuts episodes); ``None``: full episodes.
    :param score: return -> score (increasing, e.g. a normalized score); identity when ``None``.
    :param progress: called with one line per candidate once the search ended.
    :param address: join the Ray cluster there (``"auto"``: this node's).
    :param workers: CPUs of a local Ray (not with ``address``); one trial runs per CPU.
    :param setup: a picklable callable returning ``(policy, world_model, make_env)``, called in each trial's
        process instead of shipping the objects (:class:`itpo_wrap.tune_command.ZooSetup` for zoo entries).
    :raises RuntimeError: when a trial failed (after Ray Tune's retries): no choice is made.
    """
    config = config or TuneSearch()
    seeds = tuple(int(s) for s in seeds)
    _check(seeds, candidates, max_steps)
    if setup is None and (world_model is None or make_env is None):
        raise ValueError("pass policy, world_model and make_env, or setup= a callable that returns the three")
    if address is not None and workers is not None:
        raise ValueError("pass address (join a cluster, its CPUs) or workers (a local Ray), not both")
    caps = config.caps(max_steps)
    configs = candidate_configs(candidates)
    labels = list(configs)
    shared = setup if setup is not None else _Objects(policy, world_model, make_env)  # type: ignore[arg-type]
    tune = require_tune()
    with ray_session(address, workers), _storage(config.storage_path) as storage:
        results = _fit(tune, shared, list(configs.values()), seeds, caps, config, storage)
    episodes: dict[str, list[Episode]] = {}
    stopped: dict[str, int] = {}
    errors: dict[str, Any] = {}
    for index, error, metrics in results:
        label = labels[index]
        if error is not None or not metrics:
            errors[label] = error or "reported nothing"
        elif metrics["rung"] == len(caps) - 1:
            episodes[label] = [Episode(**row) for row in json.loads(metrics["episodes"])]
        else:
            stopped[label] = caps[metrics["rung"]]  # type: ignore[assignment]  # a low rung: never None
    if errors:
        first = next(iter(errors.items()))
        raise RuntimeError(f"{len(errors)} of {len(labels)} trial(s) failed ({list(errors)}); no choice is made; "
                           f"the first error, {first[0]}: {first[1]}")
    report = decide(seeds, max_steps, configs, episodes, score or (lambda r: r), stopped)
    if progress is not None:
        for label in labels:
            progress(f"{label}: stopped at the {stopped[label]}-step rung" if label in stopped else
                     f"{label}: mean {report.mean(label):.1f} over seeds {list(seeds)}")
    return report


@contextlib.contextmanager
def _storage(path: str | None) -> Iterator[str]:
    if path is not None:
        yield str(Path(path).expanduser().resolve())  # Ray Tune takes absolute paths only
        return
    with tempfile.TemporaryDirectory(prefix="itpo-tune-") as tmp:
        yield tmp


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Ray Tune's older reporter, which ``verbose=0`` silences (its newer one prints a table regardless), and
    its logger at warnings: this command prints its own lines."""
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0" if before is None else before
    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def _fit(tune: Any, shared: Any, configs: list[AdaptConfig], seeds: tuple[int, ...], caps: tuple[int | None, ...],
         config: TuneSearch, storage: str) -> list[tuple[int, Any, dict[str, Any]]]:
    """Run the trials; ``(candidate index, error or None, last reported metrics)`` of each."""
    from ray.tune.schedulers import ASHAScheduler

    rf = config.reduction_factor
    scheduler = None
    if config.search == "asha":
        # rung i reports fidelity rf**i, which is ASHA's i-th milestone (grace period 1); the top rung reports
        # rf**(len(caps) - 1) = max_t, where ASHA stops a trial as finished without comparing it
        scheduler = ASHAScheduler(time_attr="fidelity", metric="mean_return", mode="max", max_t=rf ** (len(caps) - 1),
                                  grace_period=1, reduction_factor=rf, stop_last_trials=True)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, shared=shared, configs=configs, seeds=seeds, caps=caps, rf=rf), {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space={"candidate": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(name="itpo-tune", storage_path=storage, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=MAX_RETRIES)))
    with _quiet_tune():
        grid = tuner.fit()
    return [(int(r.config["candidate"]), r.error, dict(r.metrics or {})) for r in grid]


def _trial(trial_config: dict[str, Any], *, shared: Callable[[], tuple[Any, Any, Callable[[], Any]]],
           configs: list[AdaptConfig], seeds: tuple[int, ...], caps: tuple[int | None, ...], rf: int) -> None:
    """One candidate's trial: every seed's episode, continued rung by rung, the mean return reported at each
    (the base, index 0, only at the full-fidelity rung)."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    index = int(trial_config["candidate"])
    top = len(caps) - 1
    rungs = [top] if index == 0 else list(range(len(caps)))
    policy, world_model, make_env = shared()
    with contextlib.ExitStack() as stack:
        runs = [_episode_rungs(stack, policy, world_model, make_env, configs[index], seed, [caps[r] for r in rungs])
                for seed in seeds]
        for rung in rungs:
            eps = [next(run) for run in runs]
            tune.report({"fidelity": rf ** rung, "rung": rung, "steps": caps[rung] or 0,
                         "mean_return": float(np.mean([e.episode_return for e in eps])),
                         "episodes": json.dumps([e.as_row() for e in eps])})


def _episode_rungs(stack: contextlib.ExitStack, policy: Any, world_model: Any, make_env: Callable[[], Any],
                   cfg: AdaptConfig, seed: int, caps: list[int | None]) -> Iterator[Episode]:
    """A fresh wrapper and env for one seed (as :func:`itpo_wrap.tune._episode`), the episode yielded at
    each cap; closed with ``stack``."""
    from itpo_wrap.wrapper import ITPOPolicyWrapper

    env = make_env()
    stack.callback(env.close)
    wrapper = stack.enter_context(ITPOPolicyWrapper(policy, world_model, cfg))
    return episode_rungs(wrapper.predict, env, seed, caps)

