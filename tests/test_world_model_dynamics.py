"""Dynamics models: fixed-noise determinism, gradcheck through the samplers, exact scheduler
answers, MeanFlow loss pieces, config validation and defaults."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from itpo_wrap.world_model import (
    DiffusionConfig,
    DiffusionDynamics,
    MeanFlowConfig,
    MeanFlowDynamics,
    MLPDynamics,
    NetConfig,
    NoiseSchedule,
)
from itpo_wrap.world_model.config import HeadsConfig

# torch.func.jvp (MeanFlow's loss) triggers torch's own torch.jit.script deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
torch.set_num_threads(1)
TINY = NetConfig(hidden_dim=16, num_blocks=1, time_embed_dim=4, max_frequency=4.0)


def _models() -> list:
    torch.manual_seed(0)
    return [
        DiffusionDynamics(3, 2, DiffusionConfig(num_train_timesteps=20, num_inference_steps=4, net=TINY)),
        DiffusionDynamics(3, 2, DiffusionConfig(num_train_timesteps=20, num_inference_steps=4, sampler="ddim", net=TINY)),
        DiffusionDynamics(3, 2, DiffusionConfig(num_train_timesteps=20, num_inference_steps=4, beta_schedule="cosine",
                                                clip_sample=5.0, net=TINY)),
        MeanFlowDynamics(3, 2, MeanFlowConfig(net=TINY, teacher_ratio=0.0)),
        MeanFlowDynamics(3, 2, MeanFlowConfig(num_inference_steps=3, net=TINY, teacher_ratio=0.0)),
        MLPDynamics(3, 2),
    ]


def _randomize(model: torch.nn.Module) -> None:
    # The output layer starts at zero (a "no change" model); make the function non-trivial.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))


@pytest.mark.parametrize("idx", range(6))
def test_same_noise_gives_same_sample(idx: int) -> None:
    model = _models()[idx]
    _randomize(model)
    s, a = torch.randn(5, 3), torch.randn(5, 2)
    bank = model.draw_noise(5, horizon=2, generator=torch.Generator().manual_seed(3))
    assert bank.shape == (2, 5, model.num_noise, 3)
    again = model.draw_noise(5, horizon=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(bank, again)
    assert torch.equal(model.sample(s, a, bank[0]), model.sample(s, a, bank[0]))
    if model.num_noise:
        assert not torch.allclose(model.sample(s, a, bank[0]), model.sample(s, a, bank[1]))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_gradcheck_diffusion_sampler(sampler: str) -> None:
    model = DiffusionDynamics(3, 2, DiffusionConfig(num_train_timesteps=10, num_inference_steps=3, sampler=sampler,
                                                    net=TINY)).double()
    _randomize(model)
    noise = model.draw_noise(2).double()
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s_, a_: model.sample(s_, a_, noise), (s, a))


@pytest.mark.parametrize("x_gate", [False, True], ids=["additive", "gated"])
@pytest.mark.parametrize("steps", [1, 2])
def test_gradcheck_meanflow_sampler(steps: int, x_gate: bool) -> None:
    net = dataclasses.replace(TINY, x_gate=x_gate)
    model = MeanFlowDynamics(3, 2, MeanFlowConfig(num_inference_steps=steps, net=net, teacher_ratio=0.0)).double()
    _randomize(model)
    noise = model.draw_noise(2).double()
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s_, a_: model.sample(s_, a_, noise), (s, a))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_reverse_chain_with_oracle_epsilon_recovers_x0(schedule: str, sampler: str) -> None:
    """With the true epsilon at every step the chain must land exactly on x0 (closed form)."""
    sched = NoiseSchedule(DiffusionConfig(num_train_timesteps=50, num_inference_steps=7, beta_schedule=schedule,
                                          sampler=sampler))
    x0 = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    for i, t in enumerate(sched.timesteps):
        ab = sched.alphas_cumprod[t]
        eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
        x = sched.step(eps, i, x, torch.randn_like(x)).prev_sample
    torch.testing.assert_close(x, x0)


def test_add_noise_matches_forward_process() -> None:
    sched = NoiseSchedule(DiffusionConfig(num_train_timesteps=10))
    x0, eps, k = torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 4, 9])
    ab = torch.tensor([sched.alphas_cumprod[i] for i in k.tolist()]).unsqueeze(-1)
    torch.testing.assert_close(sched.add_noise(x0, eps, k), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    assert sched.alphas_cumprod[-1] < 1e-3  # the scaled linear schedule ends near pure noise


def test_losses_are_finite_and_train_every_parameter() -> None:
    for model in _models():
        s, a, d = torch.randn(16, 3), torch.randn(16, 2), torch.randn(16, 3)
        loss, metrics = model.loss(s, a, d, weights=torch.ones(16), generator=torch.Generator().manual_seed(0))
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in metrics.values())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_meanflow_jvp_time_derivative_matches_finite_difference() -> None:
    """The JVP with tangent (v, 0, 1) is the total derivative d/dt u(z_t, r, t) along the path."""
    torch.manual_seed(0)
    model = MeanFlowDynamics(3, 2, MeanFlowConfig(net=TINY, teacher_ratio=0.0)).double()
    _randomize(model)
    cond = model.net.cond_features(torch.randn(4, 5, dtype=torch.float64))
    x, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    r, t = torch.full((4,), 0.2, dtype=torch.float64), torch.full((4,), 0.6, dtype=torch.float64)

    def u_along_path(t_: torch.Tensor) -> torch.Tensor:
        z = (1 - t_).unsqueeze(-1) * x + t_.unsqueeze(-1) * eps
        return model.net.forward_features(z, cond, model.net.time_features(torch.stack([t_, t_ - r], -1)))

    _, dudt = torch.func.jvp(
        lambda z, r_, t_: model.net.forward_features(z, cond, model.net.time_features(torch.stack([t_, t_ - r_], -1))),
        ((1 - t).unsqueeze(-1) * x + t.unsqueeze(-1) * eps, r, t), (eps - x, torch.zeros_like(r), torch.ones_like(t)))
    h = 1e-6
    fd = (u_along_path(t + h) - u_along_path(t - h)) / (2 * h)
    torch.testing.assert_close(dudt, fd, rtol=1e-5, atol=1e-6)


def test_meanflow_time_sampler_orders_and_splits() -> None:
    model = MeanFlowDynamics(3, 2, MeanFlowConfig(net=TINY, teacher_ratio=0.0))
    t, r, nf = model.sample_times(1000, torch.device("cpu"), torch.float32, torch.Generator().manual_seed(0))
    assert nf == 750 and torch.equal(t[:nf], r[:nf]) and bool((t >= r).all())
    assert bool(((t > 0) & (t < 1)).all())


def test_meanflow_defaults_are_the_shipped_recipe() -> None:
    """Every shipped MeanFlow bundle was trained with --teacher-ratio 0.25 --x-gate --max-frequency 4; that is
    ``MeanFlowConfig()``, while the other kinds keep the plain network."""
    cfg = MeanFlowConfig()
    assert cfg.teacher_ratio == 0.25 and cfg.net == NetConfig(max_frequency=4.0, x_gate=True)
    assert DiffusionConfig().net == NetConfig() and not NetConfig().x_gate


def test_noise_shape_errors_and_set_timesteps() -> None:
    model = _models()[0]
    with pytest.raises(ValueError, match=r"expects \(5, 4, 3\)"):
        model.check_noise(torch.zeros(5, 1, 3), 5)
    model.set_timesteps(2, "ddim")
    assert model.num_noise == 1 and model.step_times.shape == (2, 1)
    assert model.sample(torch.randn(5, 3), torch.randn(5, 2)).shape == (5, 3)


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: DiffusionConfig(num_train_timesteps=5, num_inference_steps=10), "num_inference_steps=10 exceeds"),
    (lambda: DiffusionConfig(beta_schedule="quadratic"), "beta_schedule='quadratic'"),
    (lambda: DiffusionConfig(sampler="euler"), "sampler='euler'"),
    (lambda: MeanFlowConfig(flow_ratio=1.5), "flow_ratio=1.5"),
    (lambda: NetConfig(time_embed_dim=7), "time_embed_dim=7 must be even"),
    (lambda: NetConfig(activation="gelu"), "activation='gelu'"),
    (lambda: HeadsConfig(gamma=1.0), "gamma=1.0"),
])
def test_config_validation_names_the_value(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_config_accepts_net_as_dict() -> None:
    cfg = DiffusionConfig(net={"hidden_dim": 8, "num_blocks": 1})  # type: ignore[arg-type]
    assert cfg.net == NetConfig(hidden_dim=8, num_blocks=1)


def test_x_gate_can_switch_the_noise_input_off() -> None:
    """With the gate at -1 (time bias chunk) the output no longer depends on the sample input; without the
    gate the same network has no way to do that."""
    gated = MeanFlowDynamics(3, 2, MeanFlowConfig(net=dataclasses.replace(TINY, x_gate=True)))
    _randomize(gated)
    net = gated.net
    assert net.x_gate and net.time_proj.out_features == TINY.hidden_dim * (TINY.num_blocks + 2)
    with torch.no_grad():  # make the gate chunk exactly -1 for every time
        gate_rows = slice(TINY.hidden_dim * (TINY.num_blocks + 1), None)
        net.time_proj.weight[gate_rows] = 0.0
        net.time_proj.bias[gate_rows] = -1.0
    cond = net.cond_features(torch.randn(4, 5))
    feats = net.time_features(torch.tensor([[1.0, 1.0]]))
    out1 = net.forward_features(torch.randn(4, 3), cond, feats)
    out2 = net.forward_features(torch.randn(4, 3), cond, feats)
    torch.testing.assert_close(out1, out2)
    plain = MeanFlowDynamics(3, 2, MeanFlowConfig(net=TINY, teacher_ratio=0.0))
    assert not plain.net.x_gate and plain.net.time_proj.out_features == TINY.hidden_dim * (TINY.num_blocks + 1)
