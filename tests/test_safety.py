"""The safety layer (issue 20): the paired acceptance test, the parameter trust region, the soft
termination discount, the world-model fitness check, and ``tune``'s rule that nothing losing to the base
is ever chosen."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from itpo_wrap import adapt as A
from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.tune import BASE, choose, tune
from itpo_wrap.world_model.trust import Fitness, fitness_of
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM, LinearQuadraticWM

CFG = AdaptConfig(horizon=2, particles=4, steps=3, step_size=0.05, backend="eager")


def _actor(obs: int = 4, act: int = 2, seed: int = 0) -> TanhActor:
    torch.manual_seed(seed)
    return TanhActor(obs, act, (16, 16))


def _obs(seed: int, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


# ----------------------------------------------------------------------------- paired acceptance test
def test_paired_gate_margin_grows_with_particle_disagreement() -> None:
    cfg = AdaptConfig(gate="paired", gate_z=2.0)
    base = torch.zeros(2, 4)
    steady = torch.full((2, 4), 0.5)  # the same gain on every particle: no uncertainty
    noisy = torch.tensor([[0.5, 0.5, 0.5, 0.5], [3.0, -2.0, 3.0, -2.0]])  # mean 0.5, large spread in env 1
    assert A.paired_gate(steady, base, cfg).tolist() == [True, True]
    assert A.paired_gate(noisy, base, cfg).tolist() == [True, False]
    assert A.paired_gate(torch.full((2, 4), float("nan")), base, cfg).tolist() == [False, False]


def test_a_rejected_update_executes_the_base_action_and_is_undone() -> None:
    # a step size far too large for the LQ model: the update overshoots and lowers the held-out return
    wm = LinearQuadraticWM(obs_dim=4, act_dim=2)
    cfg = AdaptConfig(horizon=1, particles=4, steps=1, step_size=50.0, gate="paired", backend="eager",
                      persistence="persistent", max_drift=None, max_action_change=None)
    base, _ = ITPOPolicyWrapper(_actor(), wm, dataclasses.replace(cfg, steps=0)).predict(_obs(0), deterministic=True)
    w = ITPOPolicyWrapper(_actor(), wm, cfg)
    action, _ = w.predict(_obs(0), deterministic=True)
    info = w.last_info[0]
    assert info["gate_rejected"] and np.array_equal(action, base)
    assert info["param_drift"] == 0.0  # the rejected update left no trace in the (persistent) parameters


def test_a_good_update_passes_the_gate() -> None:
    wm = LinearQuadraticWM(obs_dim=4, act_dim=2)
    cfg = AdaptConfig(horizon=1, particles=4, steps=20, step_size=0.05, gate="paired", gate_z=1.0, backend="eager")
    w = ITPOPolicyWrapper(_actor(), wm, cfg)
    base, _ = ITPOPolicyWrapper(_actor(), wm, dataclasses.replace(cfg, steps=0)).predict(_obs(1), deterministic=True)
    action, _ = w.predict(_obs(1), deterministic=True)
    assert not w.last_info[0]["gate_rejected"] and not np.array_equal(action, base)


# ----------------------------------------------------------------------------- trust region in parameter space
@pytest.mark.parametrize("n_envs", [1, 3])
def test_max_drift_bounds_persistent_drift(n_envs: int) -> None:
    wm, radius = MLPWM(bound=2.0), 0.02
    norm0 = float(torch.linalg.vector_norm(torch.cat([p.flatten() for p in _actor().parameters()])))
    drifts = {}
    for bound in (None, radius):
        w = ITPOPolicyWrapper(_actor(), wm, dataclasses.replace(CFG, step_size=0.5, max_drift=bound))
        for t in range(15):
            w.predict(np.stack([_obs(10 * t + i) for i in range(n_envs)]), deterministic=True)
        drifts[bound] = max(row["param_drift"] for row in w.last_info)
    assert drifts[radius] <= radius * norm0 * (1 + 1e-5)
    assert drifts[None] > 2 * radius * norm0  # without the bound the same run wanders much farther


# ----------------------------------------------------------------------------- soft termination
class CliffWM(MLPWM):
    """Constant reward 1, no value; the termination probability grows with s[0], which the action pushes."""

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.ones(s.shape[0])

    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.zeros(s.shape[0])

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return s + torch.cat([a[:, :1], torch.zeros_like(s[:, 1:])], dim=1)

    def termination_probability(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(4.0 * (s[:, 0] - 1.0))

    def terminated(self, s: torch.Tensor) -> torch.Tensor:
        return self.termination_probability(s) > 0.5


def test_soft_termination_steers_away_from_predicted_falls() -> None:
    wm, obs = CliffWM(bound=1.0), np.zeros(4, dtype=np.float32)
    moved = {}
    for mode in ("hard", "soft"):
        cfg = AdaptConfig(horizon=3, particles=2, steps=10, step_size=0.5, termination=mode, backend="eager")
        w = ITPOPolicyWrapper(_actor(), wm, cfg)
        base, _ = ITPOPolicyWrapper(_actor(), wm, dataclasses.replace(cfg, steps=0)).predict(obs, deterministic=True)
        action, _ = w.predict(obs, deterministic=True)
        moved[mode] = float(action[0] - base[0])
        if mode == "soft":
            assert w.last_info[0]["j_after"] > w.last_info[0]["j_before"]
    assert moved["hard"] == 0.0  # a constant reward under a hard mask gives no gradient at all
    assert moved["soft"] < -1e-3  # the survival discount pushes s[0] (the action's first coordinate) down


# ----------------------------------------------------------------------------- world-model fitness check
def _bundle_with(info: dict[str, object]) -> object:
    from tests.test_world_model_bundle import make_wm

    wm = make_wm("meanflow")
    wm.info = info
    return wm


BAD = {"fitness": {"one_step_rmse_state_std": 0.85, "one_step_rmse_state_std_per_dim": [0.3, 1.4, 1.2, 0.2],
                   "reward_rmse_reward_std": 0.1, "termination_recall": 0.23, "terminal_rows": 120}}


def test_an_unfit_world_model_is_named_at_construction() -> None:
    from tests.test_world_model_bundle import ACT, OBS

    with pytest.warns(UserWarning, match=r"not fit to plan with: .*0\.85 state std.*2 of 4 state dimensions.*23%"):
        ITPOPolicyWrapper(_actor(OBS, ACT), _bundle_with(BAD), CFG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model_check='strict' refuses it"):
        ITPOPolicyWrapper(_actor(OBS, ACT), _bundle_with(BAD), dataclasses.replace(CFG, model_check="strict"))  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ITPOPolicyWrapper(_actor(OBS, ACT), _bundle_with(BAD), dataclasses.replace(CFG, model_check="off"))  # type: ignore[arg-type]


def test_the_training_summaries_are_the_fallback_record_and_good_models_pass() -> None:
    from tests.test_world_model_bundle import ACT, OBS

    good = {"summaries": {"dynamics": {"val_rmse_state_std": 0.03}, "termination": {"val_recall": 0.89}}}
    fit = fitness_of(_bundle_with(good))
    assert isinstance(fit, Fitness) and fit.problems() == [] and "training" in fit.source
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ITPOPolicyWrapper(_actor(OBS, ACT), _bundle_with(good), dataclasses.replace(CFG, model_check="strict"))  # type: ignore[arg-type]
    assert fitness_of(MLPWM()) is None  # a user's own model records nothing: not judged


# ----------------------------------------------------------------------------- tune
def test_choose_never_picks_a_loser() -> None:
    assert choose({BASE: [10.0, 12.0], "a": [9.0, 12.5], "b": [11.0, 11.0]}) == BASE  # 10.75 and 11.0 vs 11.0
    assert choose({BASE: [10.0, 12.0], "a": [13.0, 12.0], "b": [12.0, 12.0]}) == "a"


def test_tune_runs_the_base_and_reports_the_cap_as_a_risk() -> None:
    wm = LinearQuadraticWM(obs_dim=3, act_dim=1)
    cands = [AdaptConfig(horizon=1, particles=2, steps=1, step_size=s, backend="eager") for s in (1e-3, 1e-2)]
    report = tune(_actor(3, 1), wm, lambda: gym.make("Pendulum-v1"), cands, seeds=[0, 1], max_steps=15)
    assert set(report.scores) == {BASE, "horizon=1, particles=2, steps=1, step_size=0.001",
                                  "horizon=1, particles=2, steps=1, step_size=0.01"}
    assert report.configs[BASE].steps == 0 and all(len(v) == 2 for v in report.scores.values())
    assert report.chosen == BASE or report.mean(report.chosen) > report.mean(BASE)
    assert all(c == 2 for c in report.capped.values()) and "RISK: 6 tuning episode(s)" in report.summary()
    with pytest.raises(ValueError, match="seeds is empty"):
        tune(_actor(3, 1), wm, lambda: gym.make("Pendulum-v1"), cands, seeds=[])
