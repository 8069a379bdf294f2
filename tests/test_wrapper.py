"""``ITPOPolicyWrapper`` with torch actors and toy world models: the SB3 predict contract, zero steps,
in-place safety and restore, persistence modes, per-env equivalence, NaN handling, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM, LinearQuadraticWM

# the wrapper's mechanics (persistence, resets, fallbacks) with the safety layer off: the paper's reading
PAPER: dict[str, object] = {"persistence": "persistent", "gate": "off", "max_drift": None, "termination": "hard"}
CFG = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, **PAPER)  # type: ignore[arg-type]


def _actor(obs_dim: int = 4, act_dim: int = 2, seed: int = 0) -> TanhActor:
    torch.manual_seed(seed)
    return TanhActor(obs_dim, act_dim, (16, 16))


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _obs(n: int, seed: int, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))  # float64, as envs give


def test_zero_steps_is_the_base_action_exactly() -> None:
    actor, wm = _actor(), MLPWM(bound=2.0)
    w = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0))
    obs = _obs(3, 0)
    with torch.no_grad():
        expected = (-2.0 + (0.5 * (actor(torch.as_tensor(obs, dtype=torch.float32)).numpy() + 1.0) * 4.0))
    batched, _ = w.predict(obs, deterministic=True)
    single, _ = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0)).predict(obs[0], deterministic=True)
    assert batched.dtype == np.float32 and batched.shape == (3, 2) and single.shape == (2,)
    assert np.array_equal(batched, expected) and np.array_equal(single, expected[0])


def test_zero_action_trust_region_gives_the_base_action_exactly_while_adapting() -> None:
    obs = _obs(3, 5)
    base, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0)).predict(obs, deterministic=True)
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05,
                                                                  max_action_change=0.0))
    actions, _ = w.predict(obs, deterministic=True)
    assert np.array_equal(actions, base)
    assert all(row["param_change"] > 0 and row["action_change"] == 0.0 for row in w.last_info)  # it did adapt


@pytest.mark.parametrize("n_envs", [1, 3])
def test_action_trust_region_bounds_the_change_and_binds(n_envs: int) -> None:
    obs, bound = _obs(n_envs, 6), 0.01
    big = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.5, max_action_change=None)
    base, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0)).predict(obs, deterministic=True)
    free, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), big).predict(obs, deterministic=True)
    cfg = AdaptConfig(**{**big.to_dict(), "max_action_change": bound})
    held, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), cfg).predict(obs, deterministic=True)
    # env units here are 2x the policy's [-1, 1] units (bound=2.0 maps [-1, 1] to [-2, 2])
    assert np.abs(free - base).max() > 2 * bound  # without the bound the step moves further...
    assert np.abs(held - base).max() <= 2 * bound * (1 + 1e-5)  # ...with it, no coordinate does
    moved = np.abs(free - base) > 2 * bound
    assert np.allclose(np.abs(held - base)[moved], 2 * bound, rtol=1e-4)  # clipped onto the boundary


class _EnvUnitActor(torch.nn.Module):
    """The same actor acting in env units (the Box [-2, 2]), as a d3rlpy policy does."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _actor()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.inner(obs)


def test_action_trust_region_means_the_same_fraction_of_the_box_for_an_env_unit_policy() -> None:
    obs, big = _obs(3, 6), AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.5, max_action_change=0.01)
    squashed, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), big).predict(obs, deterministic=True)
    env_units, _ = ITPOPolicyWrapper(_EnvUnitActor(), MLPWM(bound=2.0), big, squashed=False).predict(
        obs, deterministic=True)
    base, _ = ITPOPolicyWrapper(_EnvUnitActor(), MLPWM(bound=2.0), AdaptConfig(steps=0), squashed=False).predict(
        obs, deterministic=True)
    # 0.01 of [-1, 1] is 0.02 env units on [-2, 2], for both kinds of policy
    assert np.abs(env_units - base).max() <= 0.02 * (1 + 1e-5) and np.abs(squashed - base).max() <= 0.02 * (1 + 1e-5)
    assert np.isclose(np.abs(env_units - base).max(), 0.02, rtol=1e-4)  # it binds at the same width


def test_adaptation_changes_the_action_within_bounds_and_reports() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=0.5), CFG)
    actions, state = w.predict(_obs(2, 1), state=("h",), deterministic=True)
    assert state == ("h",) and np.all(np.abs(actions) <= 0.5)
    for row in w.last_info:
        assert row["action_change"] > 0 and row["param_change"] > 0 and not row["fallback"]
        assert row["j_after"] > row["j_before"] and row["grad_norm"] > 0 and row["ms"] > 0
        assert set(row) >= {"j_before", "j_after", "grad_norm", "param_change", "param_drift", "action_change",
                            "fallback", "fallback_reason", "gate_rejected", "ms"}


