"""The statistics of the score experiment: scipy's Student-t quantile behind the paired intervals
(``itpo_wrap.rollout``) and the rliable aggregate over datasets and seeds (``benchmarks/aggregate.py``)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, cast

import numpy as np
import pytest
from scipy import stats

from itpo_lab.stats import paired_difference, t_quantile_975
from tests.scripts import load_script

pytest.importorskip("rliable.metrics", reason="the aggregate needs rliable: pip install 'itpo-wrap[stats]'")
ag = load_script("benchmarks", "aggregate")

# the hand-typed table itpo_wrap/rollout.py carried before scipy, df = 1..30: docs/results.md was made with it
OLD_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
            2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
            2.045, 2.042)


def test_t_quantile_is_scipys_and_the_old_table_agrees_to_three_decimals() -> None:
    # textbook values of t_{0.975, df}
    for df, known in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (120, 1.9799)):
        assert t_quantile_975(df) == pytest.approx(known, abs=1e-4)
        assert t_quantile_975(df) == stats.t.ppf(0.975, df)
    for df, old in enumerate(OLD_T975, start=1):  # n - 1 for n = 2..31 paired episodes
        assert round(t_quantile_975(df), 3) == pytest.approx(old, abs=1e-9), df
    with pytest.raises(ValueError, match="df=0"):
        t_quantile_975(0)


def test_paired_difference_interval_is_symmetric_t_interval() -> None:
    rng = np.random.default_rng(3)
    control = rng.normal(50, 10, 10)
    treatment = control + rng.normal(5, 2, 10)
    r = paired_difference(treatment.tolist(), control.tolist())
    d = treatment - control
    assert r.mean == pytest.approx(d.mean()) and (r.ci_low + r.ci_high) / 2 == pytest.approx(r.mean)
    assert r.half_width == pytest.approx(stats.t.ppf(0.975, 9) * d.std(ddof=1) / math.sqrt(10))
    assert r.ci_low < r.mean < r.ci_high and r.n == 10 and r.wins == int((d > 0).sum())
    # swapping the arms mirrors the interval
    s = paired_difference(control.tolist(), treatment.tolist())
    assert (s.ci_low, s.ci_high) == pytest.approx((-r.ci_high, -r.ci_low))


def test_paired_difference_single_pair_and_shape_errors() -> None:
    one = paired_difference([3.0], [1.0])
    assert one.mean == 2.0 and one.n == 1 and one.wins == 1
    assert all(math.isnan(v) for v in (one.std, one.ci_low, one.ci_high))
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        paired_difference(cast(Any, [[1.0, 2.0]]), cast(Any, [[1.0, 2.0]]))


def _matrix(runs: int = 10, tasks: int = 9, seed: int = 0) -> np.ndarray:
    """Scores with a level per task and noise per run, one outlying task (what the IQM is robust to)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(30, 110, tasks)[None, :] + rng.normal(0, 8, (runs, tasks))
    x[:, 0] += 300
    return x


@pytest.mark.parametrize("metric", ["iqm", "mean"])
def test_bootstrap_point_interval_and_reproducibility(metric: str) -> None:
    x = _matrix()
    e = ag.stratified_bootstrap(x, metric, reps=400, seed=7)
    expected = stats.trim_mean(x.ravel(), 0.25) if metric == "iqm" else x.mean()
    assert e.point == pytest.approx(expected) and (e.runs, e.tasks) == (10, 9)
    assert e.low < e.point < e.high
    assert ag.stratified_bootstrap(x, metric, reps=400, seed=7) == e  # seeded: the very same interval
    assert ag.stratified_bootstrap(x, metric, reps=400, seed=8) != e
    if metric == "iqm":  # the IQM trims the outlying task (+300), the mean does not
        assert e.point < x.mean() - 10


def test_bootstrap_resamples_runs_within_tasks_only() -> None:
    # constant within each task: resampling runs inside a task changes nothing, so the interval has no width;
    # a bootstrap that mixed tasks would spread it
    x = np.tile(np.arange(9.0) * 10, (10, 1))
    e = ag.stratified_bootstrap(x, "iqm", reps=200, seed=0)
    assert e.low == pytest.approx(e.point) and e.high == pytest.approx(e.point)


