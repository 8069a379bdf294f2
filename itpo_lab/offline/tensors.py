"""Torch views of an ``OfflineDataset`` for actor-critic updates, plus the small update helpers.

The trainers in ``policies/`` sample thousands of minibatches per second, so the dataset is
converted to torch tensors once and indexed with a seeded ``torch.Generator`` (whose state goes
into the resume checkpoint, so a resumed run draws the same batches as an uninterrupted one).

Actions are stored **scaled to [-1, 1]** (the tanh actor's range, SB3's convention
``a_env = low + 0.5 * (a + 1) * (high - low)``; the library's ``itpo_wrap.adapters.to_policy_numpy`` maps
them), so the critics see the same action units as the actor and as SB3's critics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from itpo_wrap.adapters import to_policy_numpy
from itpo_wrap.data.buffer import OfflineDataset


def action_bounds(dataset: OfflineDataset) -> tuple[np.ndarray, np.ndarray]:
    """The env's Box bounds for ``dataset``'s actions: from ``dataset.action_space``, else from
    ``gymnasium.make(dataset.env_id)``, else ``[-1, 1]`` when every action already lies inside it.

    :param dataset: the offline dataset.
    :return: ``(low, high)``, float32 arrays of shape ``(act_dim,)``.
    """
    space = dataset.action_space
    if space is None and dataset.env_id:
        import gymnasium as gym

        env = gym.make(dataset.env_id)
        space = env.action_space
        env.close()
    if space is not None:
        low = np.broadcast_to(np.asarray(space.low, dtype=np.float32), (dataset.act_dim,)).copy()
        high = np.broadcast_to(np.asarray(space.high, dtype=np.float32), (dataset.act_dim,)).copy()
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"action space {space} is unbounded; a tanh actor needs a finite Box")
        return low, high
    if np.abs(dataset.actions).max() > 1.0 + 1e-6:
        raise ValueError(
            f"dataset {dataset.dataset_id!r} has no action_space or env_id and its actions reach "
            f"{np.abs(dataset.actions).max():.3g} outside [-1, 1]; set env_id or action_space on the dataset"
        )
    return -np.ones(dataset.act_dim, np.float32), np.ones(dataset.act_dim, np.float32)


@dataclasses.dataclass
class Batch:
    """A minibatch. ``rewards``, ``terminations``, ``next_action_valid`` are ``(B, 1)`` float32."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    next_actions: torch.Tensor
    terminations: torch.Tensor
    next_action_valid: torch.Tensor


class TransitionTensors:
    """An ``OfflineDataset`` as float32 torch tensors with actions scaled to ``[-1, 1]``.

    ``terminations`` (MDP ended: no bootstrap) become the ``done`` mask of the TD target;
    ``truncations`` (time limit) are deliberately not stored, because bootstrapping through a
    timeout is correct (Pardo et al. 2018, "Time Limits in Reinforcement Learning").

    :param dataset: the dataset.
    :param action_low: Box lower bound (``action_bounds(dataset)`` when ``None``).
    :param action_high: Box upper bound.
    """

    def __init__(
        self,
        dataset: OfflineDataset,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
    ) -> None:
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.dataset_id!r} is empty; it needs at least one transition")
        if action_low is None or action_high is None:
            action_low, action_high = action_bounds(dataset)
        self.action_low = np.asarray(action_low, np.float32)
        self.action_high = np.asarray(action_high, np.float32)
        for name in ("observations", "next_observations", "rewards"):
            if not np.all(np.isfinite(getattr(dataset, name))):
                raise ValueError(f"dataset {dataset.dataset_id!r} has NaN or inf in {name}; clean it before training")

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))

        self.observations = t(dataset.observations)
        self.actions = t(self._scaled(dataset.actions))
        self.rewards = t(dataset.rewards).reshape(-1, 1)
        self.next_observations = t(dataset.next_observations)
        self.next_actions = t(self._scaled(dataset.next_actions))
        self.terminations = t(dataset.terminations).reshape(-1, 1)
        self.next_action_valid = t(dataset.next_action_valid).reshape(-1, 1)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    def _scaled(self, actions: np.ndarray) -> np.ndarray:
        """Env-unit actions -> ``[-1, 1]`` float32, clipped (``to_policy_numpy`` with float32 bounds)."""
        return to_policy_numpy(np.asarray(actions, np.float32), self.action_low, self.action_high)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A uniform minibatch (with replacement) drawn with ``generator``.

        :param batch_size: rows per batch.
        :param generator: the seeded generator (its state makes resumes exact).
        """
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        return Batch(*(x.index_select(0, idx) for x in (
            self.observations, self.actions, self.rewards, self.next_observations,
            self.next_actions, self.terminations, self.next_action_valid)))


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``theta' <- (1 - tau) theta' + tau theta`` (Lillicrap et al. 2016, DDPG)."""
    tgt: list[torch.Tensor] = list(target.parameters())
    src: list[torch.Tensor] = list(source.parameters())
    torch._foreach_lerp_(tgt, src, tau)


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    """Freeze or unfreeze parameters (skips weight gradients of the critic in the actor step)."""
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


def _linear_fp32(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", enabled=False):
        return nn.functional.linear(x.float(), self.weight, self.bias)


def keep_output_layer_fp32(net: nn.Sequential) -> None:
    """Run the last ``Linear`` of ``net`` in float32 even inside a bf16 autocast region.

    bf16 keeps 8 mantissa bits: a Q value near 300 would be rounded to a multiple of 2, as large
    as a MuJoCo step's reward. With the output layer in float32 the hidden features' rounding
    errors average out over the width instead. The patch lives on the instance (``state_dict``
    and checkpoints are unchanged) and survives ``copy.deepcopy`` (target networks).

    :param net: an ``nn.Sequential`` ending in ``nn.Linear`` (``TanhActor.net``, ``TwinQ.q1``/``q2``).
    """
    last = net[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError(f"expected the last layer to be nn.Linear, got {type(last).__name__}")
    last.forward = _linear_fp32.__get__(last, nn.Linear)  # type: ignore[method-assign]


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 matmuls natively (``avx512_bf16`` or ``amx_bf16`` in Linux's
    ``/proc/cpuinfo``). Elsewhere bf16 autocast is emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set(fh.read().split())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)