def test_predict_works_under_no_grad_and_inference_mode() -> None:
    obs = torch.as_tensor(_obs(2, 2))
    runs = []
    for ctx in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG)
        with ctx():
            runs.append([w.predict(obs.clone(), deterministic=True)[0] for _ in range(2)])
            assert w.last_info[0]["param_change"] > 0
    for run in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(run, runs[0], strict=True))


def test_module_is_pretrained_between_calls_and_restore_is_bit_exact() -> None:
    actor = _actor()
    pretrained = _params(actor)
    w = ITPOPolicyWrapper(actor, MLPWM(), CFG)
    for t in range(25):
        w.predict(_obs(1, t), deterministic=True)
        assert _same(_params(actor), pretrained)  # model.save() at any point writes pretrained weights
    adapted = w.adapted_parameters(0)
    assert not _same(list(adapted.values()), pretrained) and w.last_info[0]["param_drift"] > 0
    with w.use_adapted(0):
        assert _same(_params(actor), list(adapted.values()))
    assert _same(_params(actor), pretrained)
    with w:
        w.predict(_obs(1, 99))
    assert _same(list(w.adapted_parameters(0).values()), pretrained) and _same(_params(actor), pretrained)


def test_module_is_restored_when_adaptation_raises() -> None:
    actor, wm = _actor(), MLPWM()
    pretrained = _params(actor)
    # eager: a compiled step would have captured the world model's methods, so the patch below would not reach it
    w = ITPOPolicyWrapper(actor, wm, AdaptConfig(**{**CFG.to_dict(), "backend": "eager"}))
    w.predict(_obs(1, 0))

    def boom(*_: object) -> torch.Tensor:
        raise RuntimeError("world model failure")

    wm.value = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="world model failure"):
        w.predict(_obs(1, 1))
    assert _same(_params(actor), pretrained) and all(p.requires_grad for p in actor.parameters())


def test_persistent_carries_and_episode_start_resets_per_env() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG)
    w.predict(_obs(2, 0), episode_start=np.array([True, True]))
    w.predict(_obs(2, 1), episode_start=np.array([False, False]))
    drift = [r["param_drift"] for r in w.last_info]
    change = [r["param_change"] for r in w.last_info]
    assert all(d > c for d, c in zip(drift, change, strict=True))  # two steps accumulated
    starts = np.array([True, False])
    w.predict(_obs(2, 2), episode_start=starts)
    assert starts.tolist() == [True, False]  # not mutated
    assert w.last_info[0]["param_drift"] == pytest.approx(w.last_info[0]["param_change"], rel=1e-5)
    assert w.last_info[1]["param_drift"] > w.last_info[1]["param_change"]


def test_reset_each_step_always_starts_from_pretrained() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(), AdaptConfig(horizon=2, particles=2, steps=2, step_size=0.05,
                                                          persistence="reset_each_step"))
    for t in range(3):
        w.predict(_obs(1, t))
        assert w.last_info[0]["param_drift"] == pytest.approx(w.last_info[0]["param_change"], rel=1e-5)


def test_reset_reproduces_a_fresh_wrapper() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG)
    first = [w.predict(_obs(1, t))[0] for t in range(3)]
    w.reset()
    again = [w.predict(_obs(1, t))[0] for t in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("cfg", [
    CFG,
    AdaptConfig(horizon=2, particles=3, steps=2, step_size=0.05, optimizer="adam", grad_clip=0.5, gate="held_out"),
])
def test_vectorised_equals_separate_single_env_runs(cfg: AdaptConfig) -> None:
    actor, wm, n = _actor(), MLPWM(term_above=1.5), 3
    vec = ITPOPolicyWrapper(actor, wm, cfg)
    solo = [ITPOPolicyWrapper(actor, wm, AdaptConfig(**{**cfg.to_dict(), "noise_seed": cfg.noise_seed + i}))
            for i in range(n)]
    starts = [np.array([True, True, True]), np.array([False, True, False]), np.array([False, False, True]),
              np.array([True, False, False])]
    for t, start in enumerate(starts):
        obs = _obs(n, 10 + t)
        a_vec, _ = vec.predict(obs, episode_start=start, deterministic=True)
        a_solo = np.stack([s.predict(obs[i], episode_start=start[i:i + 1], deterministic=True)[0]
                           for i, s in enumerate(solo)])
        np.testing.assert_allclose(a_vec, a_solo, atol=1e-5, rtol=0)
        assert any(r["action_change"] > 1e-3 for r in vec.last_info)


def test_nan_observation_is_a_clear_error() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG)
    obs = _obs(3, 0)
    obs[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"env\(s\) \[1\] contains NaN"):
        w.predict(obs)
    with pytest.raises(ValueError, match=r"expected \(4,\) or \(n_envs, 4\)"):
        w.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="episode_start has 2 entries for 3 envs"):
        w.predict(_obs(3, 0), episode_start=np.array([True, False]))


