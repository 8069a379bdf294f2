"""The reality check: how wrong the world model was about the transition the env just made (issue 20).

Every other safety part judges an update by the world model itself (the paired gate compares imagined
returns; the drift bound only limits how far the parameters move). None of them notices when the
adapted policy has steered the env into states the model does not know, where its gradient points
anywhere. The env tells us: after each executed action we see the real next state, so we can score the
model's one-step prediction of it, in the same units as its held-out accuracy (RMS over dimensions of
the error in per-dimension state stds, ``itpo_wrap.world_model.trust``). On Walker2d medium (tuning
seeds, ``benchmarks/episode_trace.py``) the wrapped episodes that fell had a median error of 0.29-0.31
on their first 100 steps against 0.01-0.06 for those that did not (the base policy: 0.07-0.14), with
executed actions three times further from the base policy's: the optimiser and the model's errors fed
each other. ``AdaptConfig.max_model_error`` acts on it: an env whose last real transition the model
missed by more than the limit executes the base policy's action, which brings it back to where the
data was, and adapts again once the model is right again.
"""

from __future__ import annotations

import numpy as np
import torch

from itpo_wrap.world_model.protocol import WorldModelLike


class RealityCheck:
    """Per env, the last real observation and executed action, and the model's error on what followed.

    The prediction uses the model's zero noise (the mode of its standard-normal noise), so it is
    deterministic and draws nothing from the adaptation's noise generators: turning the check on does not
    change which noise the ascent sees.

    :param world_model: the wrapper's world model; it needs ``obs_std`` (the state scale of its held-out
        accuracy), which :class:`~itpo_wrap.world_model.WorldModel` has.
    :param limit: largest error (state-std units) at which an env still adapts.
    """

    def __init__(self, world_model: WorldModelLike, limit: float) -> None:
        scale = getattr(world_model, "obs_std", None)
        if not isinstance(scale, torch.Tensor) or scale.shape != (world_model.obs_dim,):
            raise ValueError("AdaptConfig.max_model_error needs the world model's per-dimension state scale "
                             f"`obs_std` of shape ({world_model.obs_dim},) (itpo_wrap's WorldModel has it); give "
                             "your model that attribute or set max_model_error=None")
        self.world_model, self.limit = world_model, float(limit)
        self._scale = scale.detach()
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None
        self._valid: np.ndarray | None = None
        self._zeros: tuple[int, torch.Tensor] | None = None

    def forget(self, rows: np.ndarray | None = None) -> None:
        """Drop the previous transition of ``rows`` (all envs when ``None``): a new episode, or a new env count."""
        if rows is None or self._valid is None:
            self._prev, self._valid = None, None
        else:
            self._valid[rows] = False

    def errors(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the model's error on each env's last transition, ending at ``obs``; NaN where there is none."""
        n = obs.shape[0]
        out = torch.full((n,), float("nan"), dtype=obs.dtype, device=obs.device)
        if self._prev is None or self._valid is None or self._prev[0].shape[0] != n or not self._valid.any():
            return out
        s, a = self._prev
        with torch.no_grad():
            noise = self._zero_noise(n)
            pred = self.world_model.next(s, a, noise)
            err = (((pred - obs) / self._scale) ** 2).mean(1).sqrt()
            err = torch.nan_to_num(err, nan=float("inf"))  # NaN marks "no transition"; a failed prediction is inf
        keep = torch.as_tensor(self._valid, device=obs.device)
        return torch.where(keep, err.to(out.dtype), out)

    def _zero_noise(self, n: int) -> torch.Tensor:
        """The model's zero noise for ``n`` rows, built once per ``n``: drawing a bank each call only to zero it
        cost random numbers on every ``predict`` and moved the global generator under stochastic sampling."""
        if self._zeros is None or self._zeros[0] != n:
            gen = torch.Generator(device=self._scale.device).manual_seed(0)
            self._zeros = (n, torch.zeros_like(self.world_model.draw_noise(n, 1, gen)[0]))
        return self._zeros[1]

    def allowed(self, errors: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: may the env adapt? Not where the last error exceeds the limit (or is not finite:
        a model that cannot predict a real transition is not one to plan with)."""
        return errors.isnan() | (errors <= self.limit)

    def record(self, obs: torch.Tensor, actions: np.ndarray) -> None:
        """Remember each env's observation and the env-space action executed at it."""
        a = torch.as_tensor(actions, dtype=obs.dtype, device=obs.device).reshape(obs.shape[0], -1)
        self._prev = (obs.detach().clone(), a)
        self._valid = np.ones(obs.shape[0], dtype=bool)
