"""``itpo_wrap.adapt.AdaptationStep``, the whole step behind one object: called on its own it acts exactly as
the wrapper does, it leaves the parameter bank it reads alone, and one accept mask decides which envs execute
their adapted action (the paired gate, the reality check's ``allowed``, finiteness); every other env executes
the base action with its update undone, back to the pretrained parameters where something was not finite."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from itpo_wrap.adapt import AdaptationStep, StepResult
from itpo_wrap.adapters import make_adapter
from itpo_wrap.adapters.bank import ParameterBank
from itpo_wrap.adapters.validation import base_action, check_world_model
from itpo_wrap.config import AdaptConfig
from itpo_wrap.wrapper import ITPOPolicyWrapper
from tests.test_adapt_toys import MLPWM
from tests.test_wrapper import _actor, _obs

CFG = AdaptConfig(horizon=3, particles=4, steps=3, step_size=0.05, backend="eager", gate="off", max_drift=None)


def _step(cfg: AdaptConfig, wm: MLPWM, n: int, seed: int = 0) -> tuple[StepResult, ParameterBank, torch.Tensor,
                                                                         list[torch.Tensor]]:
    """One call of a step built by hand: its result, the bank it read, the base action, the pretrained params."""
    adapter = make_adapter(_actor(), obs_normalizer=None, squashed=None)
    device, low, high = check_world_model(adapter, wm, cfg)
    pretrained = [p.detach().clone() for p in adapter.params]
    step = AdaptationStep(cfg, wm, adapter, pretrained, (low, high), device)
    bank = ParameterBank(pretrained, n, cfg.noise_seed)
    obs = torch.as_tensor(_obs(n, seed), dtype=torch.float32)
    base = base_action(adapter, obs, True)
    allowed = torch.tensor([i != 1 for i in range(n)]) if cfg.max_model_error is not None else None
    with torch.enable_grad():
        result = step(obs, base, bank, deterministic=True, allowed=allowed)
    return result, bank, base, pretrained


def _rows_equal(params: list[torch.Tensor], source: list[torch.Tensor], env: int) -> bool:
    return all(torch.equal(p[env], s) for p, s in zip(params, source, strict=True))


def test_the_step_on_its_own_acts_as_the_wrapper_does() -> None:
    result, bank, _, pretrained = _step(CFG, MLPWM(bound=2.0), 3)
    w = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), CFG)
    actions, _ = w.predict(_obs(3, 0), deterministic=True)
    assert np.array_equal(result.actions, actions)
    assert [{k: v for k, v in row.items() if k != "ms"} for row in w.last_info] == result.info
    assert result.params is not None and result.accepted.tolist() == [True] * 3
    assert all(_rows_equal(bank.params, pretrained, i) for i in range(3))  # the bank it read is untouched
    assert all(torch.equal(p, q) for p, q in zip(result.params, w._bank.params, strict=True))  # type: ignore[union-attr]


def test_zero_steps_adapts_nothing_and_executes_the_base_action() -> None:
    result, _, base, _ = _step(dataclasses.replace(CFG, steps=0), MLPWM(bound=2.0), 2)
    plain, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0)).predict(_obs(2, 0),
                                                                                           deterministic=True)
    assert result.params is None and np.array_equal(result.actions, plain)
    assert result.accepted.tolist() == [True, True]


def test_an_env_the_reality_check_refuses_executes_the_base_action_with_its_update_undone() -> None:
    cfg = dataclasses.replace(CFG, max_model_error=0.3)  # _step then allows every env but env 1
    result, _, _, pretrained = _step(cfg, MLPWM(bound=2.0), 3)
    base, _ = ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0)).predict(_obs(3, 0),
                                                                                          deterministic=True)
    assert result.accepted.tolist() == [True, False, True] and result.params is not None
    assert np.array_equal(result.actions[1], base[1]) and not np.array_equal(result.actions[0], base[0])
    assert _rows_equal(result.params, pretrained, 1) and not _rows_equal(result.params, pretrained, 0)
    assert result.info[1]["param_change"] == 0.0 and not result.info[1]["gate_rejected"]


def test_a_paired_rejection_executes_the_base_action_with_its_update_undone() -> None:
    cfg = dataclasses.replace(CFG, gate="paired", gate_margin=1e6)  # no update gains that much
    result, _, base, pretrained = _step(cfg, MLPWM(bound=2.0), 2)
    assert result.accepted.tolist() == [False, False] and result.params is not None
    assert all(row["gate_rejected"] and row["param_change"] == 0.0 for row in result.info)
    assert all(_rows_equal(result.params, pretrained, i) for i in range(2))
    assert np.array_equal(result.actions, ITPOPolicyWrapper(_actor(), MLPWM(bound=2.0), AdaptConfig(steps=0))
                          .predict(_obs(2, 0), deterministic=True)[0])


def test_a_non_finite_objective_falls_back_to_the_pretrained_parameters() -> None:
    wm = MLPWM()
    wm.poison, wm.poison_above = True, 50.0
    adapter = make_adapter(_actor(), obs_normalizer=None, squashed=None)
    cfg = dataclasses.replace(CFG, persistence="persistent")
    device, low, high = check_world_model(adapter, wm, cfg)
    pretrained = [p.detach().clone() for p in adapter.params]
    step = AdaptationStep(cfg, wm, adapter, pretrained, (low, high), device)
    bank = ParameterBank(pretrained, 2, 0)
    with torch.no_grad():  # env 1 starts from parameters an earlier call adapted
        for p in bank.params:
            p[1] += 0.01
    obs = torch.as_tensor(_obs(2, 0), dtype=torch.float32)
    obs[1, 0] = 100.0  # only env 1's imagined rewards are NaN
    with torch.enable_grad():
        result = step(obs, base_action(adapter, obs, True), bank, deterministic=True)
    assert result.accepted.tolist() == [True, False] and result.params is not None
    assert [row["fallback_reason"] for row in result.info] == [None, "non-finite objective or gradient"]
    assert _rows_equal(result.params, pretrained, 1)  # not the parameters it started from
