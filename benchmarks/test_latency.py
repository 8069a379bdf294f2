"""``predict()`` latency of the wrapper against the base policy, one torch thread (pytest-benchmark).

Models have the zoo's shapes and widths (obs 17 / act 6 as HalfCheetah; TD3+BC actor 2x256; world model
3 residual blocks of 256, reward head 3x256, termination head 2x256, twin critic 2x256); weights are
untrained, which does not change the time. The grid is one factor at a time around the default
(H = 5, M = 8, E = 5, one env): H = 1, M = 32, E = 1, and a vectorised batch of 8 envs, for the
diffusion model with 10 and 5 sampling steps and for one-step MeanFlow, on the eager backend; the
compiled backend (``AdaptConfig(backend="compile")``) at the default setting and with 8 envs (its first
call, not timed, compiles for the shape: minutes the first time on a machine, seconds from inductor's
cache afterwards).

    make bench    # JSON in benchmarks/results/latency.json; docs/latency.md is rendered from it
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.networks import TanhActor
from itpo_wrap.world_model.config import DiffusionConfig, MeanFlowConfig
from itpo_wrap.world_model.diffusion import DiffusionDynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel

OBS, ACT = 17, 6
MODELS = {"diffusion-K10": ("diffusion", 10), "diffusion-K5": ("diffusion", 5), "meanflow": ("meanflow", 1)}
SETTINGS = {  # name: (horizon, particles, steps, n_envs)
    "default": (5, 8, 5, 1), "H1": (1, 8, 5, 1), "M32": (5, 32, 5, 1), "E1": (5, 8, 1, 1), "8envs": (5, 8, 5, 8)}


def world_model(kind: str, k: int) -> WorldModel:
    torch.manual_seed(0)
    dyn = (DiffusionDynamics(OBS, ACT, DiffusionConfig(num_inference_steps=k)) if kind == "diffusion"
           else MeanFlowDynamics(OBS, ACT, MeanFlowConfig()))
    rng = np.random.default_rng(0)
    norm = [StateNormalizer(rng.normal(size=d), rng.uniform(0.5, 2, size=d)) for d in (OBS, ACT, OBS)]
    return WorldModel(dyn, RewardHead(OBS, ACT), TerminationHead(OBS), CriticHead(OBS, ACT), *norm,
                      action_low=-np.ones(ACT), action_high=np.ones(ACT), env_id="HalfCheetah-v5")


def _actor() -> TanhActor:
    torch.manual_seed(1)
    return TanhActor(OBS, ACT, (256, 256))


def _record(benchmark: Any, **info: Any) -> None:
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info.update(info)


def test_base_policy_predict(benchmark: Any) -> None:
    """What SB3's predict does for a deterministic torch actor: numpy in, no-grad forward, numpy out."""
    actor, obs = _actor(), np.random.default_rng(0).normal(size=(1, OBS))

    def predict() -> np.ndarray:
        with torch.no_grad():
            return actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    benchmark.group = "predict"
    _record(benchmark, model="base", setting="default", n_envs=1)
    benchmark.pedantic(predict, rounds=200, warmup_rounds=10, iterations=1)


@pytest.mark.parametrize("backend", ["eager", "compile"])
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("model", list(MODELS))
def test_wrapper_predict(benchmark: Any, model: str, setting: str, backend: str) -> None:
    horizon, particles, steps, n_envs = SETTINGS[setting]
    kind, k = MODELS[model]
    if model == "diffusion-K5" and setting != "default":
        pytest.skip("K = 5 only at the default setting: the other factors scale as for K = 10")
    if backend == "compile" and setting not in ("default", "8envs"):
        pytest.skip("compiled: the default setting and 8 envs only (each shape compiles once, in minutes)")
    cfg = AdaptConfig(horizon=horizon, particles=particles, steps=steps, device="cpu", backend=backend)  # type: ignore[arg-type]
    wrapper = ITPOPolicyWrapper(_actor(), world_model(kind, k), cfg)
    obs = np.random.default_rng(0).normal(size=(n_envs, OBS))
    for _ in range(2):  # compile (or warm up) for these shapes before timing
        wrapper.predict(obs)
    benchmark.group = f"predict-{setting}"
    _record(benchmark, model=model, setting=setting, horizon=horizon, particles=particles, steps=steps,
            n_envs=n_envs, backend=backend)
    rounds = 5 if (kind == "diffusion" and (n_envs > 1 or particles > 8)) else 10
    actions, _ = benchmark.pedantic(wrapper.predict, args=(obs,), rounds=rounds, warmup_rounds=1, iterations=1)
    assert actions.shape == (n_envs, ACT) and np.all(np.isfinite(actions))
    assert not any(row["fallback"] for row in wrapper.last_info)
