"""The one validation gate between user inputs and the adaptation loop.

Checks a policy / world-model pair once at wrapping time, and each ``predict`` input (SB3's
observation and ``episode_start`` conventions) and the base action it gets, with errors that name
the bad value and the fix, all before ``predict`` changes any state (a refused call leaves every
env's adapted parameters as they were). Everything downstream (``itpo_wrap.adapt``) trusts what
passes here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from itpo_wrap.adapters.base import PolicyAdapter
from itpo_wrap.config import AdaptConfig
from itpo_wrap.pairing import compare, world_model_facts
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
    _refuse_inference_tensors(adapter.module, "policy")
    if isinstance(wm, torch.nn.Module):
        _refuse_inference_tensors(wm, "world model")
    # env ids first: Walker2d and HalfCheetah share every width, and an env id names the real cause
    compare("the policy", adapter.provenance, "the world model", world_model_facts(wm),
            "pair the policy with a world model trained on the same env (zoo.load(name).load_world_model(kind) "
            "pairs an entry's policy with its own)")
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
    try:
        with torch.no_grad():
            out = adapter.forward(torch.zeros(1, wm.obs_dim, device=device))
    except RuntimeError as err:  # e.g. a (1, 17) observation into an actor that takes 11 dims
        raise ValueError(f"{adapter.kind} cannot act on a (1, {wm.obs_dim}) observation, the world model's width "
                         f"({err}); pair the policy with a world model trained on the same env") from err
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
    """SB3's observation convention: ``(obs_dim,)`` or ``(n_envs, obs_dim)`` with ``n_envs >= 1``, real numbers
    (any float or integer dtype; complex, bool, strings and objects are refused), as a fresh float32 tensor
    (a copy, so inference-mode tensors and caller arrays are never touched).

    :param observation: what ``predict`` got.
    :param obs_dim: the world model's observation width.
    :param device: where the tensor goes.
    :return: ``(n_envs, obs_dim)`` tensor and whether the input was batched.
    """
    if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
        raise ValueError("predict got an (obs, info) tuple: you are mixing the Gym API (obs, info = env.reset()) "
                         "with the VecEnv API (obs = vec_env.reset()); pass the observation only")
    if isinstance(observation, dict):
        raise TypeError("Dict observations are not supported; flatten them (gymnasium.wrappers.FlattenObservation)")
    if isinstance(observation, torch.Tensor):
        if observation.is_complex() or observation.dtype == torch.bool:  # a cast would drop or invent values
            raise TypeError(f"observation has dtype {observation.dtype}; pass real numbers (a float or integer tensor)")
        obs = observation.detach().to(device=device, dtype=torch.float32).clone()
    else:
        try:
            array = np.asarray(observation)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"observation is not a rectangular array ({err}); pass ({obs_dim},) or "
                             f"(n_envs, {obs_dim}) numbers") from None
        if array.dtype.kind not in "fiu":  # complex would lose its imaginary part in the cast, silently
            raise TypeError(f"observation has dtype {array.dtype} ({_short(observation)}); pass real numbers "
                            "(a float or integer array), as the env's observation space gives")
        obs = torch.tensor(array.astype(np.float64), dtype=torch.float32, device=device)
    if obs.dim() not in (1, 2) or obs.shape[-1] != obs_dim:
        raise ValueError(f"observation has shape {tuple(obs.shape)}; expected ({obs_dim},) or (n_envs, {obs_dim})")
    if obs.shape[0] == 0:
        raise ValueError(f"observation has shape {tuple(obs.shape)}: no envs; pass at least one row "
                         f"(n_envs >= 1, shape (n_envs, {obs_dim}))")
    vectorized = obs.dim() == 2
    obs = obs if vectorized else obs.unsqueeze(0)
    bad = ~torch.isfinite(obs).all(1)
    if bool(bad.any()):
        raise ValueError(f"observation of env(s) {bad.nonzero().flatten().tolist()} contains NaN or inf (or values "
                         "beyond float32); check the env, its wrappers and any VecNormalize statistics")
    return obs, vectorized


def episode_starts(episode_start: object, n_envs: int) -> np.ndarray | None:
    """A private copy of SB3's ``episode_start`` as ``(n_envs,)`` bools (SB3 mutates its array in place).

    Only bool-like values pass: booleans, or numbers that are exactly 0 or 1. Strings (``"False"`` is
    truthy), fractions and NaN are refused rather than read as resets.

    :param episode_start: ``None`` or one value per env.
    :param n_envs: the observation's env count.
    """
    if episode_start is None:
        return None
    raw = episode_start.detach().cpu().numpy() if isinstance(episode_start, torch.Tensor) else episode_start
    try:
        array = np.asarray(raw)
    except ValueError:
        array = np.asarray(raw, dtype=object)
    numeric = array.dtype.kind in "iuf" and bool(np.all((array == 0) | (array == 1)))
    if array.dtype.kind != "b" and not numeric:
        raise ValueError(f"episode_start={_short(episode_start)} is not bool-like; pass one bool per env (True where "
                         "an episode just started, as SB3's VecEnv dones), or 0/1")
    starts = np.array(array, dtype=bool).reshape(-1)
    if starts.shape != (n_envs,):
        raise ValueError(f"episode_start has {starts.size} entries for {n_envs} envs; pass one bool per env")
    return starts


def base_action(adapter: PolicyAdapter, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """The pretrained policy's action at ``obs`` (policy units), or a ``ValueError`` naming the observation
    when it is not finite: adaptation would start from it and its fallback is this action, so a NaN
    here could only be returned. Runs before ``predict`` changes any state.

    :param adapter: the policy (its module holds the pretrained weights).
    :param obs: ``(n_envs, obs_dim)`` checked observations.
    :param deterministic: the mean action, else a sample (SAC, PPO).
    """
    with torch.inference_mode():  # the module holds the pretrained weights here
        base = adapter.forward(obs) if deterministic else adapter.sample(obs)
    bad = ~torch.isfinite(base).all(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        row = obs[i].cpu().numpy()
        raise ValueError(f"the base policy's action for env {i} is not finite ({base[i].tolist()}) at the observation "
                         f"{np.array2string(row, precision=4, threshold=24)} (largest magnitude "
                         f"{float(np.abs(row).max()):.3g}): {adapter.kind} cannot map it, and ITPO refuses rather than "
                         "act on NaN. Check the env and its wrappers, or clip observations to the range the policy "
                         "was trained on")
    return base


class PredictInputs(NamedTuple):
    """What :func:`predict_inputs` passed: ``obs`` ``(n_envs, obs_dim)`` float32, whether the call was batched,
    the episode starts (``None`` or ``(n_envs,)`` bools) and the finite base action ``(n_envs, act_dim)``."""

    obs: torch.Tensor
    vectorized: bool
    starts: np.ndarray | None
    base: torch.Tensor


def predict_inputs(adapter: PolicyAdapter, observation: object, episode_start: object, deterministic: bool,
                   obs_dim: int, device: torch.device) -> PredictInputs:
    """The gate of ``predict``: observation (:func:`observation_tensor`), ``episode_start``
    (:func:`episode_starts`) and the base action (:func:`base_action`, in eval mode as SB3 acts), all
    checked before the wrapper changes any state, so a refused call leaves everything as it was.

    :param adapter: the policy.
    :param observation: what ``predict`` got.
    :param episode_start: what ``predict`` got.
    :param deterministic: what ``predict`` got.
    :param obs_dim: the world model's observation width.
    :param device: the policy's device.
    """
    obs, vectorized = observation_tensor(observation, obs_dim, device)
    starts = episode_starts(episode_start, obs.shape[0])
    adapter.set_eval()
    return PredictInputs(obs, vectorized, starts, base_action(adapter, obs, deterministic))


def _refuse_inference_tensors(module: torch.nn.Module, what: str) -> None:
    """Tensors made under ``torch.inference_mode()`` can take no part in a gradient, so adapting through them
    (or restoring them) fails mid-call; refuse them at wrapping time instead."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_inference():
            raise ValueError(f"the {what}'s tensor {name!r} was created under torch.inference_mode(), and inference "
                             f"tensors cannot be adapted through; load the {what} outside inference_mode "
                             "(torch.no_grad() is fine)")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
