"""The one Box mapping (``itpo_wrap.adapters.base``): policy units <-> env units, both ways, numpy and torch,
and ``actor_predict`` (a ``[-1, 1]`` torch actor behind SB3's ``predict``). Each function is pinned to the
expression its callers used before they shared it, bit for bit, so switching a caller changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itpo_wrap import zoo
from itpo_wrap.adapters import (
    actor_predict,
    box_center_half,
    to_env_numpy,
    to_env_torch,
    to_policy_numpy,
    to_policy_torch,
)
from itpo_wrap.networks import TanhActor

LOW = np.array([-2.0, 0.0, -1.0, -0.4], np.float32)
HIGH = np.array([2.0, 10.0, 1.0, 3.0], np.float32)


def _env_actions(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(LOW, HIGH, size=(n, 4)).astype(np.float32)


def _policy_actions(n: int = 2000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 4)).astype(np.float32)


def test_round_trips_numpy_and_torch() -> None:
    x, u = _env_actions(), _policy_actions()
    np.testing.assert_allclose(to_env_numpy(to_policy_numpy(x, LOW, HIGH), LOW, HIGH, squashed=True), x,
                               rtol=0, atol=1e-5 * float((HIGH - LOW).max()))
    np.testing.assert_allclose(to_policy_numpy(to_env_numpy(u, LOW, HIGH, squashed=True), LOW, HIGH), u, atol=1e-6)
    lo, hi, xt, ut = (torch.as_tensor(v) for v in (LOW, HIGH, x, u))
    torch.testing.assert_close(to_env_torch(to_policy_torch(xt, lo, hi), lo, hi, squashed=True), xt,
                               rtol=0, atol=1e-5 * float((HIGH - LOW).max()))
    torch.testing.assert_close(to_policy_torch(to_env_torch(ut, lo, hi, squashed=True), lo, hi), ut, rtol=0, atol=1e-6)
    # the Box's corners and centre land on -1, +1 and 0 (exactly 0 in torch: (a - centre) / half)
    corners = np.stack([LOW, HIGH, (LOW + HIGH) / 2])
    np.testing.assert_allclose(to_policy_numpy(corners, LOW, HIGH), [[-1] * 4, [1] * 4, [0] * 4], atol=1e-6)
    back = to_policy_torch(torch.as_tensor(corners), lo, hi)
    torch.testing.assert_close(back[:2], torch.tensor([[-1.0] * 4, [1.0] * 4]), rtol=0, atol=1e-6)
    assert torch.equal(back[2], torch.zeros(4))
    # the two inverses agree to float32 rounding; dtypes follow the inputs
    np.testing.assert_allclose(to_policy_numpy(x, LOW, HIGH), to_policy_torch(xt, lo, hi).numpy(), atol=1e-6)
    assert to_policy_numpy(x, LOW, HIGH).dtype == np.float32 and to_policy_torch(xt, lo, hi).dtype == torch.float32


def test_inverses_clip_outside_the_box() -> None:
    outside = np.stack([LOW - 1.0, HIGH + 5.0])
    assert np.array_equal(to_policy_numpy(outside, LOW, HIGH), [[-1.0] * 4, [1.0] * 4])
    lo, hi = torch.as_tensor(LOW), torch.as_tensor(HIGH)
    assert torch.equal(to_policy_torch(torch.as_tensor(outside), lo, hi), torch.tensor([[-1.0] * 4, [1.0] * 4]))


def test_each_function_is_the_expression_its_callers_had() -> None:
    x, u = _env_actions(), _policy_actions()
    # the lab's scale_actions / unscale_actions (float32 in, float32 bounds)
    assert np.array_equal(to_policy_numpy(x, LOW, HIGH), np.clip(2.0 * (x - LOW) / (HIGH - LOW) - 1.0, -1.0, 1.0))
    assert np.array_equal(to_env_numpy(u, LOW, HIGH, squashed=True),
                          (LOW + 0.5 * (u + 1.0) * (HIGH - LOW)).astype(np.float32))
    # improve_run's dataset actions as the BC target, and adapt.py's / mppi.py's fused centre and half-width
    lo, hi, xt, ut = (torch.as_tensor(v) for v in (LOW, HIGH, x, u))
    assert torch.equal(to_policy_torch(xt, lo, hi), ((xt - (hi + lo) / 2) / ((hi - lo) / 2)).clamp(-1.0, 1.0))
    mid, half = box_center_half(lo, hi)
    assert torch.equal(mid, (hi + lo) / 2) and torch.equal(half, (hi - lo) / 2)
    torch.testing.assert_close(torch.addcmul(mid, half, ut), to_env_torch(ut, lo, hi, squashed=True))


def test_actor_predict_is_sb3s_predict_contract() -> None:
    torch.manual_seed(0)
    actor = TanhActor(3, 4, [16, 16]).eval()
    obs = np.random.default_rng(0).normal(size=(5, 3))  # float64, as gymnasium gives
    state = object()
    actions, out_state = actor_predict(actor, LOW, HIGH)(obs, state=state, episode_start=np.ones(5, bool))
    with torch.no_grad():
        a = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    assert out_state is state and actions.shape == (5, 4) and actions.dtype == np.float32
    assert np.array_equal(actions, to_env_numpy(a, LOW, HIGH, squashed=True))
    assert np.all(actions >= LOW) and np.all(actions <= HIGH)


def test_actor_predict_equals_the_zoo_entrys_base_predict() -> None:
    """What ``ZooEntry.base_predict`` returns for a trainer's actor, bit for bit (so it can call actor_predict)."""
    entry = zoo.load("hopper-medium", root=zoo.PACKAGED_ZOO)
    if "model" in entry.meta:
        pytest.skip("the packaged entry's default policy is an SB3 model")
    env = entry.make_env()
    low, high = env.action_space.low, env.action_space.high
    obs = np.stack([env.reset(seed=s)[0] for s in range(4)])
    env.close()
    theirs, _ = entry.base_predict()(obs)
    mine, _ = actor_predict(entry.actor, low, high, device=entry.device)(obs)
    assert np.array_equal(mine, theirs)
