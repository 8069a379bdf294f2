"""The d3rlpy 2.x adapter (optional extra, skipped without d3rlpy): tiny TD3+BC, SAC, IQL and BC algorithms (and,
for the bit-exact check, every other one it names) fitted for two steps on a fake Pendulum-shaped MDPDataset, on
CPU. Mirrors tests/test_adapters.py and tests/test_wrapper_sb3.py: zero adaptation steps give d3rlpy's own
``predict`` bit for bit (its observation and action scalers included), ``deterministic=False`` is
``sample_action``'s draw, adaptation changes the action, and the algorithm's weights are never written
(``restore``/``reset`` and ``use_adapted`` leave them bit-exact)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from itpo_wrap.adapters import make_adapter, supported_policies, to_env_numpy
from itpo_wrap.config import AdaptConfig
from itpo_wrap.step import compiler_available
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM

d3rlpy = pytest.importorskip("d3rlpy")

ADAPT = AdaptConfig(horizon=2, particles=2, steps=2, step_size=1e-2, gate="off")
ALGOS = ["TD3PlusBC", "SAC", "IQL", "BC"]
STOCHASTIC = {"SAC": True, "IQL": True, "TD3PlusBC": False, "BC": False}
EVERY = [*ALGOS, "ReBRAC", "PRDC", "TD3", "DDPG", "CQL", "CalQL", "AWAC"]  # all that DESCRIPTION names


def _dataset(n: int = 64, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n)
    terminals[-1] = 1.0
    return d3rlpy.dataset.MDPDataset(rng.normal(size=(n, 3)).astype(np.float32),
                                     rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
                                     rng.normal(size=(n, 1)).astype(np.float32), terminals)


def _scalers(kind: str) -> dict[str, Any]:
    """``"standard"``: standard observation and min-max action scalers fitted from the dataset by ``fit``;
    ``"min_max"``: min-max observation scaler fitted, action scaler given the env's Box; ``"none"``: no scalers (the
    actor's tanh output is the action)."""
    pre = d3rlpy.preprocessing
    if kind == "standard":
        return {"observation_scaler": pre.StandardObservationScaler(), "action_scaler": pre.MinMaxActionScaler()}
    if kind == "min_max":
        return {"observation_scaler": pre.MinMaxObservationScaler(),
                "action_scaler": pre.MinMaxActionScaler(minimum=np.array([-2.0]), maximum=np.array([2.0]))}
    return {}


