"""What one ``itpo improve`` run holds fixed (:class:`Setup`: the policies, the split, the held-out noise banks),
the drift projection, and its run folder (settings checked before a resume, metrics trimmed to the
checkpoint); the loop is :mod:`itpo_wrap.improve`'s."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.adapters import PolicyAdapter, make_adapter, to_env_torch, to_policy_torch
from itpo_wrap.adapters.validation import check_world_model
from itpo_wrap.config import AdaptConfig
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.improve_config import MAY_DIFFER, ImproveConfig
from itpo_wrap.objective import particle_returns, per_env_norm
from itpo_wrap.pairing import compare, world_model_facts
from itpo_wrap.world_model.trust import fitness_of

CHECKPOINT = "improve.ckpt.pt"  # fit_component's name for the component "improve"


@dataclass
class Setup:
    """The fixed parts of a run. ``policy`` / ``base_policy``: states -> env-space actions, as the wrapper's
    step maps them (squashed outputs to the Box, else clipped). ``*_obs`` are float32 ``(S, obs_dim)`` tensors;
    ``train_actions`` the dataset's actions in the policy's units; ``anchor`` the base's parameters ``psi_0``."""

    adapter: PolicyAdapter
    base_adapter: PolicyAdapter
    improved: Any
    wm: Any
    acfg: AdaptConfig
    bounds: tuple[torch.Tensor, torch.Tensor]
    anchor: list[torch.Tensor]
    train_obs: torch.Tensor
    train_actions: torch.Tensor
    val_obs: torch.Tensor
    val_noise: torch.Tensor
    verdict_obs: torch.Tensor
    verdict_noise: torch.Tensor
    val_base: torch.Tensor

    def policy(self, s: torch.Tensor) -> torch.Tensor:
        return to_env_torch(self.adapter.forward(s), *self.bounds, self.adapter.squashed)

    def base_policy(self, s: torch.Tensor) -> torch.Tensor:
        return to_env_torch(self.base_adapter.forward(s), *self.bounds, self.base_adapter.squashed)

    def base_action(self, s: torch.Tensor) -> torch.Tensor:
        """The base's action at ``s`` in its own units (the BC target), no gradient."""
        with torch.no_grad():
            return self.base_adapter.forward(s)

    def returns(self, policy: Callable[[torch.Tensor], torch.Tensor], s: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        """``J(s_i)`` per start state, ``(S,)``: predict()'s particle mean, ``M`` particles per state."""
        m = self.acfg.particles
        return particle_returns(policy, self.wm, s.repeat_interleave(m, 0), noise, self.acfg, s.shape[0]).mean(1)

    def drift(self) -> float:
        """``||psi - psi_0|| / ||psi_0||``."""
        with torch.no_grad():
            delta = [p - a for p, a in zip(self.adapter.params, self.anchor, strict=True)]
            return float(per_env_norm(delta, 1) / per_env_norm(self.anchor, 1))

    def identity(self, cfg: ImproveConfig, data: OfflineDataset) -> dict[str, Any]:
        """What a resumed run must share with the run in its folder (``config.json``)."""
        return {"config": cfg.to_dict(), "base": _digest(self.anchor),
                "world_model": _digest(list(self.wm.state_dict().values())) if isinstance(self.wm, nn.Module)
                else type(self.wm).__name__,
                "dataset": {"id": data.dataset_id, "rows": len(data), "episodes": data.num_episodes}}


@dataclass(frozen=True)
class LoopSettings:
    """What ``fit_component`` reads: a constant learning rate (no warmup, no decay) and no weight decay, which
    would pull the weights toward zero instead of toward the base."""

    lr: float
    grad_clip: float
    log_every: int
    eval_every: int
    checkpoint_every: int
    weight_decay: float = 0.0
    warmup_steps: int = 0
    final_lr_fraction: float = 1.0

    @classmethod
    def of(cls, cfg: ImproveConfig) -> LoopSettings:
        return cls(cfg.lr, cfg.grad_clip or 0.0, cfg.log_every, cfg.eval_every, cfg.checkpoint_every)


def prepare(base: Any, improved: Any, wm: Any, data: OfflineDataset, cfg: ImproveConfig) -> Setup:
    """Check the pairing (policy, world model, dataset), split the data, draw the held-out banks.

    :param base: the base policy (only read).
    :param improved: a deep copy of it, whose parameters are trained.
    :param wm: the world model (its critic attached).
    :param data: the dataset.
    :param cfg: the settings.
    """
    acfg = cfg.objective_config()
    base_adapter, adapter = make_adapter(base), make_adapter(improved)
    device, low, high = check_world_model(base_adapter, wm, acfg)
    compare("the dataset", {"env_id": data.env_id, "obs_dim": data.obs_dim, "act_dim": data.act_dim},
            "the world model", world_model_facts(wm), "improve the policy on the dataset its world model was "
            "trained on (a zoo entry's dataset_id)")
    train, val, verdict = _split(data, cfg)
    actions = torch.as_tensor(train.actions, device=device)
    if adapter.squashed:  # the dataset's actions in the policy's [-1, 1] units (the BC target "data")
        actions = to_policy_torch(actions, low, high)
    banks = []
    for offset, states in ((1, val), (2, verdict)):  # banks no training batch draws (those use seed + 0)
        g = torch.Generator(device=device).manual_seed(cfg.seed + offset)
        banks.append(wm.draw_noise(len(states) * cfg.particles, cfg.horizon, g))
    obs = [torch.as_tensor(x, device=device) for x in (train.observations, val, verdict)]
    anchor = [p.detach().clone() for p in adapter.params]
    setup = Setup(adapter, base_adapter, improved, wm, acfg, (low, high), anchor, obs[0], actions, obs[1], banks[0],
                  obs[2], banks[1], torch.empty(0))
    with torch.no_grad():
        setup.val_base = setup.returns(setup.base_policy, setup.val_obs, setup.val_noise)
    return setup


def _split(data: OfflineDataset, cfg: ImproveConfig) -> tuple[OfflineDataset, np.ndarray, np.ndarray]:
    """Training episodes; held-out episodes split in two, validation and verdict states from each half."""
    try:
        train, held = data.split_episodes(cfg.holdout_fraction, seed=cfg.seed)
        val, verdict = held.split_episodes(0.5, seed=cfg.seed)
    except ValueError as err:
        raise ValueError(f"the dataset has {data.num_episodes} episodes, too few to hold out validation and "
                         f"verdict episodes at holdout_fraction={cfg.holdout_fraction} ({err}); raise "
                         "holdout_fraction or use a larger dataset") from None
    rng = np.random.default_rng(cfg.seed)
    picks = [d.observations[np.sort(rng.permutation(len(d))[: cfg.validation_states])] for d in (val, verdict)]
    if min(len(p) for p in picks) < 2:
        raise ValueError("the held-out episodes have fewer than 2 states each; raise holdout_fraction")
    return train, picks[0], picks[1]


def check_model(wm: object, mode: str) -> None:
    """``ImproveConfig.model_check``: warn about (or refuse) a world model whose recorded held-out accuracy fails
    the limits of :mod:`itpo_wrap.world_model.trust`, as the wrapper does; before anything runs."""
    fitness = fitness_of(wm) if mode != "off" else None
    problems = fitness.problems() if fitness is not None else []
    if not problems:
        return
    msg = (f"this world model is not fit to plan with: {'; '.join(problems)}. Ascent through it would optimise "
           "against its errors; retrain it (`itpo eval-world-model` to check)")
    if mode == "strict":
        raise ValueError(msg + "; model_check='strict' refuses it")
    warnings.warn(msg, UserWarning, stacklevel=3)


@contextmanager
def frozen(wm: object) -> Iterator[None]:
    """No gradient into the world model's own weights while the policy trains (its ``.grad`` stays untouched)."""
    params = [p for p in wm.parameters() if p.requires_grad] if isinstance(wm, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def open_run(folder: Path, identity: dict[str, Any]) -> int:
    """Check a run folder against this run's settings (before writing anything), then record them.

    :param folder: the run folder (created when missing).
    :param identity: :meth:`Setup.identity`.
    :return: the step of its checkpoint (``0``: a fresh run); ``metrics.csv`` keeps the rows up to it.
    """
    path, ckpt = folder / "config.json", folder / CHECKPOINT
    if path.is_file():
        _check_same(folder, json.loads(path.read_text()), identity)
    done = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"]) if ckpt.is_file() else 0
    if done > identity["config"]["steps"]:
        raise ValueError(f"the run in {str(folder)!r} is at step {done}, beyond steps={identity['config']['steps']}; "
                         f"pass steps >= {done} to finish it, or another run folder")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(identity, indent=2) + "\n")
    tmp.replace(path)
    for stale in ("result.json", "improved.pt"):  # a finished run's verdict is remade below; never left stale
        (folder / stale).unlink(missing_ok=True)
    return done


def projection(setup: Setup, max_drift: float | None) -> Callable[[], None] | None:
    """The hook after each step: back onto ``||psi - psi_0|| <= max_drift ||psi_0||`` (the wrapper's ``max_drift``),
    touching the parameters only when they left the ball (``None``: no bound, no hook)."""
    if max_drift is None:
        return None
    params, anchor = setup.adapter.params, setup.anchor
    radius = max_drift * float(per_env_norm(anchor, 1))

    def project() -> None:
        with torch.no_grad():
            delta = [p - a for p, a in zip(params, anchor, strict=True)]
            norm = float(per_env_norm(delta, 1))
            if norm > radius:
                torch._foreach_copy_(params, [a + d * (radius / norm) for a, d in zip(anchor, delta, strict=True)])

    return project


def std_error(x: torch.Tensor) -> float:
    """Standard error of the mean of ``x`` (``0`` for one value)."""
    n = x.numel()
    return float(x.double().std(unbiased=True) / n**0.5) if n > 1 else 0.0


def _check_same(folder: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    keys = sorted(set(old.get("config", {})) | set(new["config"]))
    diffs = [f"{k}: {old['config'].get(k)!r} -> {new['config'].get(k)!r}" for k in keys
             if k not in MAY_DIFFER and old.get("config", {}).get(k) != new["config"].get(k)]
    diffs += [f"the {k} differs" for k in ("base", "world_model", "dataset") if old.get(k) != new[k]]
    if diffs:
        raise ValueError(f"{str(folder)!r} holds a run with other settings ({'; '.join(diffs)}); rerun with its "
                         "settings to resume it, or pass another run folder (--out)")


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
