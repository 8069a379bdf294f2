"""Issue 23 item 2: ``itpo tune --backend ray-tune``, the search scheduled by Ray Tune (a grid, or ASHA with
truncated episodes as its low rungs), keeps ``itpo tune``'s guarantees by construction: the choice is
``itpo_wrap.tune.decide``'s, from full-fidelity episodes only; E = 0 is always a candidate.

A toy: Pendulum-v1, a small tanh actor and a linear-quadratic world model, 15-step episodes. The Ray Tune
runs (a local Ray of 2 CPUs) need ``ray[tune]`` and are skipped without it; the driver's bookkeeping is also
checked without Ray, on canned trial results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from typing import Any

import gymnasium as gym
import pytest
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.rollout import Episode, episode_rungs, run_episode
from itpo_wrap.tune import BASE, candidate_configs, choose, decide, tune
from itpo_wrap.tune_search import TuneSearch
from tests.test_adapt_toys import LinearQuadraticWM

SEEDS = (0, 1)
CANDIDATES = [AdaptConfig(horizon=1, particles=2, steps=1, step_size=s, backend="eager") for s in (1e-3, 1e-2, 1e-1)]


class PendulumSetup:
    """``setup`` of the toy: built afresh in each process that runs episodes (a Ray Tune trial)."""

    def __call__(self) -> tuple[Any, Any, Any]:
        torch.manual_seed(0)
        return TanhActor(3, 1, (16, 16)), LinearQuadraticWM(obs_dim=3, act_dim=1), lambda: gym.make("Pendulum-v1")


@pytest.fixture(scope="module")
def local() -> Any:
    return tune(*PendulumSetup()(), CANDIDATES, SEEDS, max_steps=15)


def _ep(seed: int, ret: float, length: int = 15) -> Episode:
    return Episode(seed=seed, episode_return=ret, length=length, ms_per_step=1.0, terminated=False)


def test_decide_chooses_from_full_fidelity_episodes_only() -> None:
    configs = candidate_configs(CANDIDATES)
    a, b, c = list(configs)[1:]
    full = {BASE: [_ep(0, 10.0), _ep(1, 12.0)], b: [_ep(0, 9.0), _ep(1, 12.5)], c: [_ep(0, 12.0), _ep(1, 13.0)]}
    report = decide(SEEDS, 15, configs, full, lambda r: r, stopped={a: 5})
    assert report.chosen == c and a not in report.scores and report.stopped == {a: 5}
    assert "stopped early on truncated episodes, not chosen" in report.summary() and "(at 5 steps)" in report.summary()
    # b beat the base on no seed mean, c is stopped: nothing that reached full fidelity beats the base
    report = decide(SEEDS, 15, configs, {BASE: full[BASE], b: full[b]}, lambda r: r, stopped={a: 5, c: 10})
    assert report.chosen == BASE and not report.beat_base
    with pytest.raises(RuntimeError, match="base .* was stopped"):
        decide(SEEDS, 15, configs, full, lambda r: r, stopped={BASE: 5})
    with pytest.raises(RuntimeError, match=r"no full-fidelity episodes .* for \['base"):
        decide(SEEDS, 15, configs, {b: full[b], c: full[c]}, lambda r: r, stopped={a: 5})
    with pytest.raises(RuntimeError, match="no full-fidelity episodes"):  # a seed missing
        decide(SEEDS, 15, configs, {**full, a: [_ep(0, 99.0)]}, lambda r: r)


def test_an_episode_continued_rung_by_rung_is_the_episode_run_to_each_cap() -> None:
    policy, wm, make_env = PendulumSetup()()
    from itpo_wrap.wrapper import ITPOPolicyWrapper

    def fresh(cap: int) -> Episode:
        with ITPOPolicyWrapper(policy, wm, CANDIDATES[1]) as w:
            return run_episode(w.predict, make_env(), 1, max_steps=cap)

    with ITPOPolicyWrapper(policy, wm, CANDIDATES[1]) as w:
        rungs = list(episode_rungs(w.predict, make_env(), 1, [3, 7, 12]))
    for ep, cap in zip(rungs, (3, 7, 12), strict=True):
        assert (ep.episode_return, ep.length) == (fresh(cap).episode_return, fresh(cap).length)
    with pytest.raises(ValueError, match="increasing step caps"):
        list(episode_rungs(w.predict, make_env(), 1, [7, 3]))


def test_search_settings_are_checked() -> None:
    assert TuneSearch().caps(None) == (None,) and TuneSearch("asha").caps(None) == (100, 300, None)
    assert TuneSearch("asha", (5, 10)).caps(15) == (5, 10, 15)
    with pytest.raises(ValueError, match="choose one of"):
        TuneSearch("bohb")
    with pytest.raises(ValueError, match="apply to search='asha' only"):
        TuneSearch("grid", (100,))
    with pytest.raises(ValueError, match="increasing step caps"):
        TuneSearch("asha", (300, 100))
    with pytest.raises(ValueError, match="integer >= 2"):
        TuneSearch("asha", reduction_factor=1)
    with pytest.raises(ValueError, match="below max_steps=200"):
        TuneSearch("asha").caps(200)


def test_the_driver_records_no_candidate_that_lost_at_full_fidelity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Canned ASHA results, no Ray: candidate 3 led at the low rung and lost at full fidelity, candidate 2 was
    stopped; the choice is the one candidate that beat the base on full episodes."""
    import itpo_wrap.tune_search as ts

    def metrics(rung: int, returns: list[float], length: int) -> dict[str, Any]:
        return {"rung": rung, "episodes": json.dumps([_ep(s, r, length).as_row() for s, r in zip(SEEDS, returns, strict=True)])}

    canned = [(0, None, metrics(2, [10.0, 12.0], 15)), (1, None, metrics(2, [11.0, 12.0], 15)),
              (2, None, metrics(0, [1.0, 1.0], 5)), (3, None, metrics(2, [0.0, 1.0], 15))]
    monkeypatch.setattr(ts, "require_tune", lambda: None)
    monkeypatch.setattr(ts, "ray_session", lambda *a: contextlib.nullcontext())
    monkeypatch.setattr(ts, "_fit", lambda *a: canned)
    lines: list[str] = []
    report = ts.search(*PendulumSetup()(), CANDIDATES, SEEDS, config=TuneSearch("asha", (5, 10)), max_steps=15,
                       progress=lines.append)
    labels = list(candidate_configs(CANDIDATES))
    assert report.chosen == labels[1] and report.stopped == {labels[2]: 5} and set(report.scores) == {
        BASE, labels[1], labels[3]}
    assert lines[2] == f"{labels[2]}: stopped at the 5-step rung"
    monkeypatch.setattr(ts, "_fit", lambda *a: [*canned[:3], (3, RuntimeError("boom"), {})])
    with pytest.raises(RuntimeError, match=r"1 of 4 trial\(s\) failed .*no choice is made.*boom"):
        ts.search(*PendulumSetup()(), CANDIDATES, SEEDS, config=TuneSearch("asha", (5, 10)), max_steps=15)