def _algo(name: str, scalers: str = "standard", seed: int = 0) -> Any:
    """A d3rlpy ``name`` with 16x16 networks, fitted for 2 steps, with :func:`_scalers` ``scalers``."""
    d3rlpy.seed(seed)
    enc = d3rlpy.models.VectorEncoderFactory([16, 16])
    encoders = {"encoder_factory": enc} if name == "BC" else {"actor_encoder_factory": enc, "critic_encoder_factory": enc}
    extra = {"value_encoder_factory": enc} if name == "IQL" else {}
    scalers = _scalers(scalers)
    config = getattr(d3rlpy.algos, f"{name}Config")(batch_size=8, **encoders, **extra, **scalers)
    algo = config.create(device="cpu:0")
    dataset = _dataset()
    algo.fit(dataset, n_steps=2, n_steps_per_epoch=2, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    return algo


def _wm() -> MLPWM:
    return MLPWM(obs_dim=3, act_dim=1, hidden=16, bound=2.0, seed=1)  # Pendulum's Box [-2, 2] contains d3rlpy's actions


def _obs(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, size=(n, 3))  # float64, as gymnasium gives


def _state(algo: Any) -> dict[str, torch.Tensor]:
    """Every tensor of every d3rlpy module (actor, critics, targets), by name."""
    out = {}
    for field, module in vars(algo.impl.modules).items():
        if isinstance(module, torch.nn.Module):
            out.update({f"{field}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("scalers", ["standard", "min_max", "none"])
@pytest.mark.parametrize("name", EVERY)
def test_zero_steps_are_d3rlpy_predict_bit_for_bit(name: str, scalers: str) -> None:
    algo = _algo(name, scalers)
    obs = _obs()
    theirs = algo.predict(obs)
    adapter = make_adapter(algo)
    assert not adapter.squashed and adapter.action_low is None and adapter.obs_dim == 3
    with torch.no_grad():
        a = adapter.forward(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    assert np.array_equal(to_env_numpy(a, -2 * np.ones(1, np.float32), 2 * np.ones(1, np.float32), False), theirs)
    assert np.array_equal(ITPOPolicyWrapper(algo, _wm(), AdaptConfig(steps=0)).predict(obs, deterministic=True)[0], theirs)
    one = ITPOPolicyWrapper(algo, _wm(), AdaptConfig(steps=0)).predict(obs[0], deterministic=True)[0]
    assert np.array_equal(one, algo.predict(obs[:1])[0])  # (a batch of 1, as d3rlpy's own: BLAS kernels differ by size)


@pytest.mark.parametrize("name", ["SAC", "IQL", "AWAC"])
def test_stochastic_action_is_d3rlpy_sample_action(name: str) -> None:
    algo = _algo(name)
    adapter = make_adapter(algo)
    assert adapter.stochastic
    obs = _obs(64)
    torch.manual_seed(3)
    theirs = algo.sample_action(obs)
    torch.manual_seed(3)
    with torch.no_grad():
        mine = adapter.sample(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    assert np.array_equal(mine, theirs) and theirs.std() > 0  # the same draws, through the same scalers
    wrapper = ITPOPolicyWrapper(algo, _wm(), ADAPT)
    draws = np.stack([wrapper.predict(obs[0], deterministic=False)[0] for _ in range(5)])
    assert np.all(np.abs(draws) <= 2.0) and draws.std() > 0


@pytest.mark.parametrize("name", ALGOS)
def test_adapts_only_the_actor_mean_path_with_live_handles(name: str) -> None:
    algo = _algo(name)
    adapter = make_adapter(algo)
    assert adapter.stochastic == STOCHASTIC[name]
    assert adapter.names and not any("logstd" in n for n in adapter.names)
    actor = {id(p) for p in algo.impl.policy.parameters()}
    assert all(id(p) in actor for p in adapter.params)  # the algorithm's own actor tensors, nothing else


@pytest.mark.parametrize("name", ["TD3PlusBC", "SAC"])
def test_batched_forward_equals_each_copy(name: str) -> None:
    adapter = make_adapter(_algo(name))
    stacked = [torch.stack([p.detach() + 0.01 * i for i in range(3)]) for p in adapter.params]
    obs = torch.randn(3, 4, 3)
    out = adapter.batched_forward(stacked, obs)
    for i in range(3):
        one = torch.func.functional_call(adapter.module, {n: s[i] for n, s in zip(adapter.names, stacked, strict=True)},
                                         (obs[i],))
        assert torch.allclose(out[i], one, atol=1e-6)


@pytest.mark.parametrize("name", ["TD3PlusBC", "SAC"])
def test_adaptation_changes_the_action_and_never_the_algorithm(name: str) -> None:
    algo = _algo(name)
    obs = _obs(4)
    before, base = _state(algo), algo.predict(obs)
    wrapper = ITPOPolicyWrapper(algo, _wm(), ADAPT)
    pretrained = wrapper.adapted_parameters()
    adapted = wrapper.predict(obs, deterministic=True)[0]
    assert not np.array_equal(adapted, base) and min(r["param_drift"] for r in wrapper.last_info) > 0
    assert _same(_state(algo), before) and np.array_equal(algo.predict(obs), base)  # d3rlpy's algo is untouched
    with wrapper.use_adapted(env=2):  # env 2's adapted weights lent to the algorithm: d3rlpy acts as the wrapper did
        assert np.allclose(algo.predict(obs[2:3]), adapted[2:3], atol=1e-6)
    assert _same(_state(algo), before)
    wrapper.restore()
    assert all(torch.equal(p, q) for p, q in zip(wrapper.adapted_parameters(2).values(), pretrained.values(),
                                                 strict=True))
    wrapper.reset()  # a fresh start: the first call again, bit for bit
    assert np.array_equal(wrapper.predict(obs, deterministic=True)[0], adapted)


def test_episode_start_restarts_from_the_pretrained_weights() -> None:
    algo = _algo("TD3PlusBC")
    obs = _obs(2)
    wrapper = ITPOPolicyWrapper(algo, _wm(), AdaptConfig(horizon=2, particles=2, steps=2, step_size=1e-2, gate="off",
                                                         persistence="persistent", max_drift=None,
                                                         max_action_change=None))
    wrapper.predict(obs)
    wrapper.predict(obs)
    drift = [r["param_drift"] for r in wrapper.last_info]
    wrapper.predict(obs, episode_start=np.array([True, False]))
    after = [r["param_drift"] for r in wrapper.last_info]
    assert after[0] < drift[0] and after[1] > drift[1]  # env 0 restarted from the pretrained weights, env 1 kept going


def test_saved_algorithm_after_adapted_use_is_the_pretrained_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    algo = _algo("SAC")
    before, obs = _state(algo), _obs()
    base = algo.predict(obs)
    with ITPOPolicyWrapper(algo, _wm(), ADAPT) as wrapper:
        for _ in range(3):
            wrapper.predict(obs, deterministic=False)
    algo.save(str(tmp_path / "sac.d3"))
    loaded = d3rlpy.load_learnable(str(tmp_path / "sac.d3"), device="cpu:0")
    assert _same(_state(loaded), before) and np.array_equal(loaded.predict(obs), base)
    assert np.array_equal(ITPOPolicyWrapper(loaded, _wm(), AdaptConfig(steps=0)).predict(obs, deterministic=True)[0], base)


def test_scalers_run_as_traceable_copies_unless_unknown() -> None:
    from itpo_wrap.adapters.d3rlpy import _Scaler

    for scalers in ("standard", "min_max"):
        module: Any = make_adapter(_algo("SAC", scalers)).module
        assert module.obs_scaler.scaler is None and module.action_scaler.scaler is None  # d3rlpy's formula, as buffers
    standard = d3rlpy.preprocessing.StandardObservationScaler
    # a scaler that only looks like d3rlpy's (same name, other formula): the probe catches it, its own method runs
    lookalike = type("StandardObservationScaler", (standard,),
                     {"transform": lambda self, x: standard.transform(self, x).clamp(-1.0, 1.0)})
    custom = lookalike(mean=np.zeros(3), std=np.full(3, 0.1))
    scaler = _Scaler(custom, "transform", torch.device("cpu"), 3)
    x = torch.randn(5, 3)
    assert scaler.scaler is not None and torch.equal(scaler(x), custom.transform(x))


@pytest.mark.skipif(not compiler_available(torch.device("cpu")), reason="torch.compile needs a C++ compiler on CPU")
def test_compiled_step_runs_through_the_scalers() -> None:
    algo = _algo("SAC")
    obs = _obs(2)
    eager = ITPOPolicyWrapper(algo, _wm(), ADAPT).predict(obs, deterministic=True)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AdaptConfig(horizon=2, particles=2, steps=2, step_size=1e-2, gate="off", backend="compile")
        compiled = ITPOPolicyWrapper(algo, _wm(), config).predict(obs, deterministic=True)[0]
    assert not [w for w in caught if "could not be compiled" in str(w.message)]  # no silent eager fallback
    assert np.allclose(compiled, eager, atol=1e-5) and not np.array_equal(compiled, algo.predict(obs))


def _unbuilt() -> Any:
    return d3rlpy.algos.TD3PlusBCConfig().create(device="cpu:0")


def _discrete() -> Any:
    algo = d3rlpy.algos.DQNConfig().create(device="cpu:0")
    algo.create_impl((3,), 2)
    return algo


def _bcq() -> Any:
    algo = d3rlpy.algos.BCQConfig().create(device="cpu:0")
    algo.create_impl((3,), 1)
    return algo


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (_unbuilt, ValueError, "no networks yet"),
        (_discrete, TypeError, "discrete action space"),
        (_bcq, TypeError, "not one actor's output"),
    ],
)
def test_unsupported_d3rlpy_algorithms_are_refused(make, error: type, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        make_adapter(make())
    assert any("d3rlpy" in s for s in supported_policies())


def test_torch_only_options_are_refused_for_d3rlpy() -> None:
    with pytest.raises(ValueError, match="torch actors only"):
        make_adapter(_algo("TD3PlusBC"), squashed=False)


def test_library_import_never_imports_d3rlpy() -> None:
    code = ("import sys, itpo_wrap, itpo_wrap.adapters, itpo_wrap.wrapper; from itpo_wrap.adapters import make_adapter; "
            "from itpo_wrap.networks import TanhActor; make_adapter(TanhActor(3, 1, (8,))); "
            "assert 'd3rlpy' not in sys.modules, 'imported d3rlpy'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_d3rlpy_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from itpo_wrap.adapters import d3rlpy as adapter_module

    monkeypatch.setitem(sys.modules, "d3rlpy", None)  # what `import d3rlpy` meets when it is not installed
    assert not adapter_module.matches(object())
    with pytest.raises(ImportError, match=r"pip install 'itpo-wrap\[d3rlpy\]'"):
        adapter_module.d3rlpy_adapter(object())
