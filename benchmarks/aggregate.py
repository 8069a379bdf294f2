"""Aggregate the paired results over datasets with rliable's statistics (Agarwal et al. 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice"): the interquartile mean (IQM) and the mean
of normalized scores and of paired gains, with stratified-bootstrap 95% intervals.

    .venv/bin/python benchmarks/summarize.py     # writes the "Aggregate (rliable)" section of docs/results.md

A score matrix is ``(runs x tasks)``, rliable's layout: a task is a dataset, a run an evaluation seed. The
bootstrap resamples the runs with replacement *within* each task and keeps the tasks fixed (rliable's
``StratifiedBootstrap`` with ``task_bootstrap=False``); the interval is the 2.5-97.5 percentile range.

Why the resampling loop is ours and only the metrics (``rliable.metrics.aggregate_iqm``/``aggregate_mean``) are
rliable's by default: rliable 1.2.0's ``library.get_interval_estimates`` builds on ``arch``, and arch < 8 does
not import under pandas >= 3 while arch 8 rejects the ``random_state`` rliable passes; and even where it runs,
its resamples come from NumPy's *global* ``np.random.choice``, so ``random_state`` does not make them
reproducible. The loop below is the same algorithm drawn from a seeded ``numpy.random.Generator``;
``backend="rliable"`` runs rliable's own ``get_interval_estimates`` (global RNG seeded and restored) to
cross-check it where arch imports.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'itpo-wrap[stats]'"
# bootstrap resamples: on the results of 2026-11, another bootstrap seed moves an interval end by <= 5% of
# the interval's width (<= 0.4 score points) and 20,000 resamples agree to 0.1; seconds of CPU, not minutes
REPS = 2000
SEED = 0
METRICS = {"iqm": "aggregate_iqm", "mean": "aggregate_mean"}
KINDS = {"diffusion": "diffusion", "meanflow": "MeanFlow"}  # world-model kinds of the headline, display names


def _rliable(module: str = "metrics") -> ModuleType:
    """Import ``rliable.<module>`` on first use, so summarize.py runs (without this section) where it is absent.

    :param module: ``"metrics"`` (needs numpy and scipy only) or ``"library"`` (needs ``arch`` too).
    """
    import importlib

    try:
        return importlib.import_module(f"rliable.{module}")
    except ImportError as exc:
        raise ImportError(f"the aggregate statistics need rliable ({exc}): {INSTALL_HINT}") from exc
    except Exception as exc:  # arch 7 raises TypeError on import under pandas >= 3
        raise ImportError(f"rliable.{module} does not import here ({type(exc).__name__}: {exc}); its 'arch' "
                          "dependency needs pandas < 3 (arch 8 drops the random_state rliable 1.2 passes): "
                          "use backend='numpy'") from exc


def check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a float ``(runs x tasks)`` matrix, or a ``ValueError`` saying what is wrong.

    :param scores: one score per (run, task); every cell must be finite.
    :param name: what to call the matrix in the error.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty (runs x tasks) matrix, got shape {x.shape}: one row per "
                         "seed, one column per dataset (a single dataset is one column, x[:, None])")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        run, task = bad[0]
        raise ValueError(f"{name} has {len(bad)} non-finite value(s), the first {x[run, task]} at run {run}, "
                         f"task {task}: every task needs a score on every run; keep the seeds all tasks "
                         "share (common_seeds) or leave the task out")
    return x


def paired_gains(treatment: Any, control: Any) -> np.ndarray:
    """Per-(seed, dataset) differences ``treatment - control`` of two matrices on the same seeds.

    :param treatment: ``(runs x tasks)`` scores of the wrapped policy.
    :param control: the base policy's, same seeds in the same rows, same datasets in the same columns.
    """
    t, c = check_scores(treatment, "treatment"), check_scores(control, "control")
    if t.shape != c.shape:
        raise ValueError(f"paired matrices must have one shape, got treatment {t.shape} and control {c.shape}: "
                         "build both with score_matrix on the same seeds and tasks")
    return t - c


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval over a ``runs x tasks`` matrix."""

    point: float
    low: float
    high: float
    runs: int
    tasks: int

    def text(self, signed: bool = False) -> str:
        """``"58.3 [55.1, 61.0]"``, with explicit signs for a gain."""
        f = "{:+.1f}" if signed else "{:.1f}"
        return f"{f.format(self.point)} [{f.format(self.low)}, {f.format(self.high)}]"


