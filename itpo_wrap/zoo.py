"""The zoo of pretrained base policies (and, when present, their world models).

``zoo.list()`` names the entries; ``zoo.load(name)`` returns a :class:`ZooEntry` with ``.policy``,
``.actor``, ``.critic``, ``.world_model`` (lazy, ``None`` when absent), ``.dataset_id``,
``.env_id`` and ``.make_env()``.

Where (:func:`zoo_path`): a folder given explicitly (``zoo.load(name, root=...)``, ``--zoo-dir`` on
every command), else ``$ITPO_ZOO_PATH``, else ``policies/zoo/`` of the source checkout this package
lives in (all nine datasets), else the demo entry shipped inside the package (``itpo_wrap/zoo_demo``:
Hopper medium's TD3+BC and SAC bases with its MeanFlow world model, so ``pip install itpo-wrap`` has
a zoo). One folder per dataset, named ``<env>-<level>`` (``itpo/hopper/medium-replay-v0`` ->
``hopper-medium-replay``)::

    policies/zoo/hopper-medium-replay/
      entry.json        machine-readable, the source of truth (below)
      MODEL_CARD.md     generated from entry.json: how each policy was made, scores, commands
      rebrac.pt         offline-policy checkpoints (actor + twin critic + normalizer + config;
      td3_bc.pt         itpo_wrap.formats.offline_policy)
      sac_expert.pt     optional SB3 SAC/TD3 base (kind "sb3"), weights-only (itpo_wrap.formats.sb3_weights)
      wm_diffusion.pt   optional WorldModel bundles, one per dynamics kind, stored without a critic:
      wm_meanflow.pt    loading one attaches the chosen base policy's own critic (METHOD.md section 3)

``entry.json`` (format ``itpo-zoo-entry`` version 1)::

    {"format": "itpo-zoo-entry", "format_version": 1, "name": "hopper-medium-replay",
     "dataset_id": "itpo/hopper/medium-replay-v0", "env_id": "Hopper-v5",
     "default_policy": "rebrac", "world_model": "wm_diffusion.pt" or null (the default kind's file),
     "world_models": {"diffusion": {"file": "wm_diffusion.pt", "command": ..., "wall_s": ..., "eval": {...}},
                      "meanflow": {...}},
     "policies": {"rebrac": {"file": "rebrac.pt", "kind": "offline" | "sb3", "algorithm": "rebrac",
                             "updates": 100000, "wall_s": 812.0, "command": "python policies/...",
                             "eval": {"episodes": 10, "seed": 1000, "return_mean": ..., "return_std": ...,
                                      "score_mean": ..., "score_std": ...}}}}

This module only reads. Entries are written by the lab (``itpo_lab.zoo_write.add_policy`` and friends;
the trainers call it with ``--zoo-dir``), which also renders ``MODEL_CARD.md``. Every ``"file"`` is
resolved inside its entry folder and anything else is refused, and no pickle is ever loaded from an
entry (:mod:`itpo_wrap.zoo_files`).
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from torch import nn

from itpo_wrap.adapters import to_env_numpy
from itpo_wrap.config import AdaptConfig, record_defaults
from itpo_wrap.data.minari import normalized_score
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.formats.sb3 import load_sb3_base
from itpo_wrap.pairing import provenance
from itpo_wrap.world_model.heads import CriticHead
from itpo_wrap.world_model.model import WorldModel
from itpo_wrap.zoo_files import check_entry_name, entry_file, refuse_zip_base

FORMAT = "itpo-zoo-entry"
FORMAT_VERSION = 1
KINDS = ("offline", "sb3")
_DATASET_ID = re.compile(r"(?:^|/)(?P<env>[a-z0-9_]+)[/-](?P<level>[a-z0-9_-]+?)-v\d+$")


PACKAGED_ZOO = Path(__file__).resolve().parent / "zoo_demo"
"""The demo zoo inside the package (package data): what a wheel install finds when nothing else is set."""


def zoo_path(root: str | Path | None = None) -> Path:
    """The zoo root: ``root`` when given (``--zoo-dir``); else ``$ITPO_ZOO_PATH``; else ``policies/zoo`` of the
    source checkout next to the ``itpo_wrap`` package (an editable install); else :data:`PACKAGED_ZOO`, the one
    demo entry a wheel carries.

    :param root: an explicit zoo folder, which always wins.
    """
    if root is not None:
        return Path(root)
    env = os.environ.get("ITPO_ZOO_PATH")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1] / "policies" / "zoo"
    return checkout if checkout.is_dir() else PACKAGED_ZOO


def zoo_source(root: str | Path | None = None) -> str:
    """Where a zoo root came from, in words (for messages and ``itpo zoo list``).

    :param root: an explicit folder, or ``None`` for :func:`zoo_path`'s choice.
    """
    if root is not None:
        return f"{str(root)!r} (given explicitly)"
    path = zoo_path()
    if os.environ.get("ITPO_ZOO_PATH"):
        return f"{str(path)!r} (from $ITPO_ZOO_PATH)"
    if path == PACKAGED_ZOO:
        return (f"{str(path)!r} (the demo entry shipped in the package; the full zoo lives in a source checkout's "
                "policies/zoo: point ITPO_ZOO_PATH or --zoo-dir at it)")
    return f"{str(path)!r} (the source checkout)"


def entry_name(dataset_id: str) -> str:
    """Zoo folder name of a dataset id: ``itpo/hopper/medium-replay-v0`` -> ``hopper-medium-replay``.

    :param dataset_id: ``<namespace>/<env>/<level>-v<N>`` or D4RL-style ``<env>-<level>-v<N>``.
    """
    m = _DATASET_ID.search(dataset_id)
    if m is None:
        raise ValueError(f"dataset id {dataset_id!r} is not of the form '<namespace>/<env>/<level>-v<N>'; "
                         "pass an explicit entry name instead")
    return f"{m.group('env')}-{m.group('level')}"


def list(root: str | Path | None = None) -> builtins.list[str]:  # noqa: A001 - the issue's API name
    """Names of the zoo entries (folders holding an ``entry.json``), sorted.

    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    """
    base = zoo_path(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "entry.json").is_file())


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
        device = self.device if device is None else str(_check_device(device))
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
        import numpy as np
        import torch

        env = self.make_env()
        low, high = env.action_space.low, env.action_space.high
        env.close()

        def predict(observation: Any, state: Any = None, episode_start: Any = None,
                    deterministic: bool = True) -> tuple[Any, Any]:
            with torch.no_grad():
                obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
                a = self.actor(obs).cpu().numpy()
            return to_env_numpy(a, low, high, squashed=True), state

        return predict

    def make_env(self, **kwargs: Any) -> Any:
        """``gymnasium.make(env_id, **kwargs)``."""
        import gymnasium as gym

        return gym.make(self.env_id, **kwargs)


def read_entry(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The parsed ``entry.json`` of ``name`` (validated), without loading any weights."""
    check_entry_name(name)
    base = zoo_path(root)
    path = base / name / "entry.json"
    if not path.is_file():
        known = list(base)
        raise KeyError(f"no zoo entry named {name!r} in {zoo_source(root)}; known entries: "
                       f"{', '.join(known) if known else 'none'}"
                       + ("" if known else " (set ITPO_ZOO_PATH or --zoo-dir to a zoo folder)"))
    try:
        entry = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); fix or regenerate the entry") from err
    if entry.get("format") != FORMAT or not isinstance(entry.get("policies"), dict):
        raise ValueError(f"{str(path)!r} is not an {FORMAT} file (see the itpo_wrap.zoo docstring for the layout)")
    return entry


