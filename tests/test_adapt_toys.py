"""Toy world models satisfying ``WorldModelLike``, shared by the adapt / wrapper / adapter tests, and
tests that the toys themselves are what the other tests assume (closed forms, protocol, layouts).

- ``LinearQuadraticWM``: s' = A s + B a + sigma * eps, r = -a'Ra - s'Qs, value = -s'Ps. With H = 1
  the best first action has a closed form (``optimal_first_action``).
- ``MLPWM``: small random MLPs, a K-step "diffusion-like" chain per transition whose noise bank is
  laid out ``(H, K, B, obs)`` (batch on dim 2, to exercise the wrapper's batch-dim detection), an
  optional termination rule, and an optional poison switch that makes rewards NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from itpo_wrap.world_model.protocol import WorldModelLike


class LinearQuadraticWM:
    """Linear dynamics, quadratic reward and terminal value (no termination)."""

    def __init__(self, obs_dim: int = 3, act_dim: int = 2, sigma: float = 0.0, bound: float = 2.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.obs_dim, self.act_dim, self.sigma = obs_dim, act_dim, sigma
        self.A = 0.9 * torch.eye(obs_dim) + 0.05 * torch.randn(obs_dim, obs_dim, generator=g)
        self.B = torch.randn(obs_dim, act_dim, generator=g)
        self.R = torch.diag(torch.rand(act_dim, generator=g) + 0.5)
        self.Q = 0.1 * torch.eye(obs_dim)
        self.P = torch.eye(obs_dim)
        self._low, self._high = -bound * torch.ones(act_dim), bound * torch.ones(act_dim)

    @property
    def action_low(self) -> torch.Tensor:
        return self._low

    @property
    def action_high(self) -> torch.Tensor:
        return self._high

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(horizon, batch, self.obs_dim, generator=generator)

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        out = s @ self.A.T + a @ self.B.T
        return out if noise is None else out + self.sigma * noise

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return -((a @ self.R) * a).sum(-1) - ((s @ self.Q) * s).sum(-1)

    def terminated(self, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros(s.shape[0], dtype=torch.bool)

    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return -((s @ self.P) * s).sum(-1)

    def optimal_first_action(self, s: torch.Tensor, discount: float) -> torch.Tensor:
        """argmax_a -a'Ra - gamma (As + Ba)' P (As + Ba), for H = 1 and sigma = 0 (env units)."""
        lhs = self.R + discount * self.B.T @ self.P @ self.B
        rhs = -discount * self.B.T @ self.P @ self.A @ s
        return torch.linalg.solve(lhs, rhs)


def _mlp(i: int, o: int, h: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, o))


class MLPWM(nn.Module):
    """Nonlinear toy: K-step chain of a residual MLP per transition, MLP reward and twin value."""

    def __init__(self, obs_dim: int = 4, act_dim: int = 2, hidden: int = 16, k_steps: int = 2, sigma: float = 0.1,
                 bound: float = 1.0, term_above: float = float("inf"), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.obs_dim, self.act_dim, self.k_steps, self.sigma, self.term_above = obs_dim, act_dim, k_steps, sigma, term_above
        self.eps = _mlp(2 * obs_dim + act_dim, obs_dim, hidden)
        self.r = _mlp(obs_dim + act_dim, 1, hidden)
        self.q1, self.q2 = _mlp(obs_dim + act_dim, 1, hidden), _mlp(obs_dim + act_dim, 1, hidden)
        self.register_buffer("_low", -bound * torch.ones(act_dim))
        self.register_buffer("_high", bound * torch.ones(act_dim))
        self.poison = False  # when True, rewards of rows whose s[:, 0] > poison_above are NaN
        self.poison_above = -float("inf")

    @property
    def action_low(self) -> torch.Tensor:
        return self._low

    @property
    def action_high(self) -> torch.Tensor:
        return self._high

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(horizon, self.k_steps, batch, self.obs_dim, generator=generator)

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(self.k_steps, s.shape[0], self.obs_dim)
        x = s
        for k in range(self.k_steps):
            x = x + 0.3 * torch.tanh(self.eps(torch.cat([x, s, a], -1))) + self.sigma * noise[k]
        return x

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        r = self.r(torch.cat([s, a], -1)).squeeze(-1)
        if self.poison:
            r = torch.where(s[:, 0] > self.poison_above, torch.full_like(r, float("nan")), r)
        return r

    def terminated(self, s: torch.Tensor) -> torch.Tensor:
        return s[:, 0] > self.term_above

    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([s, a], -1)
        return torch.min(self.q1(x), self.q2(x)).squeeze(-1)


def test_toys_satisfy_the_protocol() -> None:
    assert isinstance(LinearQuadraticWM(), WorldModelLike)
    assert isinstance(MLPWM(), WorldModelLike)


def test_lq_closed_form_is_the_maximiser() -> None:
    wm, s, gamma = LinearQuadraticWM(), torch.tensor([0.5, -1.0, 0.3]), 0.9
    a_star = wm.optimal_first_action(s, gamma)

    def value(a: torch.Tensor) -> torch.Tensor:
        return wm.reward(s[None], a[None])[0] + gamma * wm.value(wm.next(s[None], a[None]), a[None])[0]

    grad = torch.func.grad(value)(a_star)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-5)
    assert value(a_star) > value(a_star + 0.1) and value(a_star) > value(a_star - 0.1)


def test_mlp_noise_bank_layout_and_determinism() -> None:
    wm = MLPWM(k_steps=3)
    bank = wm.draw_noise(5, 4, torch.Generator().manual_seed(1))
    assert bank.shape == (4, 3, 5, wm.obs_dim)
    s, a = torch.randn(5, wm.obs_dim), torch.rand(5, wm.act_dim)
    assert torch.equal(wm.next(s, a, bank[0]), wm.next(s, a, bank[0]))
