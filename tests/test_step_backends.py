"""``AdaptConfig.backend``: the compiled step gives the eager results, vectorised envs equal separate
single-env runs bit for bit on each backend, a world model the compiler cannot capture falls back to
eager with a warning, and rebuilding wrappers over new models of one architecture compiles nothing new.

Compiles cost seconds each even on these toys, so the compiled tests share shapes where they can.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.step import compiler_available, resolve_backend
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

CFG = AdaptConfig(horizon=2, particles=3, steps=3, step_size=0.05, backend="eager")  # with the safety layer's defaults
needs_compiler = pytest.mark.skipif(not compiler_available(torch.device("cpu")),
                                    reason="torch.compile needs a C++ compiler on this machine")
COMPILED = dataclasses.replace(CFG, backend="compile")


class ValidatingWM(MLPWM):
    """Checks its inputs with a Python branch on tensor data: no compiler can capture that in one graph."""

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if not bool(torch.isfinite(s).all()):
            raise ValueError("s contains NaN")
        return super().next(s, a, noise)


def _obs(n: int | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=4 if n is None else (n, 4)).astype(np.float32)


def _run(cfg: AdaptConfig, wm: MLPWM, n: int | None = None, steps: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Actions of a persistent wrapper over ``steps`` observations (``n`` envs, or one unbatched)."""
    torch.manual_seed(0)
    w = ITPOPolicyWrapper(TanhActor(4, 2, (16, 16)), wm, cfg)
    return [w.predict(_obs(n, seed + t), deterministic=True)[0] for t in range(steps)]


def _vectorised_vs_separate(cfg: AdaptConfig, make: Callable[[], object], obs_dim: int = 4, n: int = 3,
                            hidden: tuple[int, ...] = (16, 16)) -> float:
    """Largest action difference between env ``i`` of one ``n``-env wrapper and a single-env wrapper seeded
    ``noise_seed + i``, over 4 persistent steps."""
    def wrapper(c: AdaptConfig) -> ITPOPolicyWrapper:
        torch.manual_seed(0)
        wm = make()
        return ITPOPolicyWrapper(TanhActor(obs_dim, wm.act_dim, hidden), wm, c)  # type: ignore[attr-defined]

    obs = [np.random.default_rng(t).normal(size=(n, obs_dim)).astype(np.float32) for t in range(4)]
    vectorised = wrapper(cfg)
    together = np.stack([vectorised.predict(o, deterministic=True)[0] for o in obs])
    worst = 0.0
    for i in range(n):
        solo = wrapper(dataclasses.replace(cfg, noise_seed=cfg.noise_seed + i))
        actions = np.stack([solo.predict(o[i], deterministic=True)[0] for o in obs])
        worst = max(worst, float(np.abs(actions - together[:, i]).max()))
    return worst


def _zoo_width_meanflow() -> object:
    """A MeanFlow bundle with the zoo's widths (3 residual blocks of 256, heads of 256), untrained."""
    from itpo_wrap.data.normalization import StateNormalizer
    from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead
    from itpo_wrap.world_model.meanflow import MeanFlowDynamics
    from itpo_wrap.world_model.model import WorldModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    norms = [StateNormalizer(rng.normal(size=d), rng.uniform(0.5, 2, size=d)) for d in (11, 3, 11)]
    return WorldModel(MeanFlowDynamics(11, 3), RewardHead(11, 3), TerminationHead(11), CriticHead(11, 3), *norms,
                      action_low=-np.ones(3), action_high=np.ones(3))


def test_vectorised_equals_separate_runs_bit_for_bit_eager() -> None:
    """Env i's rows go through the same eager kernels as a single env's, so with the zoo's widths (where
    MKL's batched matmuls are row-invariant) the actions agree bit for bit. On tiny toy widths MKL picks
    row-count dependent kernels and they agree to the last bit only (about 1e-7)."""
    wm = _zoo_width_meanflow()  # one shared world model: it is read-only to the wrappers
    cfg = dataclasses.replace(CFG, particles=8, step_size=1e-3)
    assert _vectorised_vs_separate(cfg, lambda: wm, obs_dim=11, hidden=(256, 256)) == 0.0
    assert _vectorised_vs_separate(CFG, lambda: MLPWM(term_above=0.5)) < 1e-6


