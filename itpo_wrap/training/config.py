"""The training config of a world-model bundle (serialised into the bundle and the run dir)."""

from __future__ import annotations

import dataclasses
from typing import Any

from itpo_wrap.world_model.config import HeadsConfig
from itpo_wrap.world_model.kinds import get_kind

# Train configs written before the kinds registry (issue 22) kept one section per kind, of which the one
# named by ``dynamics`` was trained (the MLP kind reused the diffusion section's net): a fixed old format.
_LEGACY_SECTIONS = ("diffusion", "meanflow")


@dataclasses.dataclass(frozen=True)
class WorldModelTrainConfig:
    """Budgets and optimiser settings for every part of a bundle.

    Step counts are sized so one bundle (dynamics + same-budget MLP baseline + heads) trains in at
    most 20 minutes on 2 idle CPU cores with ``workers=2``: per update (batch 256, one thread) the
    diffusion loss costs ~1.5 MFLOP per row, MeanFlow's (with the JVP on a quarter of the rows)
    about twice that, so 50k MeanFlow updates are ~8-12 minutes in one thread while the baseline
    and heads (~7 minutes) run in the other. The cost per update does not depend on the dataset size.

    :param dynamics: the dynamics kind, a name in :func:`~itpo_wrap.world_model.kinds.kind_names`.
    :param dynamics_config: that kind's settings (its config class, or a dict of its fields); ``None``
        (kept as ``None``, so ``dataclasses.replace(cfg, dynamics=...)`` switches kinds) takes the kind's
        defaults, for ``meanflow`` the shipped recipe, which needs a teacher. :meth:`kind_config` resolves it.
    :param heads: reward / termination / FQE critic settings.
    :param dynamics_steps: updates of the dynamics model (and of the MLP baseline).
    :param reward_steps: updates of the reward head.
    :param termination_steps: updates of the termination head (skipped when data never terminates).
    :param critic_steps: FQE updates (only when a policy is given and no critic).
    :param batch_size: minibatch of every component.
    :param lr: peak Adam learning rate (cosine decay after a linear warmup).
    :param warmup_steps: linear warmup length.
    :param final_lr_fraction: the cosine decays to ``lr * final_lr_fraction``.
    :param weight_decay: AdamW weight decay.
    :param grad_clip: global grad-norm clip (0 disables).
    :param baseline: also train the deterministic MLP dynamics with the same budget.
    :param holdout_fraction: share of episodes held out for validation and evaluation.
    :param seed: seed of the split, the initialisations and the minibatches.
    :param log_every: steps between metric rows.
    :param eval_every: steps between held-out validation rows.
    :param checkpoint_every: steps between resumable checkpoints.
    :param workers: 2 trains the dynamics in one thread and the other parts in a second one
        (torch releases the GIL in its kernels, so two cores are used).
    :param num_threads: torch intra-op threads (1 per worker is fastest for these small nets).
    :param device: ``auto``, ``cpu`` or ``cuda[:N]``.
    :param ema_decay: keep an exponential moving average of each part's weights with this decay (``0``
        disables it, the default): validation, checkpoints' reported metrics and the final bundle use the
        averaged weights. Standard for diffusion and MeanFlow models (Geng et al. 2025 use 0.9999 over far
        longer runs); it damps the step-to-step noise of MeanFlow's bootstrapped target.
    """

    dynamics: str = "diffusion"
    dynamics_config: Any = None
    heads: HeadsConfig = dataclasses.field(default_factory=HeadsConfig)
    dynamics_steps: int = 50_000
    reward_steps: int = 20_000
    termination_steps: int = 10_000
    critic_steps: int = 50_000
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 500
    final_lr_fraction: float = 0.02
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    baseline: bool = True
    holdout_fraction: float = 0.1
    seed: int = 0
    log_every: int = 250
    eval_every: int = 5_000
    checkpoint_every: int = 5_000
    workers: int = 2
    num_threads: int = 1
    device: str = "auto"
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        kind = get_kind(self.dynamics)
        if isinstance(self.dynamics_config, dict):
            object.__setattr__(self, "dynamics_config", kind.config_from_dict(self.dynamics_config))
        elif self.dynamics_config is not None and not isinstance(self.dynamics_config, kind.config):
            raise TypeError(f"WorldModelTrainConfig.dynamics_config must be a {kind.config.__name__} for dynamics="
                            f"{self.dynamics!r}, got {type(self.dynamics_config).__name__}")
        if isinstance(self.heads, dict):
            object.__setattr__(self, "heads", HeadsConfig(**self.heads))
        elif not isinstance(self.heads, HeadsConfig):
            raise TypeError(f"WorldModelTrainConfig.heads must be a HeadsConfig, got {type(self.heads).__name__}")
        for name in ("dynamics_steps", "reward_steps", "termination_steps", "critic_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"WorldModelTrainConfig.{name}={getattr(self, name)} must be >= 0")
        for name in ("batch_size", "lr", "log_every", "eval_every", "checkpoint_every", "num_threads"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WorldModelTrainConfig.{name}={getattr(self, name)} must be > 0")
        if self.workers not in (1, 2):
            raise ValueError(f"WorldModelTrainConfig.workers={self.workers} must be 1 or 2")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"WorldModelTrainConfig.holdout_fraction={self.holdout_fraction} must be in (0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"WorldModelTrainConfig.ema_decay={self.ema_decay} must be in [0, 1) (0 disables the average)")
        if not 0.0 <= self.final_lr_fraction <= 1.0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("final_lr_fraction must be in [0, 1]; weight_decay and grad_clip must be >= 0")

    def kind_config(self) -> Any:
        """The settings of the chosen kind: ``dynamics_config``, or the kind's defaults when it is ``None``."""
        return get_kind(self.dynamics).config() if self.dynamics_config is None else self.dynamics_config

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for the bundle's ``info`` and the run dir's ``config.json``), with the kind's
        settings resolved: what was trained, not "the defaults of the day"."""
        return dataclasses.asdict(dataclasses.replace(self, dynamics_config=self.kind_config()))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldModelTrainConfig:
        """Inverse of ``to_dict``; also reads the per-kind sections of configs written before the registry.

        :param values: the dict.
        """
        return cls(**upgrade_dict(values))


def upgrade_dict(values: dict[str, Any]) -> dict[str, Any]:
    """A train config dict in today's form: the old per-kind sections (``diffusion``, ``meanflow``) become
    ``dynamics_config``, the section of the kind that was trained.

    :param values: a ``to_dict`` result, old or new.
    """
    if not any(section in values for section in _LEGACY_SECTIONS):
        return dict(values)
    out = {k: v for k, v in values.items() if k not in _LEGACY_SECTIONS}
    kind = values.get("dynamics", "diffusion")
    if kind in _LEGACY_SECTIONS:
        out.setdefault("dynamics_config", values.get(kind))
    elif kind == "mlp" and isinstance(values.get("diffusion"), dict) and "net" in values["diffusion"]:
        out.setdefault("dynamics_config", {"net": values["diffusion"]["net"]})
    return out
