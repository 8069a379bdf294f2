"""Frozen, validated configs of the world model's parts and of its training.

Every config is serialised (``dataclasses.asdict``) into the bundle and into each metrics row, so
a number can always be traced to the settings that made it. Settings the paper leaves open
(METHOD.md section 1: K, schedule, width are "unknown") are fields here with measured defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_SCHEDULES = ("cosine", "linear")
_SAMPLERS = ("ddpm", "ddim")
_ACTIVATIONS = ("relu", "silu", "mish", "tanh")


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name}={value!r} must be > 0")


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """The conditional residual MLP used by every dynamics kind (denoiser, MeanFlow net, baseline).

    :param hidden_dim: width of the residual stream (the brief's "lean": 256).
    :param num_blocks: residual blocks ``h + W(act(LN(h) + time_bias))``.
    :param time_embed_dim: sinusoidal features per time input (even).
    :param max_frequency: highest embedding frequency in cycles per unit time; lower keeps
        ``d u / d t`` (MeanFlow's JVP target, METHOD.md section 5) smooth.
    :param activation: ``silu`` (default), ``relu``, ``mish`` or ``tanh``.
    :param x_gate: scale the sample's input projection by ``1 + g(times)`` (a FiLM gate from the time
        embedding). Without it the noisy sample enters additively at every time, and at ``t = 1``, where
        MeanFlow's one-step point must largely ignore the pure noise ``z_1``, the net cannot switch that
        input off: the one-step error floors near 0.1 state std on Hopper however it is trained
        (``benchmarks/meanflow_variants.py``).
    """

    hidden_dim: int = 256
    num_blocks: int = 3
    time_embed_dim: int = 32
    max_frequency: float = 32.0
    activation: str = "silu"
    x_gate: bool = False

    def __post_init__(self) -> None:
        _check_positive("NetConfig", hidden_dim=self.hidden_dim, num_blocks=self.num_blocks,
                        time_embed_dim=self.time_embed_dim, max_frequency=self.max_frequency)
        if self.time_embed_dim % 2:
            raise ValueError(f"NetConfig.time_embed_dim={self.time_embed_dim} must be even (sin and cos pairs)")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"NetConfig.activation={self.activation!r}; choose one of {_ACTIVATIONS}")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Conditional DDPM on the normalized state delta (METHOD.md sections 1-2).

    :param num_train_timesteps: K of the training forward process.
    :param num_inference_steps: denoising steps of the sampler (a subset of the K timesteps).
    :param beta_schedule: ``cosine`` (Nichol and Dhariwal) or ``linear`` (Ho et al.).
    :param beta_start: first beta of the linear schedule.
    :param beta_end: last beta of the linear schedule.
    :param sampler: ``ddpm`` (stochastic, METHOD.md section 2 eq.) or ``ddim`` (sigma = 0).
    :param clip_sample: clamp the predicted clean delta to ``[-clip_sample, clip_sample]``
        (normalized units) at each step; ``None`` keeps the sampler smooth everywhere. The cosine
        schedule ends at alpha_bar ~ 1e-7, so skipping steps amplifies the first step's error
        (x 346 at K = 100, 10 steps): use it with ``clip_sample`` or ``precondition``.
    :param precondition: build ``eps_theta = sqrt(1 - abar_k) x_k + sqrt(abar_k) F(x_k, k | s, a)``.
        The loss is still the epsilon-prediction loss; the skip term makes ``eps_theta`` exact at
        pure noise, so the implied clean sample ``sqrt(abar) x - sqrt(1 - abar) F`` never divides by
        a small ``sqrt(abar)`` and each reverse step stays contractive (an untrained or
        off-distribution net cannot blow the sampler up).
    :param net: the denoiser.
    """

    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler: str = "ddpm"
    clip_sample: float | None = None
    precondition: bool = True
    net: NetConfig = dataclasses.field(default_factory=NetConfig)

    def __post_init__(self) -> None:
        _check_positive("DiffusionConfig", num_train_timesteps=self.num_train_timesteps,
                        num_inference_steps=self.num_inference_steps)
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"DiffusionConfig.num_inference_steps={self.num_inference_steps} exceeds "
                f"num_train_timesteps={self.num_train_timesteps}; lower it or raise num_train_timesteps"
            )
        if self.beta_schedule not in _SCHEDULES:
            raise ValueError(f"DiffusionConfig.beta_schedule={self.beta_schedule!r}; choose one of {_SCHEDULES}")
        if self.sampler not in _SAMPLERS:
            raise ValueError(f"DiffusionConfig.sampler={self.sampler!r}; choose one of {_SAMPLERS}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"DiffusionConfig needs 0 < beta_start ({self.beta_start}) < beta_end ({self.beta_end}) < 1")
        if self.clip_sample is not None and not self.clip_sample > 0:
            raise ValueError(f"DiffusionConfig.clip_sample={self.clip_sample} must be > 0 or None")
        _coerce_net(self)


@dataclasses.dataclass(frozen=True)
class MeanFlowConfig:
    """MeanFlow one-step dynamics (METHOD.md section 5, Geng et al. 2025).

    The defaults are the recipe every shipped MeanFlow bundle was trained with (``docs/world_models.md``,
    "What fixes the one-step point"): a quarter of each minibatch distilled from a diffusion teacher, the
    gated noise input and time frequencies up to 4. Plain MeanFlow (``teacher_ratio=0``, ``NetConfig()``)
    missed its accuracy target there (one-step 0.31 state std on Hopper medium-replay against 0.056).

    The network predicts the clean sample ``F`` and ``u = (z_t - F) / max(t, t_floor)`` (the x-prediction
    of JiT / pixel MeanFlow): the one-step sample is ``F(z_1, 0, 1 | s, a)`` itself, so near-deterministic
    transitions (MuJoCo) are a plain regression for ``F``.

    :param num_inference_steps: 1 is the paper's one-step sampler; more steps integrate the
        average velocity over a uniform grid.
    :param time_mean: mean of the logit-normal (t, r) sampler.
    :param time_std: std of the logit-normal (t, r) sampler.
    :param flow_ratio: share of samples with ``r = t`` (plain flow matching): 0.75.
    :param adaptive_p: power p of the adaptive weight ``1 / (||delta||^2 + c)^p``; 0 disables it.
    :param adaptive_c: the constant c of the adaptive weight.
    :param teacher_ratio: share of each minibatch set aside (before the split above) at
        ``(r, t) = (0, 1)`` whose target is the *solved* ODE instead of the JVP identity: by definition
        ``u(z_1, 0, 1) = z_1 - x(z_1)`` with ``x(z_1)`` the end point of the flow from ``z_1``, and a
        trained diffusion model's deterministic DDIM sampler provides that end point (a teacher). The
        identity's bootstrapped target is what fails to train the one-step point on our data
        (``docs/world_models.md``); these rows take a plain squared error, without the adaptive weight.
        Above 0 (default 0.25) training needs a teacher (``itpo train-world-model --teacher
        wm_diffusion.pt``); 0 is plain MeanFlow.
    :param t_floor: lower bound of ``t`` in the x-prediction's division.
    :param net: the average-velocity network (default: gated noise input, frequencies up to 4).
    """

    num_inference_steps: int = 1
    time_mean: float = -0.4
    time_std: float = 1.0
    flow_ratio: float = 0.75
    adaptive_p: float = 1.0
    adaptive_c: float = 1e-3
    teacher_ratio: float = 0.25
    t_floor: float = 0.05
    net: NetConfig = dataclasses.field(default_factory=lambda: NetConfig(max_frequency=4.0, x_gate=True))

    def __post_init__(self) -> None:
        _check_positive("MeanFlowConfig", num_inference_steps=self.num_inference_steps,
                        time_std=self.time_std, adaptive_c=self.adaptive_c)
        if not 0.0 < self.t_floor < 1.0:
            raise ValueError(f"MeanFlowConfig.t_floor={self.t_floor} must be in (0, 1)")
        if not 0.0 <= self.flow_ratio <= 1.0:
            raise ValueError(f"MeanFlowConfig.flow_ratio={self.flow_ratio} must be in [0, 1]")
        if not 0.0 <= self.teacher_ratio <= 1.0:
            raise ValueError(f"MeanFlowConfig.teacher_ratio={self.teacher_ratio} must be in [0, 1]")
        if self.adaptive_p < 0:
            raise ValueError(f"MeanFlowConfig.adaptive_p={self.adaptive_p} must be >= 0")
        _coerce_net(self)


@dataclasses.dataclass(frozen=True)
class MLPDynamicsConfig:
    """The deterministic baseline: the same residual MLP regressing the normalized delta (MSE).

    :param net: the network (time inputs unused).
    """

    net: NetConfig = dataclasses.field(default_factory=NetConfig)

    def __post_init__(self) -> None:
        _coerce_net(self)


@dataclasses.dataclass(frozen=True)
class HeadsConfig:
    """Reward, termination and (optional) FQE critic heads.

    :param reward_hidden: hidden widths of the reward MLP (paper reading: 3 x 512; 3 x 256 fits our budget).
    :param termination_hidden: hidden widths of the termination classifier.
    :param termination_pos_weight: BCE weight of the rare positive (terminal) class.
    :param critic_hidden: hidden widths of each FQE critic.
    :param critic_layernorm: LayerNorm in the FQE critics (ReBRAC's choice; stabilises TD).
    :param gamma: discount of FQE.
    :param tau: Polyak rate of the FQE target critics.
    """

    reward_hidden: tuple[int, ...] = (256, 256, 256)
    termination_hidden: tuple[int, ...] = (256, 256)
    termination_pos_weight: float = 1.0
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    critic_layernorm: bool = True
    gamma: float = 0.99
    tau: float = 0.005

    def __post_init__(self) -> None:
        for name in ("reward_hidden", "termination_hidden", "critic_hidden"):
            widths = tuple(int(w) for w in getattr(self, name))
            if not widths or min(widths) <= 0:
                raise ValueError(f"HeadsConfig.{name}={getattr(self, name)!r} must be non-empty positive widths")
            object.__setattr__(self, name, widths)
        _check_positive("HeadsConfig", termination_pos_weight=self.termination_pos_weight, tau=self.tau)
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"HeadsConfig.gamma={self.gamma} must be in [0, 1)")


def _coerce_net(cfg: Any) -> None:
    """Accept ``net`` as a dict (from a saved bundle) and turn it into a ``NetConfig``."""
    if isinstance(cfg.net, dict):
        object.__setattr__(cfg, "net", NetConfig(**cfg.net))
    elif not isinstance(cfg.net, NetConfig):
        raise TypeError(f"{type(cfg).__name__}.net must be a NetConfig or dict, got {type(cfg.net).__name__}")