def metric_fn(metric: str) -> Callable[[np.ndarray], float]:
    """rliable's aggregate function for ``metric``.

    :param metric: ``"iqm"`` (25% trimmed mean of all cells) or ``"mean"`` (mean of the per-task means).
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {sorted(METRICS)}")
    return getattr(_rliable("metrics"), METRICS[metric])


def stratified_bootstrap(scores: Any, metric: str = "iqm", *, reps: int = REPS, seed: int = SEED,
                         size: float = 0.95, backend: str = "numpy") -> Estimate:
    """Point estimate of ``metric`` over all runs and tasks with a stratified-bootstrap percentile interval.

    :param scores: ``(runs x tasks)`` matrix (:func:`check_scores`).
    :param metric: ``"iqm"`` or ``"mean"``.
    :param reps: bootstrap resamples.
    :param seed: the resampling seed; the same seed gives the same interval.
    :param size: interval coverage.
    :param backend: ``"numpy"`` (the loop here) or ``"rliable"`` (``rliable.library.get_interval_estimates``).
    """
    x, fn = check_scores(scores), metric_fn(metric)
    if reps < 1 or not 0 < size < 1:
        raise ValueError(f"reps={reps} must be >= 1 and size={size} in (0, 1)")
    runs, tasks = x.shape
    if backend == "numpy":
        rng = np.random.default_rng(seed)
        # per resample, each cell (i, j) takes run idx[i, j] of task j: runs resampled within each task
        idx = rng.integers(0, runs, size=(reps, runs, tasks))
        samples = np.take_along_axis(np.broadcast_to(x, idx.shape), idx, axis=1)
        stats = np.fromiter((fn(s) for s in samples), dtype=np.float64, count=reps)
        low, high = np.percentile(stats, [50 * (1 - size), 50 * (1 + size)])
    elif backend == "rliable":
        library = _rliable("library")
        state = np.random.get_state()
        np.random.seed(seed)  # rliable 1.2 resamples with the global np.random.choice, whatever random_state says
        try:
            _, ci = library.get_interval_estimates({"x": x}, lambda s: np.array([fn(s)]), reps=reps,
                                                   confidence_interval_size=size)
        finally:
            np.random.set_state(state)  # leave the caller's global stream as it was
        low, high = np.asarray(ci["x"]).reshape(2)
    else:
        raise ValueError(f"backend={backend!r} is not 'numpy' or 'rliable'")
    return Estimate(float(fn(x)), float(low), float(high), runs, tasks)


def common_seeds(per_task: Mapping[str, Collection[int]]) -> list[int]:
    """The seeds every task has a score on, sorted (rows of a matrix must be seeds every column ran).

    :param per_task: ``task -> its seeds`` (a ``seed -> score`` mapping will do).
    """
    sets = [set(s) for s in per_task.values()]
    return sorted(set.intersection(*sets)) if sets else []


def score_matrix(per_task: Mapping[str, Mapping[int, float]], tasks: Sequence[str],
                 seeds: Sequence[int]) -> np.ndarray:
    """``(runs x tasks)`` matrix: row ``i`` is ``seeds[i]``, column ``j`` is ``tasks[j]``.

    :param per_task: ``task -> seed -> score``.
    :param tasks: column order.
    :param seeds: row order; every task must have all of them.
    """
    missing = [(t, s) for t in tasks for s in seeds if s not in per_task.get(t, {})]
    if missing:
        raise ValueError(f"no score for (task, seed) {missing[:3]} ({len(missing)} missing): pass common_seeds()")
    return np.array([[float(per_task[t][s]) for t in tasks] for s in seeds], dtype=np.float64).reshape(
        len(seeds), len(tasks))


@dataclass(frozen=True)
class KindAggregate:
    """The aggregates of one world-model kind's headline configurations against their base runs."""

    kind: str
    tasks: list[str]
    seeds: list[int]
    base_policy: str
    estimates: dict[tuple[str, str], Estimate]  # (base|wrapped|gain, iqm|mean) -> estimate
    dropped: dict[str, list[int]]  # task -> seeds left out because another task lacks them


