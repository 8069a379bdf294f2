"""A loaded zoo entry, :class:`ZooEntry`: the base policy and critic :func:`itpo_wrap.zoo.load` read, and
what hangs off them (the entry's world models with that policy's critic attached, its tuned ``AdaptConfig``,
normalized scores, the base policy's own ``predict``, its env).
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
from pathlib import Path
from typing import Any

from torch import nn

from itpo_wrap.adapters import actor_predict
from itpo_wrap.config import AdaptConfig, record_defaults
from itpo_wrap.data.minari import normalized_score
from itpo_wrap.pairing import provenance
from itpo_wrap.world_model.heads import CriticHead
from itpo_wrap.world_model.model import WorldModel
from itpo_wrap.zoo_files import entry_file
from itpo_wrap.zoo_root import PACKAGED_ZOO


@dataclasses.dataclass
class ZooEntry:
    """A loaded zoo entry. ``policy`` is what the wrapper takes: the ``TanhActor`` for offline
    checkpoints, the SB3 model for SB3 bases; ``actor`` is always a differentiable ``nn.Module``
    (obs -> ``[-1, 1]``) and ``critic`` always answers ``critic(obs, act) -> (q1, q2)``."""

    name: str
    directory: Path
    dataset_id: str
    env_id: str
    policy_name: str
    algorithm: str
    policy: Any
    actor: nn.Module
    critic: nn.Module
    meta: dict[str, Any]
    world_model_file: str | None = None
    world_model_files: dict[str, str] = dataclasses.field(default_factory=dict)
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    tuned_settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    device: str = "cpu"

    @property
    def tuned_step_sizes(self) -> dict[str, float]:
        """``{kind: step_size}`` for the world models whose ITPO settings were tuned."""
        return {k: float(v["step_size"]) for k, v in self.tuned_settings.items() if "step_size" in v}

    def adapt_config(self, kind: str, **overrides: Any) -> Any:
        """The ``AdaptConfig`` tuned for this entry's ``kind`` world model, with ``overrides`` on top.

        A tuned record runs as it was evaluated: a record from before issue 20 (it names no
        ``termination``) means the defaults of then by the fields it leaves out
        (:data:`~itpo_wrap.config.LEGACY_DEFAULTS`: persistent, no gate, no trust region, hard mask), and
        every record means no trust region or reality check it does not name
        (:func:`~itpo_wrap.config.record_defaults`); other unnamed fields take ``AdaptConfig``'s defaults.
        Untuned kinds get today's defaults, the safety layer's, which need no tuning (``docs/safety.md``).

        :param kind: ``"diffusion"``, ``"meanflow"`` or ``"mlp"``.
        :param overrides: ``AdaptConfig`` fields that win over the tuned ones (``device="cpu"``, say).
        """
        tuned = self.tuned_settings.get(kind, {})
        meant = record_defaults(tuned) if tuned else {}
        return AdaptConfig(**{**meant, **tuned, **overrides})

    def normalized_score(self, returns: Any) -> Any:
        """D4RL-style ``100 * (R - R_min) / (R_max - R_min)`` with the entry's dataset references.

        :param returns: episode return(s).
        """
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"zoo entry {self.name!r} records no reference scores; add them with "
                             "itpo_lab.zoo_write.add_policy(..., ref_scores=(ref_min_score, ref_max_score)) from its "
                             "dataset")
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    @property
    def world_model_kinds(self) -> builtins.list[str]:
        """Dynamics kinds with a bundle in this entry (``"diffusion"``, ``"meanflow"``)."""
        return sorted(self.world_model_files)

    @functools.cached_property
    def world_model(self) -> Any:
        """The entry's default ``WorldModel`` bundle (diffusion when present) with this entry's critic
        attached, loaded on first access; ``None`` when the entry has none."""
        if not self.world_model_file and not self.world_model_files:
            return None
        kind = "diffusion" if "diffusion" in self.world_model_files else next(iter(self.world_model_files), None)
        return self.load_world_model(kind)

    def load_world_model(self, kind: str | None = None, device: str | None = None) -> Any:
        """A fresh ``WorldModel`` of dynamics ``kind`` with the loaded policy's own twin critic as its
        terminal value (the bundles are stored without one, so every base policy of the entry pairs
        with its own critic), in the action units that critic was trained in. A bundle whose env, dynamics
        kind, widths or action Box differ from the slot's and the policy's is refused, naming both.

        :param kind: ``"diffusion"`` or ``"meanflow"`` (see :attr:`world_model_kinds`); ``"mlp"``: the
            diffusion bundle with its deterministic same-budget MLP baseline as the dynamics (an ablation);
            ``None``: the legacy single ``world_model`` file.
        :param device: where to load it (default: the entry's own device, see :func:`load`).
        """
        device = self.device if device is None else str(check_device(device))
        if kind == "mlp" and "mlp" not in self.world_model_files and "diffusion" in self.world_model_files:
            # the deterministic ablation: the diffusion bundle's same-budget MLP baseline as the dynamics
            wm = self.load_world_model("diffusion", device)
            if wm.baseline is None:
                raise KeyError(f"zoo entry {self.name!r}: its diffusion bundle was saved without the MLP baseline")
            wm.dynamics = wm.baseline
            return wm
        if kind is None:
            file = self.world_model_file
        elif kind in self.world_model_files:
            file = self.world_model_files[kind]
        else:
            hint = ("the full zoo of a source checkout has more: point ITPO_ZOO_PATH or --zoo-dir at its "
                    "policies/zoo" if self.directory.parent == PACKAGED_ZOO else "train one with itpo train-world-model")
            raise KeyError(f"zoo entry {self.name!r} has no {kind!r} world model; it has "
                           f"{self.world_model_kinds or 'none'} ({hint})")
        if not file:
            raise KeyError(f"zoo entry {self.name!r} has no world model")
        policy = provenance(self.actor)  # widths and Box the loaded policy was trained with
        wm = WorldModel.load(entry_file(self.directory, file, f"world model {kind!r}"), map_location=device,
                             env_id=self.env_id, kind=kind, obs_dim=policy.get("obs_dim"), act_dim=policy.get("act_dim"),
                             action_low=policy.get("action_low"), action_high=policy.get("action_high"))
        if "model" in self.meta:  # an SB3 base (load_sb3_base keeps the model in meta)
            head = CriticHead.from_sb3(self.meta["model"])
        else:  # the trainers' critics saw actions scaled to [-1, 1] with the env's Box: the head scales alike
            head = CriticHead.from_twin_q(self.critic, self.meta.get("action_low"),  # type: ignore[arg-type]
                                          self.meta.get("action_high"))
        wm.set_critic(head)
        return wm

    def base_predict(self) -> Any:
        """The base policy's own SB3-style ``predict``: the SB3 model's, or the actor's deterministic action
        mapped to the Box as SB3 does (what the wrapper at ``steps=0`` also returns)."""
        if "model" in self.meta:
            return self.meta["model"].predict
        env = self.make_env()
        low, high = env.action_space.low, env.action_space.high
        env.close()
        return actor_predict(self.actor, low, high, device=self.device)

    def make_env(self, **kwargs: Any) -> Any:
        """``gymnasium.make(env_id, **kwargs)``."""
        import gymnasium as gym

        return gym.make(self.env_id, **kwargs)


def check_device(device: str) -> Any:
    """``torch.device(device)``, or a one-line error naming the value and the fix."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use device='cpu'")
    return dev
