"""Conditional DDPM dynamics with a fixed-noise, differentiable sampler (METHOD.md sections 1-2).

``NoiseSchedule`` follows the diffusers scheduler shape (``set_timesteps`` / ``step`` /
``add_noise``, ``step`` returns a small dataclass). Its per-step coefficients are plain Python
floats computed once in ``set_timesteps``, so the sampler loop does no ``.item()``, no tensor
indexing and no device syncs: each denoising step is one network call plus a few fused
scalar-tensor ops.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from itpo_wrap.world_model.config import DiffusionConfig
from itpo_wrap.world_model.dynamics import Dynamics, weighted_mean
from itpo_wrap.world_model.networks import ConditionalResMLP


@dataclasses.dataclass
class SchedulerStepOutput:
    """Result of ``NoiseSchedule.step``.

    :param prev_sample: the sample one (sampling) step less noisy.
    :param pred_original_sample: the predicted clean sample, when it was computed.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class StepCoefficients(NamedTuple):
    """Floats of one reverse step (so the sampler loop never touches a schedule tensor).

    ``x_prev = c0 * x0 + ct * x_t + c_eps * eps + sigma * z`` with
    ``x0 = (x_t - sqrt_1m_abar * eps) / sqrt_abar``; without clipping the same step collapses to
    ``x_prev = px * x_t + pe * eps + sigma * z``.
    """

    sqrt_abar: float
    sqrt_1m_abar: float
    c0: float
    ct: float
    c_eps: float
    px: float
    pe: float
    sigma: float


def _betas(cfg: DiffusionConfig) -> list[float]:
    k = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        # Ho et al.'s 1e-4..0.02 is tuned for K = 1000; rescale so alpha_bar_K ends near 0 for any K
        # (the "scaled linear" of improved DDPM).
        scale = 1000.0 / k
        lo, hi = cfg.beta_start * scale, min(cfg.beta_end * scale, 0.999)
        return [lo + (hi - lo) * i / max(k - 1, 1) for i in range(k)]
    # Cosine (Nichol and Dhariwal 2021): alpha_bar(t) = cos^2(((t / K) + s) / (1 + s) * pi / 2),
    # beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t), clipped at 0.999.
    s = 0.008

    def f(t: float) -> float:
        return math.cos((t / k + s) / (1 + s) * math.pi / 2) ** 2

    return [min(1.0 - f(i + 1) / f(i), 0.999) for i in range(k)]


class NoiseSchedule:
    """Forward process ``x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps`` (METHOD.md section 2) and
    DDPM / DDIM reverse steps over a subset of the training timesteps.

    :param cfg: the diffusion config (K, schedule, sampler, clipping).
    """

    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg
        self.betas = _betas(cfg)
        abar, prod = [], 1.0
        for beta in self.betas:
            prod *= 1.0 - beta
            abar.append(prod)
        self.alphas_cumprod = abar
        self._sqrt_abar = torch.tensor([math.sqrt(x) for x in abar], dtype=torch.float64)
        self._sqrt_1m_abar = torch.tensor([math.sqrt(1.0 - x) for x in abar], dtype=torch.float64)
        self.set_timesteps(cfg.num_inference_steps, cfg.sampler)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    def set_timesteps(self, num_inference_steps: int, sampler: str | None = None) -> None:
        """Choose the sampling timesteps (evenly spaced, from K - 1 down to 0) and precompute each
        step's coefficients as floats.

        :param num_inference_steps: number of denoising steps (at most K).
        :param sampler: ``ddpm`` or ``ddim`` (default: the config's).
        """
        k = self.num_train_timesteps
        if not 1 <= num_inference_steps <= k:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be in [1, K={k}]")
        sampler = self.cfg.sampler if sampler is None else sampler
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler={sampler!r}; choose 'ddpm' or 'ddim'")
        n = num_inference_steps
        ts = sorted({round(i * (k - 1) / max(n - 1, 1)) for i in range(n)}, reverse=True) if n > 1 else [k - 1]
        self.sampler, self.timesteps = sampler, ts
        self.coefs: list[StepCoefficients] = []
        for i, t in enumerate(ts):
            ab_t = self.alphas_cumprod[t]
            ab_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else 1.0
            sa, s1 = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
            if sampler == "ddpm":
                # Posterior q(x_prev | x_t, x_0) with the step's effective alpha = abar_t / abar_prev:
                # mean = c0 x_0 + ct x_t, var = beta (1 - abar_prev) / (1 - abar_t). Substituting
                # x_0 = (x_t - s1 eps) / sa gives METHOD.md section 2's
                # (1 / sqrt(alpha)) (x_t - beta / sqrt(1 - abar_t) eps) + sigma z.
                alpha = ab_t / ab_prev
                beta = 1.0 - alpha
                c0 = math.sqrt(ab_prev) * beta / (1.0 - ab_t)
                ct = math.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab_t)
                c_eps, sigma = 0.0, math.sqrt(max(beta * (1.0 - ab_prev) / (1.0 - ab_t), 0.0))
            else:
                # DDIM, eta = 0: x_prev = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev) eps.
                c0, ct, c_eps, sigma = math.sqrt(ab_prev), 0.0, math.sqrt(1.0 - ab_prev), 0.0
            # The same step with x_0 substituted: x_prev = px x_t + pe eps (+ sigma z).
            px, pe = c0 / sa + ct, c_eps - c0 * s1 / sa
            self.coefs.append(StepCoefficients(sa, s1, c0, ct, c_eps, px, pe, sigma))

    @property
    def num_noise(self) -> int:
        """Noise vectors per sample: the initial x_K, plus one per stochastic DDPM step."""
        return 1 + sum(1 for c in self.coefs if c.sigma > 0.0)

    def sqrt_alphas(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(abar_k), sqrt(1 - abar_k))`` as ``(B, 1)`` tensors for integer ``timesteps`` ``(B,)``."""
        sa = self._sqrt_abar.to(like.device, like.dtype)[timesteps].unsqueeze(-1)
        s1 = self._sqrt_1m_abar.to(like.device, like.dtype)[timesteps].unsqueeze(-1)
        return sa, s1

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps`` for integer ``timesteps`` of shape ``(B,)``."""
        sa, s1 = self.sqrt_alphas(timesteps, original)
        return sa * original + s1 * noise

    def step(
        self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor, noise: torch.Tensor | None = None
    ) -> SchedulerStepOutput:
        """One reverse step from ``self.timesteps[step_index]`` to the next (or to the clean sample).

        :param model_output: predicted epsilon.
        :param step_index: index into ``self.timesteps`` (an int: no tensor indexing).
        :param sample: current noisy sample ``x_t``.
        :param noise: the fixed ``z`` of this step (ignored when the step's sigma is 0).
        """
        c = self.coefs[step_index]
        clip = self.cfg.clip_sample
        x0 = None
        if clip is None:  # the collapsed linear form: two fused ops
            prev = torch.add(sample * c.px, model_output, alpha=c.pe)
        else:
            x0 = ((sample - c.sqrt_1m_abar * model_output) / c.sqrt_abar).clamp(-clip, clip)
            prev = c.c0 * x0 + c.ct * sample + c.c_eps * model_output
        if c.sigma > 0.0:
            if noise is None:
                raise ValueError(f"DDPM step {step_index} has sigma={c.sigma:.3g} > 0 and needs its noise z")
            prev = torch.add(prev, noise, alpha=c.sigma)
        return SchedulerStepOutput(prev_sample=prev, pred_original_sample=x0)