def test_nan_world_model_falls_back_to_the_base_action_for_that_env_only() -> None:
    actor, wm = _actor(), MLPWM()
    wm.poison, wm.poison_above = True, 50.0
    obs = _obs(2, 0)
    obs[1, 0] = 100.0  # only env 1's imagined rewards are NaN
    w = ITPOPolicyWrapper(actor, wm, CFG)
    actions, _ = w.predict(obs, deterministic=True)
    base, _ = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0)).predict(obs, deterministic=True)
    assert np.isfinite(actions).all() and np.array_equal(actions[1], base[1]) and not np.array_equal(actions[0], base[0])
    assert [r["fallback"] for r in w.last_info] == [False, True]
    assert w.last_info[1]["fallback_reason"] == "non-finite objective or gradient"
    assert _same(list(w.adapted_parameters(1).values()), _params(actor))


def test_known_optimum_adaptation_moves_the_action_toward_it() -> None:
    wm = LinearQuadraticWM(bound=2.0)
    actor = _actor(3, 2)
    cfg = AdaptConfig(horizon=1, particles=1, steps=100, step_size=0.05, discount=0.9, persistence="reset_each_step",
                      gate="off", max_drift=None, max_action_change=None)
    w = ITPOPolicyWrapper(actor, wm, cfg)
    for seed in range(3):
        obs = np.random.default_rng(seed).uniform(-0.5, 0.5, size=3)
        a_star = wm.optimal_first_action(torch.as_tensor(obs, dtype=torch.float32), 0.9).numpy()
        assert np.all(np.abs(a_star) < 1.5)  # inside the Box, reachable through tanh
        base, _ = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0)).predict(obs)
        adapted, _ = w.predict(obs)
        assert np.linalg.norm(adapted - a_star) < 0.1 * np.linalg.norm(base - a_star)


def test_changed_policy_becomes_the_new_pretrained() -> None:
    actor = _actor()
    w = ITPOPolicyWrapper(actor, MLPWM(), CFG)
    w.predict(_obs(1, 0))
    with torch.no_grad():
        actor.net[0].bias.add_(1.0)  # e.g. more training after wrapping
    trained = _params(actor)
    with pytest.warns(UserWarning, match="changed outside the wrapper"):
        w.predict(_obs(1, 1))
    assert _same(_params(actor), trained)


def test_mismatched_world_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"maps a \(1, 4\) observation to shape \(1, 3\)"):
        ITPOPolicyWrapper(_actor(4, 3), MLPWM())
    with pytest.raises(TypeError, match="not a WorldModelLike"):
        ITPOPolicyWrapper(_actor(), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="disagreement"):
        ITPOPolicyWrapper(_actor(), MLPWM(), AdaptConfig(gate="disagreement", gate_max_disagreement=1.0))


def test_logger_hook_records_adapt_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from stable_baselines3.common.logger import configure

    logger = configure(str(tmp_path), ["csv"])
    w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG, logger=logger, log_interval=2)
    for t in range(4):
        w.predict(_obs(2, t))
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"adapt/j_before", "adapt/grad_norm", "adapt/fallback", "adapt/ms"} <= set(header)


class _EnsembleWM(MLPWM):
    """An MLPWM that reports a constant ensemble disagreement."""

    def __init__(self, disagreement: float) -> None:
        super().__init__()
        self.level = disagreement

    def disagreement(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.full((s.shape[0],), self.level)


@pytest.mark.parametrize(("level", "rejected"), [(0.5, False), (2.0, True)])
def test_disagreement_gate_keeps_updates_only_where_the_model_agrees(level: float, rejected: bool) -> None:
    actor = _actor()
    cfg = AdaptConfig(horizon=2, particles=2, steps=2, step_size=0.05, gate="disagreement", gate_max_disagreement=1.0)
    w = ITPOPolicyWrapper(actor, _EnsembleWM(level), cfg)
    obs = _obs(2, 0)
    actions, _ = w.predict(obs, deterministic=True)
    base, _ = ITPOPolicyWrapper(actor, MLPWM(), AdaptConfig(steps=0)).predict(obs, deterministic=True)
    assert [r["gate_rejected"] for r in w.last_info] == [rejected, rejected]
    assert np.array_equal(actions, base) == rejected
    assert (w.last_info[0]["param_drift"] == 0.0) == rejected


def test_device_must_be_the_policys() -> None:
    with pytest.raises(ValueError, match="lives on cpu"):
        ITPOPolicyWrapper(_actor(), MLPWM(), AdaptConfig(device="cuda:0"))
    assert ITPOPolicyWrapper(_actor(), MLPWM(), AdaptConfig(device="cpu")).device == torch.device("cpu")


def test_predict_inside_use_adapted_is_refused() -> None:
    w = ITPOPolicyWrapper(_actor(), MLPWM(), CFG)
    w.predict(_obs(1, 0))
    with w.use_adapted(0), pytest.raises(RuntimeError, match="inside use_adapted"):
        w.predict(_obs(1, 1))
