"""The reality check (``AdaptConfig.max_model_error``, ``itpo_wrap.reality``): the world model's error on the
real transition decides whether the next step may adapt."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

CFG = AdaptConfig(horizon=2, particles=4, steps=3, step_size=0.05, backend="eager", gate="off",
                  max_model_error=0.5)


def _actor(seed: int = 0) -> TanhActor:
    torch.manual_seed(seed)
    return TanhActor(4, 2, (16, 16))


def _wm() -> MLPWM:
    wm = MLPWM(sigma=0.1)
    wm.register_buffer("obs_std", torch.full((4,), 2.0))
    return wm


def _obs(seed: int, n: int | None = None) -> np.ndarray:
    shape = (4,) if n is None else (n, 4)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _predicted(wm: MLPWM, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The model's zero-noise prediction: a real transition it gets exactly right."""
    s, a = torch.as_tensor(obs).reshape(-1, 4), torch.as_tensor(action).reshape(-1, 2)
    with torch.no_grad():
        return wm.next(s, a, torch.zeros(wm.k_steps, s.shape[0], 4)).numpy().reshape(obs.shape)


def _base(obs: np.ndarray) -> np.ndarray:
    return ITPOPolicyWrapper(_actor(), _wm(), dataclasses.replace(CFG, steps=0)).predict(obs, deterministic=True)[0]


def test_a_transition_the_model_missed_makes_the_next_step_act_as_the_base_policy() -> None:
    wm = _wm()
    w = ITPOPolicyWrapper(_actor(), wm, CFG)
    a0, _ = w.predict(_obs(0), deterministic=True)
    assert np.isnan(w.last_info[0]["model_error"]) and not w.last_info[0]["off_model"]  # nothing to judge yet
    missed = _predicted(wm, _obs(0), a0) + np.array([2.0, 2.0, 0.0, 0.0], np.float32)  # 1 std on 2 of 4 dims
    a1, _ = w.predict(missed, deterministic=True)
    info = w.last_info[0]
    assert info["model_error"] == pytest.approx(np.sqrt(0.5), rel=1e-4)  # above the limit 0.5
    assert info["off_model"] and np.array_equal(a1, _base(missed)) and info["param_drift"] == 0.0
    right = _predicted(wm, missed, a1)  # the model predicts the base action's transition exactly
    a2, _ = w.predict(right, deterministic=True)
    assert w.last_info[0]["model_error"] == pytest.approx(0.0, abs=1e-5) and not w.last_info[0]["off_model"]
    assert not np.array_equal(a2, _base(right))  # adapting again


def test_the_error_is_rms_of_state_std_units() -> None:
    wm = _wm()
    w = ITPOPolicyWrapper(_actor(), wm, dataclasses.replace(CFG, max_model_error=10.0))
    a0, _ = w.predict(_obs(0), deterministic=True)
    w.predict(_predicted(wm, _obs(0), a0) + np.array([2.0, 2.0, 0.0, 0.0], np.float32), deterministic=True)
    assert w.last_info[0]["model_error"] == pytest.approx(np.sqrt(2 / 4), rel=1e-4)  # 1 std on 2 of 4 dims


def test_episode_start_forgets_the_last_transition() -> None:
    wm = _wm()
    w = ITPOPolicyWrapper(_actor(), wm, CFG)
    w.predict(_obs(0), deterministic=True)
    w.predict(_obs(5) * 10, episode_start=np.array([True]), deterministic=True)  # far away, but a new episode
    assert np.isnan(w.last_info[0]["model_error"]) and not w.last_info[0]["off_model"]
    w.predict(_obs(6) * 10, deterministic=True)  # the same jump without episode_start is judged, and missed
    assert w.last_info[0]["off_model"]


def test_a_lenient_check_changes_nothing_but_the_info() -> None:
    """The prediction draws no noise from the adaptation's generators: with a limit never reached, every
    action equals the unchecked wrapper's, bit for bit."""
    on = ITPOPolicyWrapper(_actor(), _wm(), dataclasses.replace(CFG, max_model_error=1e6))
    off = ITPOPolicyWrapper(_actor(), _wm(), dataclasses.replace(CFG, max_model_error=None))
    for t in range(4):
        obs = _obs(t, 3)
        assert np.array_equal(on.predict(obs, deterministic=True)[0], off.predict(obs, deterministic=True)[0])
    assert "model_error" not in off.last_info[0] and all(np.isfinite(r["model_error"]) for r in on.last_info)


def test_only_the_off_model_env_of_a_vectorised_call_acts_as_the_base() -> None:
    wm = _wm()
    w = ITPOPolicyWrapper(_actor(), wm, CFG)
    obs = _obs(0, 3)
    a0, _ = w.predict(obs, deterministic=True)
    nxt = _predicted(wm, obs, a0)
    nxt[1, 0] += 4.0  # env 1's transition is missed by 2 stds on one dim (error 1.0)
    a1, _ = w.predict(nxt, deterministic=True)
    assert [r["off_model"] for r in w.last_info] == [False, True, False]
    base = _base(nxt)
    assert np.array_equal(a1[1], base[1]) and not np.array_equal(a1[0], base[0])


def test_a_model_without_a_state_scale_adapts_unchecked_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="obs_std"):
        w = ITPOPolicyWrapper(_actor(), MLPWM(sigma=0.1), CFG)
    w.predict(_obs(0), deterministic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w.predict(_obs(1) * 50, deterministic=True)
    assert "model_error" not in w.last_info[0]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_max_model_error_is_validated(bad: float) -> None:
    with pytest.raises(ValueError, match="max_model_error"):
        AdaptConfig(max_model_error=bad)
