"""Adapter for d3rlpy 2.x algorithms (optional extra: ``pip install 'itpo-wrap[d3rlpy]'``).

For its actor-critic and imitation algorithms, d3rlpy's ``algo.predict(x)`` is three torch steps under
``no_grad``: the observation scaler's ``transform``, the actor's tanh mean ``policy(x).squashed_mu``, and the
action scaler's ``reverse_transform``. The adapter rebuilds that path as a differentiable module with the same
operations on the algorithm's own actor, so zero adaptation steps reproduce ``algo.predict(obs)`` bit for bit:

- TD3+BC, ReBRAC, PRDC, TD3, DDPG and BC: deterministic actors;
- SAC, CQL and Cal-QL (squashed Gaussian), IQL and AWAC (Gaussian clipped to ``[-1, 1]``): ``deterministic=False``
  samples as ``algo.sample_action`` does, from the same random draws.

The policy's units are d3rlpy's output units (after its action scaler: the env's), so the adapter is
``squashed=False``, like SB3's PPO: the wrapper clips actions to the world model's Box, which changes nothing for
actions inside it (d3rlpy itself never clips). As for SB3, only the actor's mean path is adapted (never a
Gaussian's log-std head), and the algorithm's weights, critics and scalers are never written. BCQ, BEAR, CRR and
PLAS are refused: their greedy action picks among sampled candidates by a Q-function (or decodes through a VAE),
not one actor's output. d3rlpy is imported only when a d3rlpy object is wrapped.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import torch
from torch import nn

from itpo_wrap.adapters.base import PolicyAdapter

DESCRIPTION = (
    "d3rlpy 2.x TD3+BC, ReBRAC, PRDC, TD3, DDPG, BC, SAC, CQL, Cal-QL, IQL or AWAC with vector observations "
    "(pip install 'itpo-wrap[d3rlpy]')"
)
_HINT = "pip install 'itpo-wrap[d3rlpy]'"


def matches(obj: object) -> bool:
    """Whether ``obj`` is a d3rlpy algorithm (false without importing d3rlpy if it was never loaded)."""
    if sys.modules.get("d3rlpy") is None:
        return False
    from d3rlpy.base import LearnableBase

    return isinstance(obj, LearnableBase)


def build(policy: object, **options: Any) -> PolicyAdapter:
    """The registry's builder: :func:`d3rlpy_adapter`, refusing the options meant for torch actors."""
    if any(v is not None for v in options.values()):
        raise ValueError(
            f"options {sorted(k for k, v in options.items() if v is not None)} apply to torch actors only; a d3rlpy "
            "algorithm already defines its observation and action scalers"
        )
    return d3rlpy_adapter(policy)


def _require_d3rlpy() -> Any:
    try:
        import d3rlpy
    except ImportError as err:
        raise ImportError(f"wrapping a d3rlpy algorithm needs d3rlpy 2.x: {_HINT}") from err
    if not str(d3rlpy.__version__).startswith("2."):
        raise ImportError(f"d3rlpy {d3rlpy.__version__} is installed but the adapter supports d3rlpy 2.x: {_HINT}")
    return d3rlpy


