"""``AdaptConfig(trace=True)``: the traced objective gives the eager results, and a world model with
data-dependent Python control flow is refused (eager run, with a warning) rather than traced wrongly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

CFG = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, trace=False)
TRACED = AdaptConfig(**{**CFG.to_dict(), "trace": True})


class ValidatingWM(MLPWM):
    """Checks its inputs with a Python branch on tensor data, which a trace would freeze."""

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if not bool(torch.isfinite(s).all()):
            raise ValueError("s contains NaN")
        return super().next(s, a, noise)


def _run(cfg: AdaptConfig, wm: MLPWM, steps: int = 4) -> list[np.ndarray]:
    torch.manual_seed(0)
    w = ITPOPolicyWrapper(TanhActor(4, 2, (16, 16)), wm, cfg)
    rng = np.random.default_rng(0)
    return [w.predict(rng.normal(size=4), deterministic=True)[0] for _ in range(steps)]


def test_traced_objective_matches_eager_over_persistent_steps() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no refusal warning may appear
        traced = _run(TRACED, MLPWM(term_above=0.5))
    eager = _run(CFG, MLPWM(term_above=0.5))
    for a, b in zip(traced, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert not np.allclose(eager[-1], _run(AdaptConfig(steps=0), MLPWM())[-1])  # it really adapted


def test_untraceable_world_model_runs_eagerly_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="trace was refused.*data-dependent"):
        traced = _run(TRACED, ValidatingWM(), steps=2)
    eager = _run(CFG, ValidatingWM(), steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(traced, eager, strict=True))


@pytest.mark.parametrize("kind", ["diffusion", "meanflow", "meanflow_gated"])
def test_real_world_model_traces_and_matches_eager(kind: str) -> None:
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    def run(trace: bool) -> tuple[list[np.ndarray], ITPOPolicyWrapper]:
        torch.manual_seed(0)
        cfg = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, trace=trace)
        w = ITPOPolicyWrapper(TanhActor(OBS, ACT, (16, 16)), make_wm(kind), cfg)
        rng = np.random.default_rng(0)
        return [w.predict(rng.normal(size=OBS), deterministic=True)[0] for _ in range(3)], w

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundle must be traceable: no refusal warning
        traced, w = run(True)
    assert len(w._traced) == 1 and next(iter(w._traced.values())) is not None
    eager, _ = run(False)
    for a, b in zip(traced, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_replacing_the_critic_gives_a_new_trace() -> None:
    from itpo_wrap.world_model.heads import CriticHead
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    def run(trace: bool) -> tuple[list[float], ITPOPolicyWrapper]:
        torch.manual_seed(0)
        wm = make_wm("meanflow")
        actor = TanhActor(OBS, ACT, (16, 16))
        w = ITPOPolicyWrapper(actor, wm, AdaptConfig(horizon=2, particles=2, steps=1, trace=trace))
        w.predict(np.zeros(OBS))
        js = [w.last_info[0]["j_before"]]
        torch.manual_seed(1)
        wm.set_critic(CriticHead(OBS, ACT, (8,)))  # a different terminal value, mid-episode
        w.predict(np.zeros(OBS))
        return js + [w.last_info[0]["j_before"]], w

    traced, w = run(True)
    eager, _ = run(False)
    assert len(w._traced) == 2
    np.testing.assert_allclose(traced, eager, rtol=1e-5)


def test_wrappers_over_the_same_objects_share_one_trace() -> None:
    """PyTorch never frees a trace, so a wrapper per episode must not build one per episode: wrappers over
    the same policy and world model reuse the first trace; other objects or another config get their own."""
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    policy, wm = TanhActor(OBS, ACT, (16, 16)), make_wm("meanflow")
    cfg = AdaptConfig(horizon=3, particles=4, steps=2, step_size=0.05, trace=True)

    def trace_of(p: torch.nn.Module, w: object, c: AdaptConfig) -> object:
        wrapper = ITPOPolicyWrapper(p, w, c)
        wrapper.predict(np.zeros(OBS), deterministic=True)
        (traced,) = wrapper._traced.values()
        assert traced is not None
        return traced

    first = trace_of(policy, wm, cfg)
    assert trace_of(policy, wm, cfg) is first
    assert trace_of(policy, make_wm("meanflow"), cfg) is not first
    assert trace_of(policy, wm, AdaptConfig(**{**cfg.to_dict(), "discount": 0.9})) is not first


@pytest.mark.parametrize("kind", ["diffusion", "meanflow"])
def test_first_wrapper_in_a_process_acts_like_every_later_one(kind: str) -> None:
    """TorchScript runs a new trace's first calls unoptimised, with last-bit differences that closed-loop
    control amplifies; the trace is warmed up when built, so a wrapper that builds it (the first in the
    process) acts bit for bit like the wrappers that reuse it."""
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    torch.manual_seed(0)
    policy, wm = TanhActor(OBS, ACT, (64, 64)), make_wm(kind)
    cfg = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, trace=True)
    obs = np.random.default_rng(0).normal(size=(4, OBS))

    def run() -> np.ndarray:
        w = ITPOPolicyWrapper(policy, wm, cfg)
        return np.stack([w.predict(o, deterministic=True)[0] for o in obs])

    first, second, third = run(), run(), run()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(second, third)
