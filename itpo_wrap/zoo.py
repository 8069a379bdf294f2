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
      MODEL_CARD.md     generated from entry.json: how each policy was made, scores, the commands
                        rendered from its provenance records
      rebrac.pt         offline-policy checkpoints (actor + twin critic + normalizer + config;
      td3_bc.pt         itpo_wrap.formats.offline_policy)
      sac_expert.pt     optional SB3 SAC/TD3 base (kind "sb3"), weights-only (itpo_wrap.formats.sb3_weights)
      wm_diffusion.pt   optional WorldModel bundles, one per dynamics kind, stored without a critic:
      wm_meanflow.pt    loading one attaches the chosen base policy's own critic (METHOD.md section 3)

``entry.json`` (format ``itpo-zoo-entry`` version 1)::

    {"format": "itpo-zoo-entry", "format_version": 1, "name": "hopper-medium-replay",
     "dataset_id": "itpo/hopper/medium-replay-v0", "env_id": "Hopper-v5",
     "default_policy": "rebrac", "world_model": "wm_diffusion.pt" or null (the default kind's file),
     "world_models": {"diffusion": {"file": "wm_diffusion.pt", "provenance": {...}, "wall_s": ...,
                                    "eval": {...}},
                      "meanflow": {...}},
     "policies": {"rebrac": {"file": "rebrac.pt", "kind": "offline" | "sb3", "algorithm": "rebrac",
                             "updates": 100000, "wall_s": 812.0,
                             "provenance": {"program": "policies/rebrac.py", "args": {"dataset": ..., ...}},
                             "eval": {"episodes": 10, "seed": 1000, "return_mean": ..., "return_std": ...,
                                      "score_mean": ..., "score_std": ...}}}}

``provenance`` is how the file was made, as data (:mod:`itpo_wrap.provenance`: the program and every argument
it resolved); entries written before issue 22 store the command line under ``command`` instead, and load the
same (nothing that loads a policy reads either).

This module only reads. Entries are written by the lab (``itpo_lab.zoo_write.add_policy`` and friends;
the trainers call it with ``--zoo-dir``), which also renders ``MODEL_CARD.md``. Every ``"file"`` is
resolved inside its entry folder and anything else is refused, and no pickle is ever loaded from an
entry (:mod:`itpo_wrap.zoo_files`).

Here: :func:`load`. Finding the zoo and reading its ``entry.json`` files is :mod:`itpo_wrap.zoo_root`,
the loaded entry :mod:`itpo_wrap.zoo_entry`; their names are re-exported here, where users import them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.formats.sb3 import load_sb3_base
from itpo_wrap.zoo_entry import ZooEntry, check_device
from itpo_wrap.zoo_files import entry_file, refuse_zip_base
from itpo_wrap.zoo_root import (
    FORMAT,
    FORMAT_VERSION,
    PACKAGED_ZOO,
    entry_name,
    list,
    read_entry,
    tuned_settings_of,
    zoo_path,
    zoo_source,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "KINDS", "PACKAGED_ZOO", "ZooEntry", "entry_name", "list", "load", "read_entry",
    "tuned_settings_of", "zoo_path", "zoo_source",
]

KINDS = ("offline", "sb3")


def load(name: str, policy: str | None = None, root: str | Path | None = None, device: str = "cpu") -> ZooEntry:
    """Load a zoo entry's base policy and critic.

    :param name: an entry from :func:`list`, e.g. ``"hopper-medium-replay"``.
    :param policy: which of the entry's policies (``"rebrac"``, ``"td3_bc"``, ...); its default when ``None``.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    :param device: where the policy and critic live (``"cpu"``, ``"cuda"``); :meth:`ZooEntry.load_world_model`
        loads onto the same device unless told otherwise.
    """
    dev = check_device(device)
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