class DiffusionDynamics(Dynamics):
    """``s_{t+1} - s_t`` (normalized) ~ DDPM conditioned on normalized ``(s_t, a_t)``, trained with the
    epsilon-prediction loss (METHOD.md section 1).

    :param obs_dim: state width.
    :param act_dim: action width.
    :param cfg: schedule, sampler and network settings.
    """

    kind = "diffusion"
    step_times: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, cfg: DiffusionConfig | None = None) -> None:
        super().__init__(obs_dim, act_dim)
        self.cfg = cfg or DiffusionConfig()
        self.schedule = NoiseSchedule(self.cfg)
        self.net = ConditionalResMLP(obs_dim, obs_dim + act_dim, 1, self.cfg.net)
        self._set_step_times()

    def _set_step_times(self) -> None:
        k = self.schedule.num_train_timesteps
        times = torch.tensor([[t / k] for t in self.schedule.timesteps], dtype=torch.float32)
        # Non-persistent buffer: follows .to(device, dtype), stays out of the state_dict.
        self.register_buffer("step_times", times, persistent=False)

    def set_timesteps(self, num_inference_steps: int, sampler: str | None = None) -> None:
        """Change the number of sampling steps or the sampler (DDPM / DDIM) after training.

        :param num_inference_steps: denoising steps.
        :param sampler: ``ddpm`` or ``ddim``.
        """
        self.schedule.set_timesteps(num_inference_steps, sampler)
        self._time_cache_key = None
        self._set_step_times()
        self.step_times = self.step_times.to(next(self.parameters()))

    @property
    def num_noise(self) -> int:
        return self.schedule.num_noise

    def sample(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Run the reverse chain from ``noise[:, 0]`` (x_K); ``noise[:, 1:]`` are the DDPM ``z_k``."""
        if noise is None:
            noise = torch.randn(s.shape[0], self.num_noise, self.obs_dim, device=s.device, dtype=s.dtype)
        cond = self.net.cond_features(torch.cat([s, a], dim=-1))  # once for all K steps
        x, z_index = noise[:, 0], 1
        pre = self.cfg.precondition
        for i in range(len(self.schedule.timesteps)):
            eps = self.net.forward_features(x, cond, self.step_time_features(i))
            if pre:
                c = self.schedule.coefs[i]
                eps = torch.add(x * c.sqrt_1m_abar, eps, alpha=c.sqrt_abar)
            z = None
            if self.schedule.coefs[i].sigma > 0.0:
                z, z_index = noise[:, z_index], z_index + 1
            x = self.schedule.step(eps, i, x, z).prev_sample
        return x

    def loss(
        self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``|| eps - eps_theta(x_k, k | s, a) ||^2`` with k uniform over the K training timesteps."""
        b = s.shape[0]
        k = torch.randint(0, self.schedule.num_train_timesteps, (b,), device=s.device, generator=generator)
        eps = torch.randn(delta.shape, device=s.device, dtype=s.dtype, generator=generator)
        sa, s1 = self.schedule.sqrt_alphas(k, delta)
        x_k = sa * delta + s1 * eps
        times = (k.to(s.dtype) / self.schedule.num_train_timesteps).unsqueeze(-1)
        pred = self.net(x_k, torch.cat([s, a], dim=-1), times)
        if self.cfg.precondition:  # eps_theta = sqrt(1 - abar) x_k + sqrt(abar) F (see DiffusionConfig)
            pred = s1 * x_k + sa * pred
        loss = weighted_mean((pred - eps).pow(2).mean(dim=-1), weights)
        return loss, {"eps_mse": loss.detach()}
