"""Writing the offline-policy checkpoint format that :mod:`itpo_wrap.formats.offline_policy` reads (the
layout is described there): the trainers' final ``policy.pt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap._version import __version__
from itpo_wrap.formats.offline_policy import FORMAT, FORMAT_VERSION
from itpo_wrap.integrity import stamp
from itpo_wrap.networks import TanhActor, TwinQ


def save_offline_policy(
    path: str | Path,
    actor: TanhActor,
    critic: TwinQ,
    *,
    algorithm: str,
    config: dict[str, Any],
    dataset_id: str,
    env_id: str | None,
    action_low: np.ndarray,
    action_high: np.ndarray,
    updates: int,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write an offline policy checkpoint atomically (temp file + rename).

    :param path: destination file (``.pt``); parent folders are created.
    :param actor: the trained deterministic actor.
    :param critic: the trained twin critic (not its target copy).
    :param algorithm: the trainer's name, e.g. ``"rebrac"``.
    :param config: the trainer's arguments (plain Python values only).
    :param dataset_id: the dataset id or path the policy was trained on.
    :param env_id: the Gymnasium id to evaluate it in.
    :param action_low: the env's action Box lower bound.
    :param action_high: the env's action Box upper bound.
    :param updates: number of gradient updates done.
    :param info: extra plain-Python facts (final evaluation, wall time).
    :return: the written path.
    """
    if not isinstance(actor, TanhActor) or not isinstance(critic, TwinQ):
        raise TypeError(
            f"save_offline_policy expects a TanhActor and a TwinQ, got {type(actor).__name__} and "
            f"{type(critic).__name__}; SB3 models are saved with model.save()"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": algorithm,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "dataset_id": dataset_id,
        "env_id": env_id,
        "actor": {"arch": actor.arch(), "state_dict": _cpu(actor.state_dict())},
        "critic": {"arch": critic.arch(), "state_dict": _cpu(critic.state_dict())},
        "obs_normalizer": {"mean": actor.norm.obs_mean.detach().cpu().clone(),
                           "std": actor.norm.obs_std.detach().cpu().clone()},
        "action_low": [float(x) for x in np.asarray(action_low).reshape(-1)],
        "action_high": [float(x) for x in np.asarray(action_high).reshape(-1)],
        "config": dict(config),
        "updates": int(updates),
        "info": dict(info or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(stamp(payload), tmp)  # the digest load_offline_policy verifies (itpo_wrap.integrity)
    tmp.replace(path)
    return path


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}
