"""The one validation gate between user inputs and the adaptation loop.

Checks a policy / world-model pair once at wrapping time, and each ``predict`` input (SB3's
observation and ``episode_start`` conventions), with errors that name the bad value and the fix.
Everything downstream (``itpo_wrap.adapt``) trusts what passes here.
"""

from __future__ import annotations

import numpy as np
import torch

from itpo_wrap.adapters.base import PolicyAdapter
from itpo_wrap.config import AdaptConfig
from itpo_wrap.utils import get_device
from itpo_wrap.world_model.protocol import WorldModelLike


def check_world_model(
    adapter: PolicyAdapter, wm: object, cfg: AdaptConfig
) -> tuple[torch.device, torch.Tensor, torch.Tensor]:
    """Validate the pair; return the device and the world model's Box bounds as float32 tensors.

    The device is the policy's own (adaptation is in place, so the policy cannot move); ``"auto"``
    resolves to it and an explicit ``cfg.device`` must agree.
    """
    if not isinstance(wm, WorldModelLike):
        missing = [n for n in ("obs_dim", "act_dim", "action_low", "action_high", "draw_noise", "next", "reward",
                               "terminated", "value") if not hasattr(wm, n)]
        raise TypeError(f"{type(wm).__name__} is not a WorldModelLike: missing {missing} (see itpo_wrap.world_model.protocol)")
    device = adapter.params[0].device
    if cfg.device != "auto" and get_device(cfg.device) != device:
        raise ValueError(f"config.device={cfg.device!r} but the policy lives on {device}; move the policy "
                         f"(e.g. model.policy.to('{cfg.device}')) or use device='auto'")
    low = torch.as_tensor(wm.action_low).to(device=device, dtype=torch.float32).reshape(-1)
    high = torch.as_tensor(wm.action_high).to(device=device, dtype=torch.float32).reshape(-1)
    if low.numel() != wm.act_dim or high.numel() != wm.act_dim or not bool(torch.all(high > low)):
        raise ValueError(f"world model action bounds low={low.tolist()} high={high.tolist()} must be {wm.act_dim} values "
                         "each with high > low")
    if adapter.obs_dim is not None and adapter.obs_dim != wm.obs_dim:
        raise ValueError(f"{adapter.kind} observes {adapter.obs_dim} dims but the world model {wm.obs_dim}; "
                         "pair the policy with a world model trained on the same env")
    if adapter.action_low is not None and adapter.action_high is not None:
        same = np.allclose(adapter.action_low, low.cpu().numpy()) and np.allclose(adapter.action_high, high.cpu().numpy())
        if not same:
            raise ValueError(f"the policy's Box [{adapter.action_low}, {adapter.action_high}] differs from the world "
                             f"model's [{low.tolist()}, {high.tolist()}]; both must use the env's action space")
    adapter.set_eval()
    with torch.no_grad():
        out = adapter.forward(torch.zeros(1, wm.obs_dim, device=device))
    if tuple(out.shape) != (1, wm.act_dim):
        raise ValueError(f"{adapter.kind} maps a (1, {wm.obs_dim}) observation to shape {tuple(out.shape)}, but the "
                         f"world model expects actions of shape (1, {wm.act_dim})")
    if cfg.gate == "disagreement" and not callable(getattr(wm, "disagreement", None)):
        raise ValueError(f"gate='disagreement' needs a world model with disagreement(s, a) -> (B,); "
                         f"{type(wm).__name__} has none (use an ensemble, or gate='held_out')")
    return device, low, high


def noise_batch_dim(wm: WorldModelLike, horizon: int, device: torch.device) -> int:
    """Which dim of ``wm.draw_noise(...)`` indexes rollouts (the protocol fixes only dim 0 = horizon).

    Found by drawing banks for 1 and 2 rollouts from a throwaway generator; needed to concatenate the
    per-env banks of a vectorised call in env order.
    """
    g = torch.Generator(device=device).manual_seed(0)
    one, two = wm.draw_noise(1, horizon, g), wm.draw_noise(2, horizon, g)
    if one.shape[0] != horizon:
        raise ValueError(f"draw_noise(1, horizon={horizon}) has shape {tuple(one.shape)}; its first dim must be the horizon")
    dims = [d for d in range(1, one.dim()) if one.shape[d] != two.shape[d]]
    if len(dims) != 1 or two.shape[dims[0]] != 2 * one.shape[dims[0]]:
        raise ValueError(f"draw_noise shapes {tuple(one.shape)} (1 rollout) and {tuple(two.shape)} (2 rollouts) "
                         "do not show a single batch dim; the noise bank needs one dim that scales with the batch")
    return dims[0]


def observation_tensor(observation: object, obs_dim: int, device: torch.device) -> tuple[torch.Tensor, bool]:
    """SB3's observation convention: ``(obs_dim,)`` or ``(n_envs, obs_dim)``, any float dtype, as a fresh
    float32 tensor (a copy, so inference-mode tensors and caller arrays are never touched).

    :return: ``(n_envs, obs_dim)`` tensor and whether the input was batched.
    """
    if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
        raise ValueError("predict got an (obs, info) tuple: you are mixing the Gym API (obs, info = env.reset()) "
                         "with the VecEnv API (obs = vec_env.reset()); pass the observation only")
    if isinstance(observation, dict):
        raise TypeError("Dict observations are not supported; flatten them (gymnasium.wrappers.FlattenObservation)")
    if isinstance(observation, torch.Tensor):
        obs = observation.detach().to(device=device, dtype=torch.float32).clone()
    else:
        obs = torch.tensor(np.asarray(observation, dtype=np.float64), dtype=torch.float32, device=device)
    if obs.dim() not in (1, 2) or obs.shape[-1] != obs_dim:
        raise ValueError(f"observation has shape {tuple(obs.shape)}; expected ({obs_dim},) or (n_envs, {obs_dim})")
    vectorized = obs.dim() == 2
    obs = obs if vectorized else obs.unsqueeze(0)
    bad = ~torch.isfinite(obs).all(1)
    if bool(bad.any()):
        raise ValueError(f"observation of env(s) {bad.nonzero().flatten().tolist()} contains NaN or inf (or values "
                         "beyond float32); check the env, its wrappers and any VecNormalize statistics")
    return obs, vectorized


def episode_starts(episode_start: object, n_envs: int) -> np.ndarray | None:
    """A private copy of SB3's ``episode_start`` as ``(n_envs,)`` bools (SB3 mutates its array in place)."""
    if episode_start is None:
        return None
    starts = np.array(episode_start, dtype=bool).reshape(-1)
    if starts.shape != (n_envs,):
        raise ValueError(f"episode_start has {starts.size} entries for {n_envs} envs; pass one bool per env")
    return starts
