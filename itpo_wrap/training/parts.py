"""The trainable parts of a bundle as ``Component``s over one dataset held in tensors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.training.loop import Component
from itpo_wrap.world_model.config import HeadsConfig
from itpo_wrap.world_model.dynamics import Dynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead, fqe_loss

Policy = Callable[[torch.Tensor], torch.Tensor]
_VAL_ROWS = 4096


class DataTensors:
    """A dataset's transitions as tensors on one device, raw and normalized.

    :param data: the transitions.
    :param norms: ``obs``, ``act``, ``delta`` normalizers (fitted on the training split).
    :param device: where the tensors live.
    """

    def __init__(self, data: OfflineDataset, norms: dict[str, StateNormalizer], device: torch.device) -> None:
        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), device=device)

        self.n = len(data)
        self.s, self.a, self.s2 = t(data.observations), t(data.actions), t(data.next_observations)
        self.r, self.term = t(data.rewards), t(data.terminations)
        self.s_n, self.a_n = norms["obs"].normalize(self.s), norms["act"].normalize(self.a)
        self.d_n = norms["delta"].normalize(self.s2 - self.s)
        self.delta_to_state = t(norms["delta"].std / norms["obs"].std)  # delta-std units -> state-std units

    def index(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.n, (batch,), device=self.s.device, generator=gen)

    def val_index(self, seed: int = 0) -> torch.Tensor:
        """A fixed subset (at most 4096 rows) for cheap periodic validation."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(self.n, generator=g)[:_VAL_ROWS]
        return idx.to(self.s.device)


def dynamics_component(name: str, model: Dynamics, train: DataTensors, val: DataTensors, batch: int,
                       steps: int, loss_inputs: dict[str, Any] | None = None) -> Component:
    """Dynamics (or baseline) on ``(s_n, a_n) -> d_n``; validation is the one-step RMSE in units
    of the per-dimension state std, of one sample per row.

    :param loss_inputs: extra keyword arguments of every ``model.loss`` call, from the kind's
        ``loss_inputs`` hook (MeanFlow's ``teacher``, :mod:`itpo_wrap.world_model.kinds`).
    """
    extra = dict(loss_inputs or {})
    vi = val.val_index()

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = train.index(batch, gen)
        return model.loss(train.s_n[i], train.a_n[i], train.d_n[i], generator=gen, **extra)

    def evaluate() -> dict[str, float]:
        g = torch.Generator(device=val.s.device).manual_seed(1)
        noise = model.draw_noise(len(vi), generator=g)
        err = (model.sample(val.s_n[vi], val.a_n[vi], noise) - val.d_n[vi]) * val.delta_to_state
        return {"rmse_state_std": float(err.pow(2).mean().sqrt())}

    return Component(name, model, loss, steps, evaluate)


def reward_component(head: RewardHead, train: DataTensors, val: DataTensors, batch: int, steps: int) -> Component:
    """Reward regression; validation RMSE in env units."""
    vi = val.val_index()

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = train.index(batch, gen)
        return head.loss(train.s[i], train.a[i], train.r[i])

    def evaluate() -> dict[str, float]:
        return {"rmse": float((head(val.s[vi], val.a[vi]) - val.r[vi]).pow(2).mean().sqrt())}

    return Component("reward", head, loss, steps, evaluate)


def termination_component(head: TerminationHead, train: DataTensors, val: DataTensors, batch: int,
                          steps: int, pos_weight: float) -> Component:
    """Termination classifier on next states; terminal rows are oversampled to a quarter of each
    minibatch (they are ~0.1-1% of the data) and the loss reweighted back, so the classifier sees
    enough positives without biasing its probabilities."""
    pos = torch.nonzero(train.term).squeeze(-1)
    frac = float(len(pos)) / train.n
    n_pos = batch // 4 if len(pos) else 0
    vi = val.val_index()

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = train.index(batch - n_pos, gen)
        if n_pos:
            i = torch.cat([i, pos[torch.randint(0, len(pos), (n_pos,), device=pos.device, generator=gen)]])
        logits = head.logits(train.s2[i])
        done = train.term[i].to(logits.dtype)
        # Importance weights undo the oversampling: true share frac, sampled share ~ frac + 1/4.
        w = torch.ones_like(done)
        if n_pos:
            share = (batch - n_pos) / batch * frac + n_pos / batch
            w = torch.where(done > 0, frac / share, (1 - frac) / (1 - share)) * torch.where(
                done > 0, torch.full_like(done, pos_weight), torch.ones_like(done))
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, done, weight=w)
        return bce, {"bce": bce.detach()}

    def evaluate() -> dict[str, float]:
        pred, done = head(val.s2[vi]), val.term[vi]
        out = {"acc": float((pred == done).float().mean())}
        if bool(done.any()):
            out["recall"] = float(pred[done].float().mean())
        return out

    return Component("termination", head, loss, steps, evaluate)


def fqe_component(critic: CriticHead, policy: Policy, train: DataTensors, batch: int, steps: int,
                  cfg: HeadsConfig) -> Component:
    """Fitted Q evaluation of ``policy`` (twin critics, Polyak targets)."""
    target = copy.deepcopy(critic).requires_grad_(False)

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = train.index(batch, gen)
        b = {"observations": train.s[i], "actions": train.a[i], "rewards": train.r[i],
             "next_observations": train.s2[i], "terminations": train.term[i]}
        return fqe_loss(critic, target, b, policy, cfg.gamma)

    def polyak() -> None:
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(critic.parameters()), cfg.tau)

    return Component("critic", critic, loss, steps, after_step=polyak, extra={"target": target})
