"""What each part was made for, and the one comparison every pairing goes through.

A policy, its critic and a world model only work together when they were made for the same env:
same env id, observation and action widths, action Box, and (for a zoo slot) the dynamics kind the
slot names. Shapes alone cannot tell Walker2d from HalfCheetah (both 17 x 6), so the loaders record
these facts on what they return (:func:`tag`, an ``itpo_provenance`` dict attribute that is never
saved into a checkpoint), world models state theirs themselves (:func:`world_model_facts`), and
the wrapper, the zoo and ``WorldModel.load`` hand both sides to :func:`compare`, which refuses the
first fact the two sides know and disagree on, naming both sides and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PROVENANCE_ATTR = "itpo_provenance"

# (fact, words for it); bounds are compared as one fact, the action Box
_FACTS = (("env_id", "env"), ("kind", "dynamics kind"), ("obs_dim", "observation width"),
          ("act_dim", "action width"))


def tag(obj: object, *, env_id: str | None = None, obs_dim: int | None = None, act_dim: int | None = None,
        action_low: Any = None, action_high: Any = None, source: str | None = None) -> None:
    """Record on ``obj`` (a module or SB3 policy a loader returns) the facts it was made with.

    Facts left ``None`` stay unknown and are never compared.

    :param obj: the loaded object; ``tag`` sets its ``itpo_provenance`` attribute.
    :param env_id: the Gymnasium id it was trained on.
    :param obs_dim: observation width.
    :param act_dim: action width.
    :param action_low: the action Box lower bound it was trained with.
    :param action_high: the action Box upper bound.
    :param source: where it was loaded from (a file), named in messages.
    """
    facts: dict[str, Any] = {"env_id": env_id or None, "obs_dim": obs_dim, "act_dim": act_dim, "source": source}
    if action_low is not None and action_high is not None:
        facts["action_low"], facts["action_high"] = _floats(action_low), _floats(action_high)
    setattr(obj, PROVENANCE_ATTR, {k: v for k, v in facts.items() if v is not None})


def provenance(obj: object) -> dict[str, Any]:
    """The facts recorded on ``obj`` by :func:`tag` (or on its ``.policy``, for an SB3 algorithm); ``{}`` if none.

    :param obj: a policy, actor, critic or SB3 model.
    """
    for candidate in (obj, getattr(obj, "policy", None)):
        facts = getattr(candidate, PROVENANCE_ATTR, None)
        if isinstance(facts, dict):
            return dict(facts)
    return {}


def world_model_facts(wm: object) -> dict[str, Any]:
    """What a world model states about itself: widths, Box, and env id and dynamics kind when it has them.

    :param wm: a ``WorldModel`` or any ``WorldModelLike``.
    """
    facts: dict[str, Any] = {**provenance(wm), "obs_dim": int(wm.obs_dim), "act_dim": int(wm.act_dim),  # type: ignore[attr-defined]
                             "action_low": _floats(wm.action_low), "action_high": _floats(wm.action_high)}  # type: ignore[attr-defined]
    env_id = getattr(wm, "env_id", None)
    if isinstance(env_id, str) and env_id:
        facts["env_id"] = env_id
    kind = getattr(getattr(wm, "dynamics", None), "kind", None)
    if isinstance(kind, str):
        facts["kind"] = kind
    return facts


def payload_facts(payload: dict[str, Any]) -> dict[str, Any]:
    """The facts of a saved world model bundle's payload (as :func:`world_model_facts` gives for the module).

    :param payload: the dict read from the bundle file.
    """
    facts: dict[str, Any] = {"obs_dim": payload.get("obs_dim"), "act_dim": payload.get("act_dim"),
                             "env_id": payload.get("env_id") or None}
    dynamics = payload.get("dynamics")
    if isinstance(dynamics, dict) and isinstance(dynamics.get("kind"), str):
        facts["kind"] = dynamics["kind"]
    if payload.get("action_low") is not None and payload.get("action_high") is not None:
        facts["action_low"], facts["action_high"] = _floats(payload["action_low"]), _floats(payload["action_high"])
    return {k: v for k, v in facts.items() if v is not None}


def compare(left: str, left_facts: dict[str, Any], right: str, right_facts: dict[str, Any], fix: str) -> None:
    """Refuse the first fact both sides know and disagree on (env id, dynamics kind, widths, action Box).

    :param left: the first side in words (``"the policy"``); its ``source`` fact, if any, is added.
    :param left_facts: its facts (:func:`provenance`, :func:`world_model_facts`, :func:`payload_facts`).
    :param right: the second side in words.
    :param right_facts: its facts.
    :param fix: what to do instead, ending the message.
    :raises ValueError: ``"<left> has env 'A' but <right> has 'B'; <fix>"``.
    """
    a, b = _named(left, left_facts), _named(right, right_facts)
    for key, words in _FACTS:
        x, y = left_facts.get(key), right_facts.get(key)
        if x is not None and y is not None and x != y:
            raise ValueError(f"{a} has {words} {x!r} but {b} has {y!r}; {fix}")
    keys = ("action_low", "action_high")
    if all(k in f and f[k] is not None for k in keys for f in (left_facts, right_facts)):
        lo_a, hi_a, lo_b, hi_b = (list(f[k]) for f in (left_facts, right_facts) for k in keys)
        same = len(lo_a) == len(lo_b) and np.allclose(lo_a, lo_b) and np.allclose(hi_a, hi_b)
        if not same:
            raise ValueError(f"{a} has the action Box [{lo_a}, {hi_a}] but {b} has [{lo_b}, {hi_b}]; the two would "
                             f"read actions in different units; {fix}")


def _named(words: str, facts: dict[str, Any]) -> str:
    return f"{words} ({facts['source']})" if facts.get("source") else words


def _floats(x: Any) -> list[float]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]
