"""Reading a saved ``WorldModel`` bundle back: ``weights_only`` loading and module rebuilding.

A bundle holds only tensors and plain Python values (configs as dicts, ``arch()`` dicts), so
``torch.load(weights_only=True)`` can read it: no pickled classes, no code runs on load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead

FORMAT_VERSION = 1
_REQUIRED = ("format", "version", "env_id", "obs_dim", "act_dim", "action_low", "action_high", "dynamics",
             "reward", "termination", "normalizers")


def read_payload(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check the raw dict of a bundle file.

    :param path: the file.
    :param map_location: device for the tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no world model bundle at {os.fspath(path)!r}; train one with "
                                "`itpo train-world-model --dataset ID --out PATH`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"could not read {os.fspath(path)!r} as a world model bundle ({type(err).__name__}: "
                         f"{err}); it is corrupt or was not written by WorldModel.save") from err
    if not isinstance(payload, dict) or payload.get("library") != "itpo-wrap":
        raise ValueError(f"{os.fspath(path)!r} is not an itpo-wrap world model bundle (no 'library' marker); "
                         "pass a file written by WorldModel.save")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"world model bundle {os.fspath(path)!r} lacks {missing}; it is corrupt or truncated")
    if payload["format"] != FORMAT_VERSION:
        raise ValueError(f"bundle {os.fspath(path)!r} has format {payload['format']} but this itpo-wrap reads "
                         f"format {FORMAT_VERSION}; load it with the version that wrote it ({payload['version']})")
    return payload


def _load(module: nn.Module, state: dict[str, Any], what: str) -> nn.Module:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the bundle's {what} weights do not fit its stored architecture: {err}") from err
    return module


def rebuild(cls: type, payload: dict[str, Any], dynamics_classes: dict[str, type],
            config_from_dict: Callable[[str, dict[str, Any]], Any]) -> Any:
    """Construct a ``WorldModel`` (``cls``) from a checked payload."""
    obs_dim, act_dim = int(payload["obs_dim"]), int(payload["act_dim"])

    def dyn(entry: dict[str, Any] | None) -> Any:
        if entry is None:
            return None
        kind = entry["kind"]
        if kind not in dynamics_classes:
            raise ValueError(f"bundle dynamics kind {kind!r} is unknown; known: {sorted(dynamics_classes)}")
        module = dynamics_classes[kind](obs_dim, act_dim, config_from_dict(kind, entry["config"]))
        return _load(module, entry["state_dict"], f"{kind} dynamics")

    def head(entry: dict[str, Any] | None, head_cls: type, what: str) -> Any:
        if entry is None:
            return None
        return _load(head_cls(**entry["arch"]), entry["state_dict"], what)

    norms = {k: StateNormalizer.from_state_dict(v) for k, v in payload["normalizers"].items()}
    return cls(
        dynamics=dyn(payload["dynamics"]), reward=head(payload["reward"], RewardHead, "reward head"),
        termination=head(payload["termination"], TerminationHead, "termination head"),
        critic=head(payload.get("critic"), CriticHead, "critic"),
        obs_normalizer=norms["obs"], act_normalizer=norms["act"], delta_normalizer=norms["delta"],
        action_low=payload["action_low"].cpu().numpy(), action_high=payload["action_high"].cpu().numpy(),
        env_id=payload["env_id"], baseline=dyn(payload.get("baseline")), info=payload.get("info") or {},
    )