def load(name: str, policy: str | None = None, root: str | Path | None = None, device: str = "cpu") -> ZooEntry:
    """Load a zoo entry's base policy and critic.

    :param name: an entry from :func:`list`, e.g. ``"hopper-medium-replay"``.
    :param policy: which of the entry's policies (``"rebrac"``, ``"td3_bc"``, ...); its default when ``None``.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    :param device: where the policy and critic live (``"cpu"``, ``"cuda"``); :meth:`ZooEntry.load_world_model`
        loads onto the same device unless told otherwise.
    """
    dev = _check_device(device)
    base = zoo_path(root)
    entry = read_entry(name, root)
    policy_name = str(policy or entry.get("default_policy") or next(iter(entry["policies"]), ""))
    if policy_name not in entry["policies"]:
        raise KeyError(f"zoo entry {name!r} has no policy {policy_name!r}; it has {sorted(entry['policies'])}")
    spec = entry["policies"][policy_name]
    file = entry_file(base / name, spec.get("file"), f"policy {policy_name!r}")  # never outside the entry
    actor: nn.Module
    critic: nn.Module
    if spec.get("kind") == "sb3":
        refuse_zip_base(file, f"zoo entry {name!r} policy {policy_name!r}")
        actor, critic, meta = load_sb3_base(file, spec.get("algorithm", "auto").removeprefix("sb3_"),
                                            env_id=entry["env_id"], dataset_id=entry["dataset_id"])
        the_policy: Any = meta["model"]
    elif spec.get("kind") == "offline":
        actor, critic, meta = load_offline_policy(file)
        if meta.get("env_id") and meta["env_id"] != entry["env_id"]:
            raise ValueError(f"zoo entry {name!r} is for {entry['env_id']!r} but its policy {policy_name!r} ({file.name}) "
                             f"was trained on {meta['env_id']!r}; replace the file with the {entry['env_id']} policy")
        the_policy = actor
    else:
        raise ValueError(f"zoo entry {name!r} policy {policy_name!r} has kind {spec.get('kind')!r}; expected one of {KINDS}")
    if dev.type != "cpu":
        actor.to(dev)
        critic.to(dev)
        if "model" in meta:  # SB3 reads its own .device when it turns observations into tensors
            meta["model"].policy.to(dev)
            meta["model"].device = dev
    return ZooEntry(name=name, device=str(dev), directory=base / name, dataset_id=entry["dataset_id"], env_id=entry["env_id"],
                    policy_name=policy_name, algorithm=str(meta.get("algorithm") or spec.get("algorithm", "")),
                    policy=the_policy, actor=actor, critic=critic, meta=meta,
                    world_model_file=entry.get("world_model"),
                    world_model_files={k: v["file"] for k, v in entry.get("world_models", {}).items()},
                    ref_min_score=entry.get("ref_min_score"), ref_max_score=entry.get("ref_max_score"),
                    tuned_settings={k: t for k, w in entry.get("world_models", {}).items() if (t := tuned_settings_of(w))})


def _check_device(device: str) -> Any:
    """``torch.device(device)``, or a one-line error naming the value and the fix."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use device='cpu'")
    return dev


def tuned_settings_of(wm: dict[str, Any]) -> dict[str, Any]:
    """A world model record's tuned ``AdaptConfig`` fields (older entries stored only ``tuned_step_size``).

    :param wm: one ``entry.json`` ``world_models`` record.
    """
    if "tuned" in wm:
        return dict(wm["tuned"])
    return {"step_size": float(wm["tuned_step_size"])} if "tuned_step_size" in wm else {}