def headline_aggregates(recs: Sequence[dict[str, Any]], best: Mapping[tuple[str, str], dict[str, Any]], *,
                        min_runs: int = 2, reps: int = REPS, seed: int = SEED) -> list[KindAggregate]:
    """For each kind of :func:`summarize.headline`'s tuned configurations: base, wrapped and paired gain, IQM
    and mean, over the datasets with a full-episode base run and the seeds they all share.

    :param recs: :func:`summarize.summary`'s records (``seed_scores``: ``seed -> normalized score``).
    :param best: ``(entry, kind) -> record`` of the headline configurations.
    :param min_runs: fewer common seeds than this and the kind is left out (a 2-4 seed interval is noise).
    """
    base = {(r["entry"], r["policy"]): r for r in recs
            if r["method"] == "base" and r["settings"].get("max_steps") is None and "seed_scores" in r}
    out = []
    for kind in [*KINDS, *sorted({k for _, k in best} - set(KINDS))]:
        pairs = {e: (r, base[(e, r["policy"])]) for (e, k), r in sorted(best.items())
                 if k == kind and (e, r["policy"]) in base and "seed_scores" in r}
        if not pairs:
            continue
        # a seed the base and the wrapped run both have, on every dataset: pairing is per seed
        per_task = {e: set(w["seed_scores"]) & set(b["seed_scores"]) for e, (w, b) in pairs.items()}
        seeds, tasks = common_seeds(per_task), sorted(pairs)
        if len(seeds) < min_runs:
            continue
        wrapped = score_matrix({e: w["seed_scores"] for e, (w, _) in pairs.items()}, tasks, seeds)
        control = score_matrix({e: b["seed_scores"] for e, (_, b) in pairs.items()}, tasks, seeds)
        matrices = {"base": control, "wrapped": wrapped, "gain": paired_gains(wrapped, control)}
        estimates = {(name, m): stratified_bootstrap(x, m, reps=reps, seed=seed)
                     for name, x in matrices.items() for m in METRICS}
        dropped = {e: sorted(set(s) - set(seeds)) for e, s in per_task.items() if set(s) - set(seeds)}
        policies = sorted({w["policy"] for w, _ in pairs.values()})
        out.append(KindAggregate(kind, tasks, seeds, ", ".join(policies), estimates, dropped))
    return out


def section(recs: Sequence[dict[str, Any]], best: Mapping[tuple[str, str], dict[str, Any]], *, min_runs: int = 2,
            reps: int = REPS, seed: int = SEED) -> list[str]:
    """The "Aggregate (rliable)" section of docs/results.md as markdown lines (a hint line without rliable)."""
    lines = ["## Aggregate (rliable)", ""]
    try:
        _rliable("metrics")  # say what to install even while there is nothing to aggregate yet
        aggs = headline_aggregates(recs, best, min_runs=min_runs, reps=reps, seed=seed)
    except ImportError as exc:
        return [*lines, f"Not computed: {exc}"]
    if not aggs:
        return [*lines, f"No headline configuration has full-episode base and wrapped runs on {min_runs}+ common "
                        "seeds yet."]
    a0 = aggs[0]
    lines += [
        f"The headline's tuned configurations over {len(a0.tasks)} datasets (tasks) x {len(a0.seeds)} evaluation "
        f"seeds (runs), as Agarwal et al. (2021) recommend: the interquartile mean (IQM, the mean of the middle "
        "50% of all seed x dataset scores, robust to one outlying dataset) and the mean, with 95% "
        f"stratified-bootstrap intervals ({reps} resamples of the seeds within each dataset, datasets fixed, "
        f"bootstrap seed {seed}, percentile intervals). The gain rows aggregate the per-seed paired differences "
        "wrapped - base (the IQM of the gains, not the difference of two IQMs). The intervals say how far "
        "another draw of seeds could move a figure on these datasets, not how it carries to other datasets.",
        "", "| configuration | tasks | runs | IQM [95% CI] | mean [95% CI] |", "|---|---|---|---|---|"]
    shown_base: set[tuple[tuple[str, ...], tuple[int, ...]]] = set()
    for a in aggs:
        e = a.estimates
        key = (tuple(a.tasks), tuple(a.seeds))
        rows = [] if key in shown_base else [(f"base ({a.base_policy})", "base", False)]
        shown_base.add(key)  # both kinds usually pair with the very same base runs: one row for them
        name = KINDS.get(a.kind, a.kind)
        rows += [(f"ITPO, {name} world model (tuned)", "wrapped", False),
                 (f"gain: ITPO {name} - base (paired)", "gain", True)]
        for text, name, signed in rows:
            lines.append(f"| {text} | {len(a.tasks)} | {len(a.seeds)} | {e[(name, 'iqm')].text(signed)} "
                         f"| {e[(name, 'mean')].text(signed)} |")
    # which seeds and datasets went in; kinds that used the same ones share a line
    notes: dict[str, list[str]] = {}
    for a in aggs:
        span = f"{a.seeds[0]}..{a.seeds[-1]}" if a.seeds == list(range(a.seeds[0], a.seeds[-1] + 1)) else \
            ", ".join(map(str, a.seeds))
        left = "; ".join(f"{t}: {', '.join(map(str, s))}" for t, s in a.dropped.items())
        note = (f"seeds {span} on {', '.join(a.tasks)}"
                + (f"; seeds not shared by every dataset, left out: {left}." if left else "."))
        notes.setdefault(note, []).append(KINDS.get(a.kind, a.kind))
    lines += [f"\n{' and '.join(kinds)}: {note}" for note, kinds in notes.items()]
    lines += ["", "Regenerate: `.venv/bin/python benchmarks/summarize.py` (the rliable metrics need "
              f"`{INSTALL_HINT}`; the resampling is `benchmarks/aggregate.py`)."]
    return lines