class _Scaler(nn.Module):
    """A built d3rlpy scaler's ``transform`` (observations) or ``reverse_transform`` (actions) as a module.

    For d3rlpy's standard and min-max scalers the statistics are float32 buffers made as d3rlpy makes its tensors,
    and ``forward`` is d3rlpy's formula, its operations in its order, checked bit for bit against the scaler's own
    method on a probe batch: torch.compile traces it (it cannot trace the scalers' numpy checks). Any other scaler,
    or a formula that differs in this d3rlpy version, calls the scaler's own method (compiled steps then run eagerly).
    """

    lo: torch.Tensor
    hi: torch.Tensor

    def __init__(self, scaler: Any, method: str, device: torch.device, width: int) -> None:
        super().__init__()
        if not scaler.built:
            raise ValueError(f"the d3rlpy {type(scaler).__name__} has no statistics yet (algo.predict would fail too): "
                             "fit the algorithm, or build it with build_with_env, first")
        self.method, self.eps = method, float(getattr(scaler, "eps", 0.0))
        self.kind = {("StandardObservationScaler", "transform"): "standard",
                     ("MinMaxObservationScaler", "transform"): "min_max",
                     ("MinMaxActionScaler", "reverse_transform"): "min_max_reverse"}.get((type(scaler).__name__, method))
        with torch.inference_mode(False):  # tensors that may sit in an autograd graph
            # a fresh copy: d3rlpy caches its tensors lazily, on the first device seen (possibly as inference tensors)
            self.scaler: Any = dataclasses.replace(scaler)
            probe = torch.linspace(-1.0, 1.0, 7 * width, device=device).reshape(7, width)
            expected = getattr(self.scaler, method)(probe)
            if self.kind is not None:
                stats = ("mean", "std") if self.kind == "standard" else ("minimum", "maximum")
                for buffer, stat in zip(("lo", "hi"), stats, strict=True):
                    self.register_buffer(buffer, torch.tensor(getattr(scaler, stat), dtype=torch.float32, device=device))
                if torch.equal(self._formula(probe), expected):
                    self.scaler = None  # d3rlpy's formula, bit for bit: use the traceable copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.scaler, self.method)(x) if self.scaler is not None else self._formula(x)

    def _formula(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lo, self.hi
        if self.kind == "standard":  # StandardObservationScaler.transform
            return (x - lo) / (hi + self.eps)
        if self.kind == "min_max":  # MinMaxObservationScaler.transform
            return (x - lo) / (hi - lo) * 2.0 - 1.0
        return ((hi - lo) * ((x + 1.0) / 2.0)) + lo  # MinMaxActionScaler.reverse_transform


class _D3rlpyActor(nn.Module):
    """``action_scaler(policy(obs_scaler(obs)).squashed_mu)``, as d3rlpy's ``predict``; with
    ``deterministic=False``, ``sampler(policy(...)).sample()`` in place of the mean, as its ``sample_action``."""

    def __init__(self, policy: nn.Module, obs_scaler: _Scaler | None, action_scaler: _Scaler | None,
                 sampler: Any) -> None:
        super().__init__()
        self.policy, self.obs_scaler, self.action_scaler, self.sampler = policy, obs_scaler, action_scaler, sampler

    def forward(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        out = self.policy(obs if self.obs_scaler is None else self.obs_scaler(obs))
        a = out.squashed_mu if deterministic or self.sampler is None else self.sampler(out).sample()
        return a if self.action_scaler is None else self.action_scaler(a)


def d3rlpy_adapter(algo: Any) -> PolicyAdapter:
    """Adapter for a built d3rlpy 2.x algorithm; raises ``TypeError`` naming what is supported otherwise
    (``ValueError`` for one not built or fitted yet).

    :param algo: e.g. ``d3rlpy.algos.TD3PlusBCConfig().create()`` after ``build_with_env``, ``build_with_dataset``
        or ``fit``, or ``d3rlpy.load_learnable("model.d3")``.
    """
    _require_d3rlpy()
    from d3rlpy.algos.qlearning.base import QLearningAlgoBase
    from d3rlpy.algos.qlearning.torch import AWACImpl, BCImpl, DDPGBaseImpl, DDPGImpl, IQLImpl, SACImpl
    from d3rlpy.constants import ActionSpace
    from d3rlpy.models.torch import build_gaussian_distribution, build_squashed_gaussian_distribution

    name = type(algo).__name__
    if not isinstance(algo, QLearningAlgoBase):
        raise TypeError(f"d3rlpy {name} is not a Q-learning algorithm with an actor. Supported: {DESCRIPTION}")
    impl = algo.impl
    if impl is None:
        raise ValueError(f"d3rlpy {name} has no networks yet: build it (algo.build_with_env(env) or "
                         "algo.build_with_dataset(dataset)), fit it, or load it (d3rlpy.load_learnable(path))")
    if algo.get_action_type() != ActionSpace.CONTINUOUS:
        raise TypeError(f"d3rlpy {name} acts in a discrete action space: ITPO needs continuous (Box) actions to "
                        f"differentiate through. Supported: {DESCRIPTION}")
    shape = impl.observation_shape
    if len(shape) != 1 or isinstance(shape[0], (list, tuple)):
        raise TypeError(f"d3rlpy {name} observes shape {shape}: only flat vector observations are supported")
    obs_dim = int(shape[0])
    impl_type: Any = type(impl)
    if impl_type.inner_predict_best_action not in (DDPGBaseImpl.inner_predict_best_action,
                                                   BCImpl.inner_predict_best_action):
        raise TypeError(f"d3rlpy {name}'s greedy action is not one actor's output (it picks among sampled candidates "
                        f"or decodes through a VAE), so there is no policy to adapt. Supported: {DESCRIPTION}")
    samplers = {SACImpl.inner_sample_action: build_squashed_gaussian_distribution,
                IQLImpl.inner_sample_action: build_gaussian_distribution,
                AWACImpl.inner_sample_action: build_gaussian_distribution,
                DDPGImpl.inner_sample_action: None, BCImpl.inner_sample_action: None}
    if impl_type.inner_sample_action not in samplers:
        raise TypeError(f"d3rlpy {name} overrides sample_action in a way the adapter does not know. "
                        f"Supported: {DESCRIPTION}")
    sampler = samplers[impl_type.inner_sample_action]
    policy: nn.Module = impl.policy
    device = next(policy.parameters()).device
    obs_scaler, action_scaler = algo.config.observation_scaler, algo.config.action_scaler
    module = _D3rlpyActor(policy, None if obs_scaler is None else _Scaler(obs_scaler, "transform", device, obs_dim),
                          None if action_scaler is None else _Scaler(action_scaler, "reverse_transform", device,
                                                                     impl.action_size), sampler)
    params = {f"policy.{n}": p for n, p in policy.named_parameters() if not n.startswith("_logstd")}
    return PolicyAdapter(module, params, squashed=False, kind=f"d3rlpy {name} policy", obs_dim=obs_dim,
                         stochastic=sampler is not None)
