"""State and reward normalizers with ``state_dict()`` / ``load_state_dict()``.

Plain numpy on the way in (fitting happens on datasets), torch-friendly on the way out: the
world model and the offline trainers store these statistics inside their checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayOrTensor = np.ndarray | torch.Tensor


class StateNormalizer:
    """Per-dimension standardization ``(x - mean) / std``, with ``std`` floored at ``eps``.

    :param mean: per-dimension mean.
    :param std: per-dimension standard deviation.
    :param eps: floor on ``std`` so constant dimensions do not divide by zero.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, eps: float = 1e-3) -> None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"mean has shape {mean.shape} but std has {std.shape}; they must match")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("StateNormalizer statistics contain NaN or inf; check the data it was fitted on")
        self.mean = mean
        self.std = np.maximum(std, eps).astype(np.float32)
        self.eps = float(eps)

    @classmethod
    def fit(cls, x: np.ndarray, eps: float = 1e-3) -> StateNormalizer:
        """Fit to the rows of ``x`` (shape ``(N, dim)``)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"StateNormalizer.fit expects a non-empty (N, dim) array, got shape {x.shape}")
        return cls(x.mean(axis=0), x.std(axis=0), eps=eps)

    @classmethod
    def identity(cls, dim: int) -> StateNormalizer:
        return cls(np.zeros(dim), np.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def normalize(self, x: ArrayOrTensor) -> ArrayOrTensor:
        if isinstance(x, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=x.device, dtype=x.dtype)
            std = torch.as_tensor(self.std, device=x.device, dtype=x.dtype)
            return (x - mean) / std
        return ((np.asarray(x) - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: ArrayOrTensor) -> ArrayOrTensor:
        if isinstance(x, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=x.device, dtype=x.dtype)
            std = torch.as_tensor(self.std, device=x.device, dtype=x.dtype)
            return x * std + mean
        return (np.asarray(x) * self.std + self.mean).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": torch.from_numpy(self.mean.copy()), "std": torch.from_numpy(self.std.copy()), "eps": self.eps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float32)
        if mean.shape != self.mean.shape:
            raise ValueError(f"state_dict has dim {mean.shape[0]} but this normalizer has dim {self.dim}")
        self.mean = mean
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.eps = float(state["eps"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> StateNormalizer:
        return cls(np.asarray(state["mean"]), np.asarray(state["std"]), eps=float(state["eps"]))


class RewardNormalizer:
    """Affine reward scaling ``r * scale + shift``.

    ``mode="std"`` divides by the reward std; ``mode="return_range"`` is the IQL/CORL convention
    for MuJoCo (``1000 / (max episode return - min episode return)``), which keeps TD targets of
    the same size across datasets; ``"none"`` is the identity.

    :param scale: multiplicative factor.
    :param shift: additive offset (after scaling).
    """

    MODES = ("none", "std", "return_range")

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        if not np.isfinite(scale) or scale == 0.0:
            raise ValueError(f"RewardNormalizer scale={scale} must be finite and non-zero")
        self.scale = float(scale)
        self.shift = float(shift)

    @classmethod
    def fit(cls, rewards: np.ndarray, mode: str = "std", episode_returns: np.ndarray | None = None) -> RewardNormalizer:
        """Fit on a dataset's rewards (and episode returns for ``"return_range"``)."""
        if mode not in cls.MODES:
            raise ValueError(f"RewardNormalizer mode={mode!r}; choose one of {cls.MODES}")
        if mode == "none":
            return cls()
        if mode == "std":
            return cls(scale=1.0 / max(float(np.std(rewards)), 1e-6))
        if episode_returns is None or len(episode_returns) < 2:
            raise ValueError("mode='return_range' needs episode_returns of at least two episodes")
        span = float(np.max(episode_returns) - np.min(episode_returns))
        return cls(scale=1000.0 / max(span, 1e-6))

    def normalize(self, r: ArrayOrTensor) -> ArrayOrTensor:
        return r * self.scale + self.shift

    def denormalize(self, r: ArrayOrTensor) -> ArrayOrTensor:
        return (r - self.shift) / self.scale

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "shift": self.shift}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.shift = float(state["shift"])
