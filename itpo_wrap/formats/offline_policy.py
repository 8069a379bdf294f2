"""One-file checkpoints of a trained offline policy (actor + twin critic + everything to use them): the
reader and the writer.

The lab's trainers write them (through :func:`save_offline_policy`, re-exported by ``itpo_lab.offline``), and
so does ``itpo improve`` (:mod:`itpo_wrap.improve`), whose output is a policy like any other; the zoo reads
them here.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format            "itpo-offline-policy"      format_version  1
    algorithm         "td3_bc" | "rebrac" | ...  library_version / torch_version
    dataset_id        "itpo/hopper/medium-replay-v0"   env_id  "Hopper-v5"
    actor             {"arch": TanhActor.arch(), "state_dict": ...}
    critic            {"arch": TwinQ.arch(),     "state_dict": ...}
    obs_normalizer    {"mean": (obs_dim,), "std": (obs_dim,)}  (also inside both state_dicts)
    action_low/high   the env's Box bounds; the actor outputs [-1, 1] (SB3's scaled actions)
    config            the trainer's arguments, as a dict
    updates           gradient updates done;  info  free-form (final evaluation, wall time, ...)

The actor is a plain ``nn.Module`` mapping raw observations to ``[-1, 1]``; the critic is a
``TwinQ`` with SB3's critic contract ``critic(obs, scaled_action) -> (q1, q2)``. Both were trained on
actions scaled to ``[-1, 1]``, so a world model that works in env units loads the critic with the
bounds: ``CriticHead.from_twin_q(critic, meta["action_low"], meta["action_high"])`` (an identity on
MuJoCo, whose Box is ``[-1, 1]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap._version import __version__
from itpo_wrap.integrity import load_checked, stamp
from itpo_wrap.networks import TanhActor, TwinQ
from itpo_wrap.pairing import tag

FORMAT = "itpo-offline-policy"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "algorithm", "actor", "critic", "config", "env_id", "dataset_id")


def load_offline_policy(path: str | Path) -> tuple[TanhActor, TwinQ, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_offline_policy` (``weights_only=True``, CRCs and digest checked).

    :param path: the ``.pt`` file.
    :return: ``(actor, critic, meta)``; both modules on CPU in eval mode, each recording its env id, widths
        and action Box (:func:`itpo_wrap.pairing.tag`; for the critic, the Box its training actions were
        scaled to ``[-1, 1]`` with); ``meta`` holds every other field (algorithm, dataset_id, env_id, action
        bounds, config, updates, info, versions).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no offline policy checkpoint at {str(path)!r}; train one with policies/td3_bc.py "
                                "or policies/rebrac.py, or pick one with itpo_wrap.zoo.list()")
    payload = load_checked(path, "cpu", what="torch checkpoint",
                           writer="itpo_wrap.formats.offline_policy.save_offline_policy")
    missing = [k for k in _REQUIRED if not isinstance(payload, dict) or k not in payload]
    if missing or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an itpo offline policy checkpoint (missing {missing or ['format']}); "
                         "training checkpoints under run_dir/checkpoints/ are for resuming, use run_dir/policy.pt")
    if payload["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} has format_version {payload['format_version']}, newer than this library's "
                         f"{FORMAT_VERSION}; upgrade itpo-wrap")
    actor = TanhActor(**payload["actor"]["arch"])
    actor.load_state_dict(payload["actor"]["state_dict"])
    critic = TwinQ(**payload["critic"]["arch"])
    critic.load_state_dict(payload["critic"]["state_dict"])
    meta = {k: v for k, v in payload.items() if k not in ("actor", "critic", "digest")}
    meta["path"] = str(path)
    for module in (actor, critic):  # the trainers scale actions with this Box (offline/tensors.py)
        tag(module, env_id=payload["env_id"], obs_dim=actor.obs_dim, act_dim=actor.act_dim,
            action_low=payload.get("action_low"), action_high=payload.get("action_high"), source=str(path))
    return actor.eval(), critic.eval(), meta


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
