"""Issue 21, ``predict``'s entry gate: no NaN action, bad inputs refused before any state changes, the
policy module never holds adapted weights for another thread, and a hypothesis fuzz of all of it."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itpo_wrap import zoo
from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

# persistent, so every env's adapted parameters are state a refused call could destroy
# eager, explicitly: the fuzzed wrapper is built at import, before conftest's ITPO_BACKEND=eager applies
CFG = AdaptConfig(horizon=2, particles=2, steps=2, step_size=0.05, persistence="persistent", gate="off",
                  max_drift=None, max_action_change=None, termination="hard", backend="eager")
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _actor(seed: int = 0, std: float = 1e-3) -> TanhActor:
    """A 4 -> 2 actor; with its normalizer dividing by 1e-3 a finite float32 observation near 1e38 overflows
    inside it, as the zoo's TD3+BC actors do (issue 21, failure 1)."""
    torch.manual_seed(seed)
    return TanhActor(4, 2, (16, 16), obs_mean=np.zeros(4), obs_std=np.full(4, std))


def _wrapper(seed: int = 0, std: float = 1e-3) -> ITPOPolicyWrapper:
    return ITPOPolicyWrapper(_actor(seed, std), MLPWM(bound=2.0), CFG)


def _obs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def _state(w: ITPOPolicyWrapper) -> list[list[torch.Tensor]]:
    """Every env's adapted parameters ([] before the first call)."""
    n = 0 if w._bank is None else w._bank.n
    return [list(w.adapted_parameters(i).values()) for i in range(n)]


def _same_state(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for ra, rb in zip(a, b, strict=True)
                                    for x, y in zip(ra, rb, strict=True))


def _huge(n: int) -> np.ndarray:
    obs = _obs(n, 9)
    obs[-1, 0] = 1e38  # finite in float32
    return obs


# ----------------------------------------------------------------- 1. non-finite base action
def test_non_finite_base_action_is_an_error_naming_the_observation() -> None:
    with torch.no_grad():  # the precondition: this finite observation makes the base action NaN
        assert not torch.isfinite(_actor()(torch.as_tensor(_huge(1)))).all()
    with pytest.raises(ValueError, match=r"base policy's action for env 1 is not finite .* at the observation "
                                         r"\[ 1\.0000e\+38 .*largest magnitude 1e\+38"):
        _wrapper().predict(_huge(2), deterministic=True)
    with pytest.raises(ValueError, match="not finite"):  # the stochastic path is gated alike
        _wrapper().predict(_huge(2), deterministic=False)


def test_zoo_actor_at_1e38_is_refused_not_nan() -> None:
    if "hopper-medium-replay" not in zoo.list():
        pytest.skip("needs the checkout zoo")
    entry = zoo.load("hopper-medium-replay", policy="td3_bc")
    w = ITPOPolicyWrapper(entry.policy, entry.load_world_model("meanflow"), AdaptConfig(horizon=1, particles=2, steps=1))
    obs = np.zeros(11, np.float32)
    obs[0] = 1e38  # issue 21: returned [nan nan nan] before
    with pytest.raises(ValueError, match="not finite"):
        w.predict(obs, deterministic=True)
    assert np.isfinite(w.predict(np.zeros(11, np.float32), deterministic=True)[0]).all()


# ----------------------------------------------------------------- 1-3. refused before any state changes
BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("non-finite base action", {"observation": _huge(2)}, ValueError, "not finite"),
    ("empty batch", {"observation": np.zeros((0, 4), np.float32)}, ValueError, "no envs"),
    ("complex observation", {"observation": _obs(2, 1).astype(np.complex64)}, TypeError, "complex64"),
    ("complex tensor", {"observation": torch.zeros(2, 4, dtype=torch.complex64)}, TypeError, "complex64"),
    ("bool observation", {"observation": np.ones((2, 4), bool)}, TypeError, "bool"),
    ("string observation", {"observation": [["1", "2", "3", "4"]] * 2}, TypeError, "<U1"),
    ("ragged observation", {"observation": [[1.0, 2.0], [1.0]]}, ValueError, "rectangular"),
    ("wrong width", {"observation": np.zeros((2, 3))}, ValueError, "shape"),
    ("episode_start 'False'", {"episode_start": ["False", "False"]}, ValueError, "not bool-like"),
    ("episode_start 0.5", {"episode_start": [0.5, 0.0]}, ValueError, "not bool-like"),
    ("episode_start nan", {"episode_start": [float("nan"), 0.0]}, ValueError, "not bool-like"),
    ("episode_start 'no'", {"episode_start": "no"}, ValueError, "not bool-like"),
    ("episode_start None entries", {"episode_start": [True, None]}, ValueError, "not bool-like"),
    ("episode_start count", {"episode_start": [True, False, True]}, ValueError, "3 entries for 2 envs"),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "message"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_refused_call_changes_no_state(case: str, kwargs: dict[str, Any], error: type[Exception],
                                       message: str) -> None:
    refused, twin = _wrapper(), _wrapper()
    for w in (refused, twin):
        w.predict(_obs(2, 0), deterministic=True)
    before, info = _state(refused), refused.last_info
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "restarting every env" warning, nothing
        with pytest.raises(error, match=message):
            refused.predict(**{"observation": _obs(2, 1), "deterministic": True, **kwargs})
    assert _same_state(_state(refused), before) and refused.last_info is info
    # and the next call acts exactly as if the refused one had never happened
    assert np.array_equal(refused.predict(_obs(2, 2), deterministic=True)[0],
                          twin.predict(_obs(2, 2), deterministic=True)[0])
    assert _same_state(_state(refused), _state(twin))