@pytest.fixture(scope="module")
def ray_of_two_cpus() -> Any:
    pytest.importorskip("ray.tune")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one Ray for the module's searches
    yield ray
    ray.shutdown()


def test_the_ray_tune_grid_chooses_and_records_as_locally(ray_of_two_cpus: Any, local: Any) -> None:
    from itpo_lab.commands import tuned_record
    from itpo_wrap.tune_search import search

    report = search(None, None, None, CANDIDATES, SEEDS, max_steps=15, setup=PendulumSetup())
    assert report == local and report.summary() == local.summary()  # scores, choice, caps, every word
    assert tuned_record(report) == tuned_record(local)  # what itpo-lab tune --record stores
    assert BASE in report.scores and report.configs[BASE].steps == 0


def test_asha_chooses_only_among_full_fidelity_winners(ray_of_two_cpus: Any, local: Any) -> None:
    from itpo_wrap.tune_search import search

    report = search(None, None, None, CANDIDATES, SEEDS, max_steps=15, setup=PendulumSetup(),
                    config=TuneSearch("asha", (5, 10), reduction_factor=2))
    assert BASE in report.scores and report.scores[BASE] == local.scores[BASE]  # E = 0 always at full fidelity
    assert set(report.scores) | set(report.stopped) == set(local.scores)
    assert set(report.stopped) <= set(local.scores) - {BASE} and set(report.stopped.values()) <= {5, 10}
    for label, scores in report.scores.items():  # continued episodes are the local full episodes
        assert scores == local.scores[label]
    assert report.chosen == choose(report.scores) and report.chosen not in report.stopped
    assert report.chosen == BASE or report.mean(report.chosen) > report.mean(BASE)


def test_the_command_line_refuses_what_cannot_run_before_loading(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from itpo_wrap.cli import main

    def refused(*flags: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["tune", "--entry", "no-such-entry", "--seeds", "0", *flags])
        assert exc.value.code == 2
        return capsys.readouterr().err

    assert "--search, --rungs need --backend ray-tune" in refused("--search", "asha", "--rungs", "5")
    assert "apply to --search asha" in refused("--backend", "ray-tune", "--rungs", "5")
    if importlib.util.find_spec("ray") is not None:
        assert "must stay below --max-steps 50" in refused("--backend", "ray-tune", "--search", "asha", "--max-steps", "50")
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed: the install hint, in one line
    err = refused("--backend", "ray-tune", "--search", "asha")
    assert "pip install 'itpo-wrap[ray]'" in err and "Traceback" not in err
