"""Reading a saved ``WorldModel`` bundle back: ``weights_only`` loading and module rebuilding.

A bundle holds only tensors and plain Python values (configs as dicts, ``arch()`` dicts), so
``torch.load(weights_only=True)`` can read it: no pickled classes, no code runs on load. Before
that read the file's CRCs are checked, after it the digest ``WorldModel.save`` stamps
(:mod:`itpo_wrap.integrity`); then the facts the caller expects (env, widths, Box, dynamics kind)
are compared with the bundle's (:func:`check_expected`) before any module is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.integrity import load_checked
from itpo_wrap.pairing import payload_facts
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
    payload = load_checked(path, map_location, what="world model bundle", writer="WorldModel.save")
    if not isinstance(payload, dict) or payload.get("library") != "itpo-wrap":
        raise ValueError(f"{os.fspath(path)!r} is not an itpo-wrap world model bundle (no 'library' marker); "
                         "pass a file written by WorldModel.save")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"world model bundle {os.fspath(path)!r} lacks {missing}; it is corrupt or truncated")
    if payload["format"] != FORMAT_VERSION:
        raise ValueError(f"bundle {os.fspath(path)!r} has format {payload['format']} but this itpo-wrap reads "
                         f"format {FORMAT_VERSION}; load it with the version that wrote it ({payload['version']})")
    dynamics = payload["dynamics"]
    shapes = {"obs_dim": isinstance(payload["obs_dim"], int), "act_dim": isinstance(payload["act_dim"], int),
              "action_low": isinstance(payload["action_low"], torch.Tensor),
              "action_high": isinstance(payload["action_high"], torch.Tensor),
              "env_id": payload["env_id"] is None or isinstance(payload["env_id"], str),
              "dynamics": isinstance(dynamics, dict) and isinstance(dynamics.get("kind"), str)}
    malformed = [k for k, ok in shapes.items() if not ok]
    if malformed:  # the header every check reads: refuse it here, not with a TypeError from deep inside
        raise ValueError(f"world model bundle {os.fspath(path)!r} has malformed fields {malformed}; it was edited or "
                         "is corrupt: restore it from its source or re-save it")
    return payload


def _load(module: nn.Module, state: dict[str, Any], what: str) -> nn.Module:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the bundle's {what} weights do not fit its stored architecture: {err}") from err
    return module


def check_expected(path: str | os.PathLike[str], payload: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a bundle whose env id, widths, dynamics kind, action Box or writer version differ from what the
    caller expects, naming both values and the fix; expectations left ``None`` are not checked.

    :param path: the bundle file (named in the message).
    :param payload: its checked payload (:func:`read_payload`).
    :param expected: ``env_id``, ``obs_dim``, ``act_dim``, ``kind``, ``action_low``, ``action_high``, ``version``.
    """
    facts = {**payload_facts(payload), "version": payload.get("version")}
    same_env = "load the bundle trained for this env"
    checks = (("env_id", "env_id", same_env), ("obs_dim", "obs_dim", same_env), ("act_dim", "act_dim", same_env),
              ("kind", "dynamics kind", "this file holds another kind of dynamics: store each kind under its own "
               "name (itpo_lab.zoo_write.add_world_model(entry, kind, file) checks it) or load it as that kind"),
              ("version", "itpo-wrap version", "re-save it with this version or pass allow_version_mismatch=True"))
    for key, words, fix in checks:
        ours, theirs = expected.get(key), facts.get(key)
        if ours is not None and ours != theirs:
            raise ValueError(f"world model {os.fspath(path)} has {words}={theirs!r} but {ours!r} was expected; {fix}")
    low, high = expected.get("action_low"), expected.get("action_high")
    if low is not None and high is not None:
        ours_box = (np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1))
        theirs_box = (np.asarray(facts["action_low"]), np.asarray(facts["action_high"]))
        if ours_box[0].shape != theirs_box[0].shape or not (np.allclose(ours_box[0], theirs_box[0])
                                                           and np.allclose(ours_box[1], theirs_box[1])):
            raise ValueError(f"world model {os.fspath(path)} has the action Box [{theirs_box[0].tolist()}, "
                             f"{theirs_box[1].tolist()}] but [{ours_box[0].tolist()}, {ours_box[1].tolist()}] was "
                             f"expected: it would read actions in other units; {same_env}")


def rebuild(cls: type, payload: dict[str, Any], get_kind: Callable[[str], Any],
            path: str | os.PathLike[str] = "") -> Any:
    """Construct a ``WorldModel`` (``cls``) from a checked payload; a payload whose parts do not fit together
    (edited or damaged) is a ``ValueError`` naming ``path`` and the cause, never a bare ``TypeError``.

    :param get_kind: kind name -> its registry record (:func:`itpo_wrap.world_model.kinds.get_kind`).
    """
    try:
        return _rebuild(cls, payload, get_kind)
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError, IndexError) as err:
        raise ValueError(f"world model bundle {os.fspath(path)!r} is malformed: {err}") from err


def _rebuild(cls: type, payload: dict[str, Any], get_kind: Callable[[str], Any]) -> Any:
    obs_dim, act_dim = int(payload["obs_dim"]), int(payload["act_dim"])

    def dyn(entry: dict[str, Any] | None) -> Any:
        if entry is None:
            return None
        kind = get_kind(entry["kind"])  # an unknown kind: a ValueError naming the known ones
        module = kind.build(obs_dim, act_dim, kind.config_from_dict(entry["config"]))
        return _load(module, entry["state_dict"], f"{kind.name} dynamics")

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
