"""The conditional residual MLP shared by the diffusion denoiser, the MeanFlow network and the
deterministic baseline.

Shape of the net (why it is cheap to sample): the input projection is split into a part for the
noisy sample ``x``, a part for the condition ``c = [s, a]`` and a per-block time bias. The
condition part is the same at every denoising step, so a K-step sampler computes it once
(``cond_features``) and then pays, per step, only the residual stream plus a ``(1, width)`` time
projection that broadcasts over the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from itpo_wrap.world_model.config import NetConfig

_ACT: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "mish": nn.Mish, "tanh": nn.Tanh}


class SinusoidalEmbedding(nn.Module):
    """``[sin(2 pi f_k t), cos(2 pi f_k t)]`` with ``f_k`` geometric from 1/2 to ``max_frequency``.

    Smooth in ``t`` (MeanFlow differentiates through it with a JVP). The frequencies are a buffer so
    they follow ``.to(device / dtype)``.

    :param dim: output width (even).
    :param max_frequency: highest frequency, cycles per unit of ``t``.
    """

    freqs: torch.Tensor

    def __init__(self, dim: int, max_frequency: float) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.linspace(math.log(0.5), math.log(max_frequency), half)) * (2 * math.pi)
        self.register_buffer("freqs", freqs)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """:param t: ``(B,)`` times. :return: ``(B, dim)``."""
        angles = t.unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.act = _ACT[activation]()
        self.linear = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, time_bias: torch.Tensor | None) -> torch.Tensor:
        z = self.norm(h)
        if time_bias is not None:
            z = z + time_bias
        return h + self.linear(self.act(z))


class ConditionalResMLP(nn.Module):
    """``f(x, times | cond)``: a residual MLP with LayerNorm, conditioned on ``cond`` at the input
    and on ``num_times`` scalar times through a bias in every block.

    :param x_dim: width of the sample ``x`` and of the output.
    :param cond_dim: width of the condition (``obs_dim + act_dim``).
    :param num_times: number of scalar time inputs (0 for the baseline, 1 diffusion, 2 MeanFlow).
    :param cfg: widths and embedding settings.
    :param x_input: whether ``x`` is an input (``False`` for the deterministic baseline).
    """

    def __init__(self, x_dim: int, cond_dim: int, num_times: int, cfg: NetConfig, x_input: bool = True) -> None:
        super().__init__()
        width = cfg.hidden_dim
        self.x_dim, self.cond_dim, self.num_times = x_dim, cond_dim, num_times
        self.x_in = nn.Linear(x_dim, width, bias=False) if x_input else None
        self.cond_in = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(_Block(width, cfg.activation) for _ in range(cfg.num_blocks))
        out_linear = nn.Linear(width, x_dim)
        self.out = nn.Sequential(nn.LayerNorm(width), _ACT[cfg.activation](), out_linear)
        # The x gate needs times and an x input; it is one more width-sized chunk of the time projection.
        self.x_gate = bool(cfg.x_gate and num_times > 0 and x_input)
        if num_times > 0:
            self.embed = SinusoidalEmbedding(cfg.time_embed_dim, cfg.max_frequency)
            # One projection gives the input bias and every block's bias (and the x gate) in a single matmul.
            chunks = cfg.num_blocks + 1 + int(self.x_gate)
            self.time_proj = nn.Linear(num_times * cfg.time_embed_dim, width * chunks)
        # Start as the zero function so the untrained model predicts "no change" (delta = mean).
        nn.init.zeros_(out_linear.weight)
        nn.init.zeros_(out_linear.bias)

    def cond_features(self, cond: torch.Tensor) -> torch.Tensor:
        """The condition's contribution to the first layer, reusable across denoising steps."""
        return self.cond_in(cond)

    def time_features(self, times: torch.Tensor) -> list[torch.Tensor]:
        """Per-block biases for ``times`` of shape ``(B or 1, num_times)``."""
        emb = torch.cat([self.embed(times[:, i]) for i in range(self.num_times)], dim=-1)
        return list(self.time_proj(emb).chunk(len(self.blocks) + 1 + int(self.x_gate), dim=-1))

    def forward_features(
        self, x: torch.Tensor | None, cond_feat: torch.Tensor, time_feat: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Evaluate from precomputed condition and time features (the fast path of the samplers)."""
        if x is None or self.x_in is None:
            h = cond_feat
        elif self.x_gate and time_feat is not None:
            # (1 + g) x_in(x): g starts near 0 (plain additive input) and can learn -1 (ignore the noise)
            h = torch.addcmul(cond_feat, self.x_in(x), 1.0 + time_feat[-1])
            time_feat = time_feat[:-1]
        else:
            h = cond_feat + self.x_in(x)
        if time_feat is None:
            for block in self.blocks:
                h = block(h, None)
        else:
            h = h + time_feat[0]
            for block, bias in zip(self.blocks, time_feat[1:], strict=True):
                h = block(h, bias)
        return self.out(h)

    def forward(self, x: torch.Tensor | None, cond: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """:param x: ``(B, x_dim)`` or ``None`` (baseline). :param cond: ``(B, cond_dim)``.
        :param times: ``(B or 1, num_times)`` or ``None``. :return: ``(B, x_dim)``."""
        time_feat = self.time_features(times) if times is not None and self.num_times > 0 else None
        return self.forward_features(x, self.cond_features(cond), time_feat)