def test_paired_gains_and_clear_errors() -> None:
    base, wrapped = _matrix(seed=1), _matrix(seed=1) + 5.0
    gains = ag.paired_gains(wrapped, base)
    assert gains == pytest.approx(np.full((10, 9), 5.0))
    assert ag.stratified_bootstrap(gains, "iqm", reps=100).high == pytest.approx(5.0)  # pairing removes the noise
    with pytest.raises(ValueError, match=r"treatment \(10, 9\) and control \(8, 9\)"):
        ag.paired_gains(wrapped, base[:8])
    bad = base.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="1 non-finite value.*run 3, task 2.*common_seeds"):
        ag.stratified_bootstrap(bad, "iqm", reps=10)
    with pytest.raises(ValueError, match=r"\(runs x tasks\) matrix, got shape \(10,\)"):
        ag.stratified_bootstrap(base[:, 0], "iqm", reps=10)
    with pytest.raises(ValueError, match="metric='median'"):
        ag.stratified_bootstrap(base, "median")
    with pytest.raises(ValueError, match="backend='arch'"):
        ag.stratified_bootstrap(base, "iqm", reps=10, backend="arch")


def test_common_seeds_and_matrix_layout() -> None:
    per_task = {"a": {1: 10.0, 2: 20.0, 3: 30.0}, "b": {2: 2.0, 3: 3.0, 4: 4.0}}
    seeds = ag.common_seeds(per_task)
    assert seeds == [2, 3]
    m = ag.score_matrix(per_task, ["a", "b"], seeds)
    assert m.tolist() == [[20.0, 2.0], [30.0, 3.0]]  # rows: seeds, columns: tasks
    with pytest.raises(ValueError, match=r"\('b', 1\).*common_seeds"):
        ag.score_matrix(per_task, ["a", "b"], [1, 2])


def test_missing_rliable_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rliable.metrics", None)  # what an environment without it looks like
    with pytest.raises(ImportError, match=r"pip install 'itpo-wrap\[stats\]'"):
        ag.stratified_bootstrap(_matrix(), "iqm", reps=10)
    assert "itpo-wrap[stats]" in ag.section([], {})[-1]


def test_rliable_backend_agrees_where_rliable_library_imports() -> None:
    try:
        ag._rliable("library")
    except ImportError as exc:  # rliable 1.2's arch does not import under pandas >= 3
        pytest.skip(str(exc))
    x = _matrix()
    ours = ag.stratified_bootstrap(x, "iqm", reps=2000, seed=0)
    theirs = ag.stratified_bootstrap(x, "iqm", reps=2000, seed=0, backend="rliable")
    assert theirs == ag.stratified_bootstrap(x, "iqm", reps=2000, seed=0, backend="rliable")
    assert theirs.point == ours.point
    width = ours.high - ours.low  # two Monte-Carlo draws of one interval: their ends agree to a few percent
    assert abs(theirs.low - ours.low) < 0.1 * width and abs(theirs.high - ours.high) < 0.1 * width


def _rows(seeds: list[int]) -> list[dict[str, str]]:
    """episodes.csv rows: base and one ITPO configuration on two datasets (the second without seed 3)."""
    rows = []
    itpo = {"method": "itpo", "kind": "diffusion", "step_size": 1e-4, "steps": 5, "particles": 8, "horizon": 5}
    for e_i, entry in enumerate(("d1", "d2")):
        for method, settings, shift in (("base", {"method": "base", "kind": "diffusion"}, 0.0), ("itpo", itpo, 7.0)):
            for s in seeds if entry == "d1" else seeds[:-1]:
                rows.append({"entry": entry, "policy": "td3_bc", "method": method, "kind": "diffusion",
                             "split": "eval", "seed": str(s), "score": str(40.0 + 10 * e_i + s + shift),
                             "ms_per_step": "1.0", "fallbacks": "0", "settings": json.dumps(settings)})
    return rows


def test_summarize_section_from_episode_rows() -> None:
    summarize = load_script("benchmarks", "summarize")
    recs = summarize.summary(_rows([0, 1, 2, 3]))
    tuned: dict[str, Any] = {e: {"diffusion": {"step_size": 1e-4}} for e in ("d1", "d2")}
    best = summarize.headline(recs, tuned)
    text = "\n".join(ag.section(recs, best, reps=200))
    assert "## Aggregate (rliable)" in text and "summarize.py" in text
    # every seed's gain is +7 on both datasets: IQM and mean are +7 with no width
    assert "| gain: ITPO diffusion - base (paired) | 2 | 3 | +7.0 [+7.0, +7.0] | +7.0 [+7.0, +7.0] |" in text
    assert "| base (td3_bc) | 2 | 3 |" in text
    assert "seeds 0..2 on d1, d2; seeds not shared by every dataset, left out: d1: 3." in text
    assert "No headline configuration" in "\n".join(ag.section(recs, best, min_runs=4))
    assert "not D4RL's expert" in summarize.NORMALIZED_NOTE
