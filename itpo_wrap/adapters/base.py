"""``PolicyAdapter``: one differentiable view of any supported policy.

The adaptation loop needs four things from a policy, whatever library made it: a differentiable
forward ``obs -> action`` in the policy's own units, handles on the parameters it may change (the
live tensors, so adaptation is in place), the same functional forward for per-env stacked copies of
those parameters (vectorised envs), and the exact mapping from policy units to the env's Box that
SB3's ``predict`` applies.

The functional forwards run on a private twin of the module, never on the module itself:
``functional_call`` swaps the tensors it is given into the module's attributes for the duration of
the call, and on the user's module another thread's ``state_dict()`` (``model.save()``) would read
adapted weights mid-call (issue 21). The twin is handed every tensor it uses on each call (the adapted
copy plus the live module's other parameters and buffers), so it never goes stale. Adapters for concrete libraries build one of these (``torch.py``,
``sb3.py``); ``itpo_wrap.adapters.make_adapter`` picks the right builder.

The Box mapping lives here once, for the whole package and the lab: :func:`to_env_torch` /
:func:`to_env_numpy` (policy units to the env's Box, SB3's formula), their inverses for squashing policies
:func:`to_policy_torch` / :func:`to_policy_numpy`, :func:`box_center_half` (the affine form hot loops
fuse into one ``addcmul``), and :func:`actor_predict` (a ``[-1, 1]`` torch actor behind SB3's ``predict``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap


class PolicyAdapter:
    """A policy seen as ``module(obs) -> action`` with named, adaptable parameters.

    :param module: its ``forward(obs)`` maps raw float32 observations ``(B, obs_dim)`` to actions
        ``(B, act_dim)`` in policy units (``[-1, 1]`` when ``squashed``), differentiably. When
        ``stochastic``, ``forward(obs, deterministic=False)`` samples instead.
    :param params: the parameters adaptation changes, keyed by their name inside ``module``; the values
        are the module's own ``nn.Parameter`` objects, so writing to them adapts the policy in place.
    :param squashed: ``True`` maps actions to the Box with ``low + 0.5 * (a + 1) * (high - low)``, ``False``
        clips them to the Box (SB3's two cases).
    :param kind: a human-readable description used in messages (``"SB3 SAC policy"``).
    :param action_low: the policy's own Box lower bound if it knows one (SB3), else ``None``.
    :param action_high: the Box upper bound, or ``None``.
    :param obs_dim: the observation width if the policy declares one, else ``None``.
    :param stochastic: whether ``module.forward`` accepts ``deterministic=False``.
    :param owner: the object whose ``set_training_mode(False)`` (SB3) or ``train(False)`` sets eval mode.
    """

    def __init__(
        self,
        module: nn.Module,
        params: dict[str, nn.Parameter],
        *,
        squashed: bool,
        kind: str,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        obs_dim: int | None = None,
        stochastic: bool = False,
        owner: object | None = None,
    ) -> None:
        if not params:
            raise ValueError(f"{kind} has no parameters to adapt; ITPO changes the policy's own weights")
        self.module, self.kind, self.squashed, self.stochastic = module, kind, squashed, stochastic
        self.names: list[str] = list(params)
        self.params: list[torch.Tensor] = list(params.values())
        self.action_low = None if action_low is None else np.asarray(action_low, dtype=np.float32)
        self.action_high = None if action_high is None else np.asarray(action_high, dtype=np.float32)
        self.obs_dim = obs_dim
        # what the policy was trained for (env id, Box), as its loader recorded it (itpo_wrap.pairing)
        self.provenance: dict[str, object] = {}
        self._owner = owner if owner is not None else module
        self._twin = copy.deepcopy(module)  # what functional_call may reparametrize (see the module docstring)
        adapted = {id(p) for p in self.params}
        # the live tensors the adapted copies do not replace, by reference (the user's in-place updates show)
        self._fixed = {n: t for n, t in [*module.named_parameters(), *module.named_buffers()] if id(t) not in adapted}
        # One vmapped functional forward, built once: env i's stacked parameter slice drives env i's
        # observations, which is what "per-env functional copies" of the policy means.
        self._vmapped = vmap(self._functional)

    def __repr__(self) -> str:
        return f"PolicyAdapter(kind={self.kind!r}, n_params={len(self.params)}, squashed={self.squashed})"

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy's deterministic action in policy units, with its current (live) parameters."""
        return self.module(obs)

    def batched_forward(self, stacked: Sequence[torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions of ``N`` parameter copies at once.

        :param stacked: one tensor per adaptable parameter, shaped ``(N, *param.shape)``.
        :param obs: ``(N, R, obs_dim)``; row block ``i`` is evaluated with parameter copy ``i``.
        :return: ``(N, R, act_dim)`` actions in policy units.
        """
        return self._vmapped(tuple(stacked), obs)

    def sample(self, obs: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """A stochastic action (SB3 ``deterministic=False``); deterministic policies return their action.

        :param obs: ``(B, obs_dim)`` observations.
        :param params: one parameter copy (unstacked) to use instead of the live parameters.
        """
        kwargs = {"deterministic": False} if self.stochastic else {}
        if params is None:
            return self.module(obs, **kwargs)
        return functional_call(self._twin, self._tensors(params), (obs,), kwargs)

    def set_eval(self) -> None:
        """Put the policy in eval mode, as SB3's ``predict`` does before acting."""
        set_mode = getattr(self._owner, "set_training_mode", None)
        if callable(set_mode):
            set_mode(False)
        else:
            self.module.train(False)
        for live, twin in zip(self.module.modules(), self._twin.modules(), strict=True):
            twin.training = live.training

    def _tensors(self, params: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**self._fixed, **dict(zip(self.names, params, strict=True))}

    def _functional(self, params: tuple[torch.Tensor, ...], obs: torch.Tensor) -> torch.Tensor:
        return functional_call(self._twin, self._tensors(params), (obs,))


def to_env_torch(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor, squashed: bool) -> torch.Tensor:
    """Policy units to env (Box) units in torch, differentiably: what the world model must see.

    Same formula and operation order as SB3's ``unscale_action`` (squashing policies) or its clip.
    """
    if squashed:
        return low + 0.5 * (a + 1.0) * (high - low)
    return torch.clamp(a, low, high)


def to_env_numpy(a: np.ndarray, low: np.ndarray, high: np.ndarray, squashed: bool) -> np.ndarray:
    """Policy units to env units in numpy, bit for bit what SB3's ``BasePolicy.predict`` returns."""
    if squashed:
        return low + (0.5 * (a + 1.0) * (high - low))
    return np.clip(a, low, high)


ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def box_center_half(low: ArrayT, high: ArrayT) -> tuple[ArrayT, ArrayT]:
    """The Box's centre ``(high + low) / 2`` and half-width ``(high - low) / 2`` (numpy or torch).

    ``center + half * a`` maps ``[-1, 1]`` onto the Box in one fused op (``torch.addcmul``), which the
    imagined rollouts use; it equals :func:`to_env_torch` up to rounding, not bit for bit.
    """
    return (high + low) / 2, (high - low) / 2


def to_policy_torch(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Env (Box) units to a squashing policy's ``[-1, 1]`` in torch, clamped to the range: the inverse of
    :func:`to_env_torch` with ``squashed=True`` (e.g. dataset actions as a behaviour-cloning target).

    Computed as ``(a - center) / half`` (:func:`box_center_half`), so the Box's centre maps to 0 exactly.
    """
    center, half = box_center_half(low, high)
    return ((a - center) / half).clamp(-1.0, 1.0)


def to_policy_numpy(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Env (Box) units to a squashing policy's ``[-1, 1]`` in numpy, clipped to the range: the inverse of
    :func:`to_env_numpy` with ``squashed=True`` (the inverse of SB3's ``unscale_action``, its ``scale_action``).

    Computed as SB3's ``scale_action`` does, ``2 (a - low) / (high - low) - 1``: the formula the lab's
    trainers scale their datasets with, kept so retrained zoo policies see the same bits. It can differ from
    :func:`to_policy_torch` in the last bit. The dtype follows numpy's rules (float32 in, float32 bounds:
    float32 out).
    """
    return np.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0)


def actor_predict(actor: Callable[[torch.Tensor], torch.Tensor], low: np.ndarray, high: np.ndarray,
                  device: torch.device | str = "cpu") -> Callable[..., tuple[np.ndarray, Any]]:
    """SB3's ``predict`` contract for a deterministic torch actor with outputs in ``[-1, 1]``.

    ``predict(observation, state=None, episode_start=None, deterministic=True) -> (actions, state)``: the
    observations as a float32 tensor on ``device``, the actor's output under ``torch.no_grad()`` as float32
    numpy, mapped to the Box by :func:`to_env_numpy` (as SB3's own ``predict`` maps a squashing policy's);
    ``state`` is passed through. The actor is called as it is (put a module in eval mode first).

    :param actor: raw observations ``(B, obs_dim)`` -> actions ``(B, act_dim)`` in ``[-1, 1]``.
    :param low: the Box's lower bound (its dtype sets the actions', float32 for MuJoCo's Boxes).
    :param high: the Box's upper bound.
    :param device: where the actor's parameters live.
    :return: the ``predict`` function (what :func:`itpo_wrap.rollout.run_episode` calls).
    """

    def predict(observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=device)
            action = np.asarray(actor(obs).cpu().numpy(), dtype=np.float32)
        return to_env_numpy(action, low, high, squashed=True), state

    return predict
