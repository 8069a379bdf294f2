"""The structural interface the adaptation loop needs from a world model.

``itpo_wrap.adapt`` and ``itpo_wrap.wrapper`` depend only on this Protocol, never on a concrete
class, so a user can bring their own differentiable model (and tests can use closed-form toys).

Units: every method takes **raw env observations** and **env-space actions** (the Box units the
env's ``step`` receives) as float32 tensors with a leading batch dimension; normalization is the
model's own business. Methods are named after the paper (METHOD.md section 3) so the planning loop
reads like the algorithm: ``next`` is ``f_theta``, ``reward`` is ``r_xi``, ``value`` is
``min_i Q_phi,i``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class WorldModelLike(Protocol):
    """What the adaptation loop calls. All tensors are float32 on ``device``.

    - ``obs_dim``, ``act_dim``: ints.
    - ``action_low``, ``action_high``: ``(act_dim,)`` tensors, the env's Box bounds.
    - ``draw_noise(batch, horizon, generator)``: a noise bank, a tensor whose first dim is the
      horizon; ``noise[j]`` is what ``next`` consumes for step ``j`` of ``batch`` rollouts.
    - ``next(s, a, noise)``: ``(B, obs_dim)`` next state; with ``noise`` given it is a deterministic,
      differentiable function of ``(s, a)`` (METHOD.md section 2); ``noise=None`` draws fresh noise.
    - ``reward(s, a)``: ``(B,)`` predicted reward in env units.
    - ``terminated(s)``: ``(B,)`` bool, whether state ``s`` (a next state) ends the episode.
    - ``value(s, a)``: ``(B,)`` the terminal critic, ``min_i Q_i(s, a)`` (twin Q, METHOD.md section 3).
    """

    obs_dim: int
    act_dim: int

    @property
    def action_low(self) -> torch.Tensor: ...

    @property
    def action_high(self) -> torch.Tensor: ...

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor: ...

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor: ...

    def terminated(self, s: torch.Tensor) -> torch.Tensor: ...

    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor: ...
