"""What every dynamics kind shares, and the deterministic MLP baseline.

A dynamics model works purely in **normalized** units: it maps the normalized state ``s_n`` and
action ``a_n`` to the normalized state delta ``d_n`` (METHOD.md section 1: predicting the delta
``s_{t+1} - s_t`` is the sound choice). The ``WorldModel`` bundle owns the normalizers and the
validation; these modules trust their inputs (one validation gate per entry point).

Noise convention: ``sample(s_n, a_n, noise)`` consumes a ``(B, num_noise, obs_dim)`` tensor, so a
horizon-H bank is ``(H, B, num_noise, obs_dim)`` and ``bank[j]`` feeds step j (METHOD.md section 2:
with the bank held fixed the sampler is a deterministic, differentiable function of ``(s, a)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from itpo_wrap.world_model.config import MLPDynamicsConfig
from itpo_wrap.world_model.networks import ConditionalResMLP


class Dynamics(nn.Module):
    """Base class: a conditional model of the normalized delta.

    :param obs_dim: state width.
    :param act_dim: action width.
    """

    kind: str = ""
    cfg: Any
    _time_cache_key: tuple[Any, ...] | None = None
    _time_cache: list[list[torch.Tensor]]

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)

    @property
    def num_noise(self) -> int:
        """How many ``obs_dim`` noise vectors one ``sample`` call consumes per batch row."""
        raise NotImplementedError

    def draw_noise(
        self, batch: int, horizon: int | None = None, generator: torch.Generator | None = None,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """A standard-normal noise bank: ``(horizon, batch, num_noise, obs_dim)``, or
        ``(batch, num_noise, obs_dim)`` when ``horizon`` is ``None``.

        :param batch: rollouts (particles) per step.
        :param horizon: steps; ``None`` for a single step's noise.
        :param generator: torch generator for reproducible banks (drawn on its device, then moved).
        :param device: target device (default: the model's).
        :param dtype: target dtype (default: the model's).
        """
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        shape = (batch, self.num_noise, self.obs_dim) if horizon is None else (
            horizon, batch, self.num_noise, self.obs_dim)
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
        return noise.to(device)

    def step_time_features(self, i: int) -> list[torch.Tensor]:
        """Per-block time biases of sampling step ``i`` (the net's ``time_features`` of
        ``self.step_times[i]``).

        They are the same for every call, so a frozen model (no parameter requires grad: the
        ``WorldModel`` bundle) computes them once per step and reuses them, saving ~7 small ops per
        step in the adaptation loop. The cache is keyed on the version counters of the time
        projection and on ``step_times``, so ``load_state_dict``, ``.to()`` and ``set_timesteps``
        invalidate it.
        """
        net: Any = getattr(self, "net")  # noqa: B009 - set by the subclasses
        times: torch.Tensor = getattr(self, "step_times")  # noqa: B009
        proj = net.time_proj
        if torch.compiler.is_compiling() or proj.weight.requires_grad or torch.is_inference_mode_enabled():
            # under torch.compile the features are part of the graph: they depend on weights only, so the
            # compiler computes them once per call, and a Python-level cache would break the graph
            return net.time_features(times[i:i + 1])
        key = (proj.weight._version, proj.bias._version, id(times), tuple(times.shape), times.device, times.dtype)
        if self._time_cache_key != key:
            with torch.no_grad():
                self._time_cache = [net.time_features(times[j:j + 1]) for j in range(times.shape[0])]
            self._time_cache_key = key
        return self._time_cache[i]

    def check_noise(self, noise: torch.Tensor, batch: int) -> None:
        """Raise a clear error when a noise slice does not fit this model."""
        expected = (batch, self.num_noise, self.obs_dim)
        if tuple(noise.shape) != expected:
            raise ValueError(
                f"noise has shape {tuple(noise.shape)} but this {self.kind} model expects {expected} per step; "
                f"draw it with draw_noise(batch={batch}, horizon=H) and pass bank[j] for step j"
            )

    def sample(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The normalized delta for normalized ``(s, a)``; deterministic and differentiable given ``noise``.

        :param s: ``(B, obs_dim)`` normalized states.
        :param a: ``(B, act_dim)`` normalized actions.
        :param noise: ``(B, num_noise, obs_dim)``; drawn fresh when ``None``.
        """
        raise NotImplementedError

    def loss(
        self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on a normalized minibatch; returns ``(loss, metrics)`` with detached
        scalar tensors as metrics (the loop syncs them only when it logs).

        :param weights: optional ``(B,)`` per-sample weights with mean 1 (e.g. policy tilt).
        """
        raise NotImplementedError


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean(w * x)`` over the batch, or the plain mean without weights."""
    return per_sample.mean() if weights is None else (weights * per_sample).mean()


class MLPDynamics(Dynamics):
    """Deterministic baseline: ``d_n = MLP([s_n, a_n])`` trained with MSE. It consumes no noise
    (``num_noise = 0``), so it drops into the bundle for a deterministic-model ablation.

    :param obs_dim: state width.
    :param act_dim: action width.
    :param cfg: network settings.
    """

    kind = "mlp"

    def __init__(self, obs_dim: int, act_dim: int, cfg: MLPDynamicsConfig | None = None) -> None:
        super().__init__(obs_dim, act_dim)
        self.cfg = cfg or MLPDynamicsConfig()
        self.net = ConditionalResMLP(obs_dim, obs_dim + act_dim, 0, self.cfg.net, x_input=False)

    @property
    def num_noise(self) -> int:
        return 0

    def sample(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(None, torch.cat([s, a], dim=-1))

    def loss(
        self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        err = (self.sample(s, a) - delta).pow(2).mean(dim=-1)
        loss = weighted_mean(err, weights)
        return loss, {"mse": loss.detach()}
