"""Writing SB3 SAC / TD3 / DDPG models in the weights-only format that :mod:`itpo_wrap.formats.sb3_weights`
reads (the layout is described there): how the lab turns SB3 zips it trusts into zoo files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap.formats.sb3_weights import ALLOWED_CLASSES, FORMAT, FORMAT_VERSION
from itpo_wrap.integrity import stamp


def save_sb3_weights(model: Any, path: str | Path, env_id: str | None = None) -> Path:
    """Write an SB3 SAC/TD3/DDPG model as a weights-only file (atomically).

    :param model: the loaded model (``MlpPolicy``, Box spaces).
    :param path: destination ``.pt``.
    :param env_id: the Gymnasium id it acts in (SB3 does not record it), kept for pairing checks.
    :return: the written path.
    """
    algorithm = _algorithm_of(model)
    arch = {"algorithm": algorithm, "policy_kwargs": _encode(dict(model.policy_kwargs), "policy_kwargs"),
            "observation_space": _box_json(model.observation_space, "observation_space"),
            "action_space": _box_json(model.action_space, "action_space"),
            "use_sde": bool(getattr(model, "use_sde", False)), "env_id": env_id, "sb3_version": _sb3_version(),
            "num_timesteps": int(getattr(model, "num_timesteps", 0))}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": json.dumps(arch, sort_keys=True),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(stamp(payload), tmp)
    tmp.replace(path)
    return path


def convert_sb3_zip(src: str | Path, dest: str | Path, algorithm: str = "auto", env_id: str | None = None) -> Path:
    """Turn an SB3 ``.zip`` you trust into a weights-only file (loading the zip runs its pickle, once, here).

    :param src: the ``.zip`` written by ``model.save()``.
    :param dest: the ``.pt`` to write.
    :param algorithm: ``"sac"``, ``"td3"`` or ``"auto"``.
    :param env_id: the Gymnasium id it acts in.
    :return: ``dest``.
    """
    from itpo_wrap.formats.sb3 import load_sb3_model

    return save_sb3_weights(load_sb3_model(src, algorithm), dest, env_id=env_id)


def _algorithm_of(model: Any) -> str:
    from stable_baselines3 import DDPG, SAC, TD3
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    for name, cls, policy_cls in (("ddpg", DDPG, TD3Policy), ("sac", SAC, SACPolicy), ("td3", TD3, TD3Policy)):
        if isinstance(model, cls):
            if type(model.policy) is not policy_cls:
                raise ValueError(f"{type(model.policy).__name__} is a custom policy class; only SB3's MlpPolicy can be "
                                 "stored without a pickle (keep the zip and load it as trusted code)")
            return name
    raise TypeError(f"expected an SB3 SAC, TD3 or DDPG model, got {type(model).__name__}")


def _encode(value: Any, where: str) -> Any:
    """policy_kwargs as JSON: classes by dotted name (allow-listed), containers recursively."""
    if isinstance(value, type):
        from stable_baselines3.common.torch_layers import FlattenExtractor

        if value is FlattenExtractor:
            return {"class": "FlattenExtractor"}
        names = [name for name, cls in ALLOWED_CLASSES.items() if cls is value]
        if not names:
            raise ValueError(f"{where} holds the class {value.__module__}.{value.__qualname__}, which a weights-only "
                             f"file cannot name; only {sorted(ALLOWED_CLASSES)} and FlattenExtractor (keep the zip and load "
                             "it as trusted code)")
        return {"class": names[0]}
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{where} holds a {type(value).__name__}, which a weights-only file cannot store")


def _box_json(space: Any, where: str) -> dict[str, Any]:
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        raise ValueError(f"{where} is {space}; only Box spaces can be stored")

    def nums(a: np.ndarray) -> list[Any]:  # strict JSON has no inf: write it as a string
        return [float(x) if math.isfinite(x) else str(float(x)) for x in np.asarray(a, np.float64).reshape(-1)]

    return {"shape": list(space.shape), "dtype": str(space.dtype), "low": nums(space.low), "high": nums(space.high)}


def _sb3_version() -> str:
    import stable_baselines3

    return str(stable_baselines3.__version__)
