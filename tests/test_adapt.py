"""``itpo_wrap.adapt`` and ``itpo_wrap.step``: the objective of METHOD.md section 3 against hand
computations, masking after termination, the ascent update (SGD, Adam, clipping), per-env isolation and
the gates. The step runs eagerly here; tests/test_step_backends.py compares the compiled one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from itpo_wrap import adapt as A
from itpo_wrap.adapters.base import PolicyAdapter
from itpo_wrap.config import AdaptConfig
from itpo_wrap.step import AscentStep
from tests.test_adapt_toys import MLPWM, LinearQuadraticWM


def _linear_policy(obs_dim: int, act_dim: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(obs_dim, act_dim)
    nn.init.normal_(lin.weight, std=0.1)
    return lin


def _adapt(pol: nn.Module, wm: object, s0: torch.Tensor, noise: torch.Tensor, cfg: AdaptConfig,
           n_envs: int = 1, params: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], A.AdaptStats]:
    """The eager step from ``params`` (default: ``pol``'s own, one env), actions = raw policy outputs.
    With one env and no ``params``, the adapted values are written back into ``pol``."""
    adapter = PolicyAdapter(pol, dict(pol.named_parameters()), squashed=False, kind="test policy")
    step = AscentStep(adapter, lambda a: a, wm, cfg, n_envs, "eager")  # type: ignore[arg-type]
    start = params if params is not None else [p.detach().unsqueeze(0) for p in pol.parameters()]
    new, stats = step.run(start, s0, noise)
    if params is None:
        with torch.no_grad():
            for p, q in zip(pol.parameters(), new, strict=True):
                p.copy_(q[0])
    return list(new), stats


def test_surrogate_return_masks_after_termination() -> None:
    # two rows, H = 3; row 1's state s_2 is terminal: r_0, r_1 count, r_2 and the value do not
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, float("nan")]])
    alive = torch.tensor([[True, True], [True, True], [True, False], [True, False]])
    rollout = A.Rollout([], [], rewards, alive, torch.tensor([10.0, float("nan")]))
    g = 0.5
    out = A.surrogate_return(rollout, g)
    assert torch.allclose(out, torch.tensor([1 + g * 2 + g**2 * 4 + g**3 * 10, 1 + g * 2]))


def test_objective_matches_hand_rollout() -> None:
    wm, pol = MLPWM(term_above=0.5, sigma=0.3), _linear_policy(4, 2)
    cfg = AdaptConfig(horizon=3, particles=5, discount=0.9)
    s0 = torch.randn(1, 4).repeat(5, 1)
    noise = wm.draw_noise(5, 3, torch.Generator().manual_seed(0))
    J = A.objective(pol, wm, s0, noise, cfg, n_envs=1)
    s, ret, alive = s0, torch.zeros(5), torch.ones(5, dtype=torch.bool)
    for j in range(3):
        a = pol(s)
        ret = ret + torch.where(alive, 0.9**j * wm.reward(s, a), 0.0)
        s = wm.next(s, a, noise[j])
        alive = alive & ~wm.terminated(s)
    ret = ret + torch.where(alive, 0.9**3 * wm.value(s, pol(s)), 0.0)
    assert torch.allclose(J, ret.mean()[None], atol=1e-6)


def test_lq_objective_has_the_closed_form_value() -> None:
    wm, pol = LinearQuadraticWM(), _linear_policy(3, 2)
    cfg = AdaptConfig(horizon=1, particles=2, discount=0.8)
    s = torch.tensor([[0.3, -0.2, 0.5]])
    a = pol(s)
    expected = wm.reward(s, a) + 0.8 * wm.value(wm.next(s, a), pol(wm.next(s, a)))
    J = A.objective(pol, wm, s.repeat(2, 1), wm.draw_noise(2, 1), cfg, n_envs=1)
    assert torch.allclose(J, expected, atol=1e-6)


def test_adapt_moves_the_first_action_to_the_lq_optimum() -> None:
    wm, pol = LinearQuadraticWM(), _linear_policy(3, 2)
    cfg = AdaptConfig(horizon=1, particles=1, steps=300, step_size=0.05, discount=0.9, max_drift=None,
                      max_action_change=None)
    s = torch.tensor([[0.8, -0.5, 0.4]])
    a_star = wm.optimal_first_action(s[0], 0.9)
    before = (pol(s)[0] - a_star).norm().item()
    _, stats = _adapt(pol, wm, s, wm.draw_noise(1, 1), cfg)
    after = (pol(s)[0] - a_star).norm().item()
    assert bool(stats.ok.all()) and stats.j_after.item() > stats.j_before.item()
    assert before > 0.1 and after < 1e-3 * before + 1e-4


def test_zero_steps_leave_parameters_and_report_j() -> None:
    wm, pol = MLPWM(), _linear_policy(4, 2)
    before = [p.detach().clone() for p in pol.parameters()]
    cfg = AdaptConfig(horizon=2, particles=3, steps=0)
    _, stats = _adapt(pol, wm, torch.randn(3, 4), wm.draw_noise(3, 2), cfg)
    assert all(torch.equal(a, b) for a, b in zip(before, pol.parameters(), strict=True))
    assert torch.equal(stats.j_before, stats.j_after) and torch.isfinite(stats.j_before).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_step_update_rule(optimizer: str) -> None:
    wm, pol = MLPWM(), _linear_policy(4, 2)
    cfg = AdaptConfig(horizon=2, particles=3, steps=1, step_size=1e-2, optimizer=optimizer, track_j_after=False,
                      max_drift=None, max_action_change=None)
    s0, noise = torch.randn(1, 4).repeat(3, 1), wm.draw_noise(3, 2)
    params = list(pol.parameters())
    before = [p.detach().clone() for p in params]
    grads = torch.autograd.grad(A.objective(pol, wm, s0, noise, cfg, 1).sum(), params)
    _adapt(pol, wm, s0, noise, cfg)
    for p, p0, g in zip(params, before, grads, strict=True):
        # Adam's first bias-corrected step is sign(g) * |g| / (|g| + eps): ~ sign(g) for any g not tiny
        step = g if optimizer == "sgd" else g / (g.abs() + cfg.adam_eps)
        assert torch.allclose(p.detach(), p0 + cfg.step_size * step, atol=1e-6)


def test_gradient_clip_bounds_each_envs_step() -> None:
    wm, pol = MLPWM(), _linear_policy(4, 2)
    cfg = AdaptConfig(horizon=2, particles=2, steps=1, step_size=1.0, grad_clip=1e-3)
    params = list(pol.parameters())
    before = [p.detach().clone() for p in params]
    _, stats = _adapt(pol, wm, torch.randn(2, 4), wm.draw_noise(2, 2), cfg)
    moved = A.per_env_norm([(p.detach() - b).unsqueeze(0) for p, b in zip(params, before, strict=True)], 1)
    assert stats.grad_norm.item() > 1e-3 and moved.item() == pytest.approx(1e-3, rel=1e-4)


def _stacked_setup(n: int, obs_dim: int = 4) -> tuple[nn.Linear, list[torch.Tensor], A.PolicyFn]:
    pol = _linear_policy(obs_dim, 2)
    stacked = [p.detach().unsqueeze(0).repeat(n, *[1] * p.dim()) for p in pol.parameters()]

    def policy(x: torch.Tensor) -> torch.Tensor:
        w, b = stacked
        return torch.baddbmm(b.unsqueeze(1), x.view(n, -1, obs_dim), w.transpose(1, 2)).reshape(x.shape[0], -1)

    return pol, stacked, policy


def test_a_nan_env_stops_alone_and_others_match_their_solo_runs() -> None:
    wm = MLPWM()
    wm.poison, wm.poison_above = True, 50.0  # only rows with s[:, 0] > 50 give NaN rewards
    cfg = AdaptConfig(horizon=2, particles=3, steps=3, step_size=1e-2)
    obs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [100.0, 0.0, 0.0, 0.0]])
    noise = wm.draw_noise(6, 2, torch.Generator().manual_seed(0))
    pol, stacked, _ = _stacked_setup(2)
    new, stats = _adapt(pol, wm, obs.repeat_interleave(3, 0), noise, cfg, n_envs=2, params=stacked)
    assert stats.ok.tolist() == [True, False]
    assert all(torch.equal(p[1], s[1]) for p, s in zip(new, stacked, strict=True))  # env 1 untouched
    solo = _linear_policy(4, 2)
    solo_new, _ = _adapt(solo, wm, obs[:1].repeat(3, 1), noise[:, :, :3], cfg)
    for p, q in zip(new, solo_new, strict=True):
        assert torch.equal(p[0], q[0])  # bit for bit: the same step, one env's rows


def test_held_out_gate_rejects_a_harmful_update() -> None:
    wm = LinearQuadraticWM()
    _, stacked, policy = _stacked_setup(2, obs_dim=3)
    cfg = AdaptConfig(horizon=1, particles=1, gate="held_out")
    s0 = torch.tensor([[0.1, 0.0, 0.0], [0.1, 0.0, 0.0]])
    start = [p.detach().clone() for p in stacked]
    with torch.no_grad():  # env 0: a large random (harmful) change; env 1: nothing changes (no gain, rejected too)
        stacked[0][0] += 5.0
    accepted = A.held_out_gate(policy, stacked, start, wm, s0, wm.draw_noise(2, 1), cfg, 2)
    assert accepted.tolist() == [False, False]
    assert all(torch.equal(p, s) for p, s in zip(stacked, start, strict=True))


def test_held_out_gate_accepts_an_improvement() -> None:
    wm, pol = LinearQuadraticWM(), _linear_policy(3, 2)
    cfg = AdaptConfig(horizon=1, particles=1, steps=20, step_size=0.05, gate="held_out")
    s0 = torch.tensor([[0.8, -0.5, 0.4]])
    params = list(pol.parameters())
    views = [p.unsqueeze(0) for p in params]
    start = [v.detach().clone() for v in views]
    _adapt(pol, wm, s0, wm.draw_noise(1, 1), cfg)
    adapted = [v.detach().clone() for v in views]
    assert A.held_out_gate(pol, views, start, wm, s0, wm.draw_noise(1, 1), cfg, 1).tolist() == [True]
    assert all(torch.equal(v, a) for v, a in zip(views, adapted, strict=True))


def test_config_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="horizon=0"):
        AdaptConfig(horizon=0)
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        AdaptConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gate_max_disagreement"):
        AdaptConfig(gate="disagreement")
    with pytest.raises(ValueError, match="step_size"):
        AdaptConfig(step_size=float("nan"))
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_action_change="):
            AdaptConfig(max_action_change=bad)
    with pytest.raises(ValueError, match="gate_z=-1"):
        AdaptConfig(gate_z=-1.0)
    with pytest.raises(ValueError, match="max_drift=0"):
        AdaptConfig(max_drift=0.0)
    with pytest.raises(ValueError, match="termination='maybe'"):
        AdaptConfig(termination="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model_check='loud'"):
        AdaptConfig(model_check="loud")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AdaptConfig().steps = 3  # type: ignore[misc]
    assert AdaptConfig().to_dict()["persistence"] == "reset_each_step"