@pytest.mark.parametrize("start", [[True, False], np.array([1, 0]), np.array([1.0, 0.0]), torch.tensor([True, False]),
                                   np.array([True, False])])
def test_bool_like_episode_starts_reset_that_env(start: object) -> None:
    w = _wrapper(std=1.0)
    w.predict(_obs(2, 0), deterministic=True)
    assert all(row["param_change"] > 0 for row in w.last_info)
    w.predict(_obs(2, 1), episode_start=start, deterministic=True)
    restarted, carried = w.last_info
    # env 0 started this call from the pretrained weights (its drift is this call's change), env 1 carried on
    assert restarted["param_drift"] == pytest.approx(restarted["param_change"], rel=1e-5)
    assert carried["param_drift"] > carried["param_change"] * 1.01


# ----------------------------------------------------------------- 9. threads
def test_state_dict_readers_in_other_threads_never_see_adapted_weights() -> None:
    actor = _actor()
    w = ITPOPolicyWrapper(actor, MLPWM(bound=2.0), CFG)
    pretrained = {k: v.clone() for k, v in actor.state_dict().items()}
    stop, seen, changed = threading.Event(), [0], [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                snapshot = actor.state_dict()
                changed[0] += any(not torch.equal(snapshot[k], v) for k, v in pretrained.items())
            except RuntimeError:  # e.g. a vmapped tensor swapped into the module mid-call: not a clean read
                changed[0] += 1
            seen[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            w.predict(_obs(2, i), deterministic=i % 2 == 0)
    finally:
        stop.set()
        thread.join()
    assert w.last_info[0]["param_drift"] > 0  # adaptation did move env 0 away from the pretrained weights
    assert seen[0] > 20 and changed[0] == 0


# ----------------------------------------------------------------- fuzz
_FLOATS = st.one_of(st.floats(-10, 10), st.sampled_from([0.0, -0.0, 1e38, -1e38, 3.4e38, 1e-45, float("nan"),
                                                          float("inf"), -float("inf"), 1e300]))
_DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.complex64, np.bool_])
_STARTS = st.one_of(st.none(), st.lists(st.sampled_from([True, False, 0, 1, 0.0, 1.0, 0.5, float("nan"), "False", "no"]),
                                         min_size=0, max_size=4), st.sampled_from(["no", True, 1.0]))
_FUZZED = _wrapper(seed=3)


@FUZZ
@given(n=st.sampled_from([None, 0, 1, 2, 3]), dtype=_DTYPES, values=st.lists(_FLOATS, min_size=12, max_size=12),
       start=_STARTS, deterministic=st.booleans(), width=st.sampled_from([4, 4, 4, 3]))
def test_fuzz_predict_acts_finitely_or_refuses_without_a_trace(n: int | None, dtype: Any, values: list[float],
                                                              start: object, deterministic: bool, width: int) -> None:
    w = _FUZZED
    shape = (width,) if n is None else (n, width)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts of NaN to integers, complex to real
        obs = np.resize(np.asarray(values, np.float64), shape).astype(dtype)
    before, info = _state(w), w.last_info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "predict got N envs after M" is a valid change of env count
            actions, _ = w.predict(obs, episode_start=start, deterministic=deterministic)
    except (ValueError, TypeError):
        assert _same_state(_state(w), before) and w.last_info is info
        return
    rows = 1 if n is None else n
    assert actions.shape == ((2,) if n is None else (rows, 2)) and actions.dtype == np.float32
    assert np.isfinite(actions).all() and np.all(np.abs(actions) <= 2.0 + 1e-6)
    assert len(w.last_info) == rows
