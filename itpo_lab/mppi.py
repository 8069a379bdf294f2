"""A gradient-free baseline on the same world model and critic: MPPI over action sequences.

The question it answers (issue 6): what does the *gradient* buy? ITPO ascends the imagined return of
METHOD.md section 3 with respect to the policy's parameters; MPPI (Williams et al. 2017, in the form
TD-MPC2 uses: Hansen et al. 2024, policy-prior samples, elites, temperature-weighted refits) searches the
same return over open-loop action sequences ``a_0 .. a_{H-1}`` and bootstraps with the same terminal
value ``min_i Q_i(s_H, pi(s_H))`` of the same pretrained policy. Everything else is shared: the world
model, its reward and termination heads, the discount and the termination masks.

Per real step: ``iterations`` rounds of ``samples`` Gaussian sequences around a mean (warm-started from the
previous step's plan shifted by one), plus ``policy_samples`` rollouts of the base policy itself (with
small Gaussian action noise beyond the first), scored by the surrogate return; the ``elites`` best refit
mean and std with weights ``exp(temperature^-1 (L - max L))``. The action is the first step of the final
mean (no sampling: evaluation is deterministic).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.adapters import box_center_half, to_env_numpy
from itpo_wrap.objective import Rollout, surrogate_return
from itpo_wrap.world_model.protocol import WorldModelLike


@dataclass(frozen=True)
class MPPIConfig:
    """MPPI settings (defaults sized to ITPO's default latency on a CPU, see docs/results.md).

    :param horizon: planning horizon ``H`` (ITPO's default 5).
    :param samples: Gaussian action sequences per iteration.
    :param policy_samples: rollouts of the base policy added to every iteration (the first noiseless).
    :param elites: best sequences that refit the distribution.
    :param iterations: refits per real step.
    :param temperature: of the elite weights, in units of the return.
    :param init_std: initial std in ``[-1, 1]`` action units.
    :param min_std: floor of the refitted std.
    :param policy_noise: std of the action noise on the policy prior's rollouts (beyond the first).
    :param discount: ``gamma`` of the imagined return.
    :param seed: of the sampling generator (reset by :meth:`MPPIPlanner.reset`).
    """

    horizon: int = 5
    samples: int = 56
    policy_samples: int = 8
    elites: int = 8
    iterations: int = 3
    temperature: float = 0.5
    init_std: float = 0.5
    min_std: float = 0.05
    policy_noise: float = 0.1
    discount: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "samples", "elites", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"MPPIConfig.{name}={getattr(self, name)} must be >= 1")
        if self.policy_samples < 0:
            raise ValueError(f"MPPIConfig.policy_samples={self.policy_samples} must be >= 0")
        if self.elites > self.samples + self.policy_samples:
            raise ValueError(f"MPPIConfig.elites={self.elites} exceeds the {self.samples + self.policy_samples} "
                             "candidates per iteration; lower elites or raise samples")
        for name in ("temperature", "init_std", "min_std", "discount"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MPPIConfig.{name}={getattr(self, name)} must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MPPIPlanner:
    """SB3-style ``predict`` that plans with MPPI on a world model and a base policy's critic.

    :param actor: deterministic base actor, ``(B, obs_dim)`` raw observations to ``[-1, 1]`` actions (a zoo
        entry's ``.actor``, or ``itpo_wrap.formats.sb3.SB3Actor`` for an SB3 model).
    :param world_model: a ``WorldModel`` with a critic.
    :param config: the planner's settings.
    """

    def __init__(self, actor: nn.Module, world_model: WorldModelLike, config: MPPIConfig | None = None) -> None:
        self.actor = actor.eval()
        self.world_model = world_model
        self.config = config or MPPIConfig()
        low, high = world_model.action_low, world_model.action_high
        self._mid, self._half = box_center_half(low, high)
        self._low_np, self._high_np = low.cpu().numpy(), high.cpu().numpy()
        self._means: list[torch.Tensor | None] = []
        self.reset()

    def reset(self) -> None:
        """Forget warm starts and reseed the sampler."""
        self._means = []
        self._gen = torch.Generator(device=self._mid.device).manual_seed(self.config.seed)

    def _to_env(self, a: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._mid, self._half, a)

    @torch.no_grad()
    def _returns(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Surrogate return of METHOD.md section 3 for ``(B, H, act)`` sequences in ``[-1, 1]``: the same
        :func:`~itpo_wrap.objective.surrogate_return` (discount, termination masks) ITPO ascends."""
        cfg, wm = self.config, self.world_model
        b = actions.shape[0]
        s = s0.expand(b, -1)
        noise = wm.draw_noise(b, cfg.horizon, self._gen)
        states, env_actions, rewards = [s], [], []
        alive = [torch.ones(b, dtype=torch.bool, device=s0.device)]
        for j in range(cfg.horizon):
            a = self._to_env(actions[:, j])
            rewards.append(wm.reward(s, a))
            s = wm.next(s, a, noise[j])
            alive.append(alive[-1] & ~wm.terminated(s).bool())
            states.append(s)
            env_actions.append(a)
        env_actions.append(self._to_env(self.actor(s)))
        rollout = Rollout(states, env_actions, torch.stack(rewards), torch.stack(alive), wm.value(s, env_actions[-1]))
        return surrogate_return(rollout, cfg.discount)

    @torch.no_grad()
    def _policy_sequences(self, s0: torch.Tensor, n: int) -> torch.Tensor:
        """``(n, H, act)`` action sequences of the base policy rolled through the model."""
        cfg, wm = self.config, self.world_model
        s = s0.expand(n, -1)
        noise = wm.draw_noise(n, cfg.horizon, self._gen)
        out = []
        for j in range(cfg.horizon):
            a = self.actor(s)
            if j > 0 or n > 1:
                jitter = cfg.policy_noise * torch.randn(a.shape, generator=self._gen, device=a.device)
                jitter[0] = 0.0  # the first prior rollout is the policy itself
                a = (a + jitter).clamp(-1.0, 1.0)
            out.append(a)
            s = wm.next(s, self._to_env(a), noise[j])
        return torch.stack(out, 1)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor, warm: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Plan from one raw observation ``(obs_dim,)``: the ``[-1, 1]`` first action and the final mean."""
        cfg = self.config
        s0 = obs.unsqueeze(0)
        prior = self._policy_sequences(s0, cfg.policy_samples) if cfg.policy_samples else None
        act_dim = self._mid.shape[0]
        mean = warm if warm is not None else (prior[0] if prior is not None else torch.zeros(cfg.horizon, act_dim))
        std = torch.full_like(mean, cfg.init_std)
        for _ in range(cfg.iterations):
            eps = torch.randn((cfg.samples, *mean.shape), generator=self._gen, device=mean.device)
            cands = (mean + std * eps).clamp(-1.0, 1.0)
            if prior is not None:
                cands = torch.cat([prior, cands])
            ret = self._returns(s0, cands)
            ret = torch.nan_to_num(ret, nan=-torch.inf)
            top = torch.topk(ret, cfg.elites).indices
            elite, elite_ret = cands[top], ret[top]
            w = torch.softmax((elite_ret - elite_ret.max()) / cfg.temperature, 0)
            if not torch.isfinite(w).all():  # every elite non-finite: keep the base policy's plan
                w = torch.full_like(w, 1.0 / len(w))
            mean = (w[:, None, None] * elite).sum(0)
            std = (w[:, None, None] * (elite - mean).pow(2)).sum(0).sqrt().clamp(cfg.min_std, cfg.init_std)
        return mean[0], mean

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` contract; ``deterministic`` is accepted for compatibility (MPPI's output is
        the refitted mean either way).

        :param observation: ``(obs_dim,)`` or ``(n_envs, obs_dim)``.
        :param state: unused (returned as is).
        :param episode_start: ``(n_envs,)`` bools; a true entry drops that env's warm start.
        :param deterministic: unused.
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if not np.all(np.isfinite(batch)):
            raise ValueError("observation contains NaN or inf; MPPI plans only from finite observations")
        n = batch.shape[0]
        if len(self._means) != n:
            self._means = [None] * n
        if episode_start is not None:
            for j in np.flatnonzero(np.asarray(episode_start, dtype=bool).reshape(-1)[:n]):
                self._means[int(j)] = None
        t = torch.as_tensor(batch, device=self._mid.device)
        actions = []
        for i in range(n):
            first, mean = self.plan(t[i], self._shifted(self._means[i]))
            self._means[i] = mean
            actions.append(first)
        a = torch.stack(actions).cpu().numpy()
        out = to_env_numpy(a, self._low_np, self._high_np, squashed=True)
        return (out[0] if single else out), state

    @staticmethod
    def _shifted(mean: torch.Tensor | None) -> torch.Tensor | None:
        """Warm start: drop the executed first step, repeat the last."""
        if mean is None:
            return None
        return torch.cat([mean[1:], mean[-1:]])



def mppi_agent(config: MPPIConfig, entry: Any, world_model: WorldModelLike) -> tuple[Any, None]:
    """``(predict, info_fn)`` of one MPPI episode, as :class:`itpo_wrap.evaluate.EvalConfig` ``agent`` takes it
    (``functools.partial(mppi_agent, config)``: module-level, so a Ray worker can import it).

    :param config: the planner's settings.
    :param entry: a loaded zoo entry (its ``actor`` is the policy prior and critic's actor).
    :param world_model: its world model.
    """
    return MPPIPlanner(entry.actor, world_model, config).predict, None