@needs_compiler
def test_compiled_step_matches_eager_and_vectorises() -> None:
    """Compiled kernels are specialised per shape, so N envs agree with separate runs to float rounding,
    not bit for bit (benchmarks/fast_path.py exact: 2.4e-7 on the zoo's MeanFlow model)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend='compile'")  # no fallback: the toy compiles whole
        compiled = _run(COMPILED, MLPWM(term_above=0.5), n=3)
    eager = _run(CFG, MLPWM(term_above=0.5), n=3)
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert not np.allclose(eager[-1], _run(dataclasses.replace(CFG, steps=0), MLPWM(), n=3)[-1])  # it adapted
    assert _vectorised_vs_separate(COMPILED, lambda: MLPWM(term_above=0.5)) < 1e-5


def test_world_model_the_compiler_cannot_capture_runs_eagerly_with_a_warning() -> None:
    with pytest.warns(RuntimeWarning, match="could not be compiled.*backend='eager'"):
        compiled = _run(COMPILED, ValidatingWM(), steps=2)
    eager = _run(CFG, ValidatingWM(), steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(compiled, eager, strict=True))


@needs_compiler
def test_new_wrappers_over_new_models_of_one_architecture_reuse_the_compiled_step() -> None:
    """The compiled step reads weights as graph inputs: a wrapper per episode over freshly built models
    (a user reloading the zoo entry) must not compile (nor keep) a new graph each time."""
    from torch._dynamo.utils import counters

    cfg = dataclasses.replace(COMPILED, horizon=1, particles=2, steps=1)
    _run(cfg, MLPWM(), n=1, steps=1)  # compile once for these shapes
    before = counters["stats"]["unique_graphs"]
    for seed in range(3):
        torch.manual_seed(seed)
        w = ITPOPolicyWrapper(TanhActor(4, 2, (16, 16)), MLPWM(), cfg)
        w.predict(_obs(None, seed), deterministic=True)
    assert counters["stats"]["unique_graphs"] == before


def test_auto_backend_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITPO_BACKEND", "eager")
    assert resolve_backend("auto", torch.device("cpu")) == "eager"
    assert resolve_backend("compile", torch.device("cpu")) == "compile"  # an explicit choice wins
    monkeypatch.setenv("ITPO_BACKEND", "jit")
    with pytest.raises(ValueError, match="ITPO_BACKEND='jit'.*'eager' or 'compile'"):
        resolve_backend("auto", torch.device("cpu"))
    with pytest.raises(ValueError, match="backend='jax'"):
        AdaptConfig(backend="jax")  # type: ignore[arg-type]


@pytest.mark.slow
@needs_compiler
@pytest.mark.parametrize("kind", ["diffusion", "meanflow", "meanflow_gated"])
def test_real_world_model_compiles_whole_and_matches_eager(kind: str) -> None:
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    def run(backend: str) -> list[np.ndarray]:
        torch.manual_seed(0)
        cfg = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, backend=backend)  # type: ignore[arg-type]
        w = ITPOPolicyWrapper(TanhActor(OBS, ACT, (16, 16)), make_wm(kind), cfg)
        rng = np.random.default_rng(0)
        return [w.predict(rng.normal(size=OBS), deterministic=True)[0] for _ in range(3)]

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend='compile'")  # the bundle compiles whole: no fallback
        compiled = run("compile")
    for a, b in zip(compiled, run("eager"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    from itpo_wrap import zoo

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="sees no CUDA GPU; use device='cpu'"):
        zoo.load("hopper-medium", device="cuda")
    with pytest.raises(ValueError, match="device='tpu9' is not a torch device"):
        zoo.load("hopper-medium", device="tpu9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_cuda_step_matches_the_cpu_step(backend: str) -> None:
    from tests.test_world_model_bundle import ACT, OBS, make_wm

    def run(device: str) -> np.ndarray:
        torch.manual_seed(0)
        cfg = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, backend=backend, device=device)  # type: ignore[arg-type]
        w = ITPOPolicyWrapper(TanhActor(OBS, ACT, (16, 16)).to(device), make_wm("meanflow").to(device), cfg)
        return np.stack([w.predict(np.full(OBS, 0.1 * t), deterministic=True)[0] for t in range(3)])

    np.testing.assert_allclose(run("cuda"), run("cpu"), atol=1e-4)
