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
      rebrac.pt         itpo_wrap.offline checkpoints (actor + twin critic + normalizer + config)
      td3_bc.pt
      sac_expert.pt     optional SB3 SAC/TD3 base (kind "sb3"), weights-only (itpo_wrap.offline.sb3_weights)
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

Entries are written with :func:`add_policy` (the trainers call it with ``--zoo-dir``). Every ``"file"``
is resolved inside its entry folder and anything else is refused, and no pickle is ever loaded from an
entry (:mod:`itpo_wrap.zoo_files`).
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from itpo_wrap.pairing import provenance
from itpo_wrap.zoo_files import check_entry_name, check_world_model_for_entry, entry_file, refuse_zip_base

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
        (:func:`~itpo_wrap.config.record_defaults`); other unnamed fields take ``AdaptConfig``'s defaults. Untuned kinds get today's defaults, the safety
        layer's, which need no tuning (``docs/safety.md``).

        :param kind: ``"diffusion"``, ``"meanflow"`` or ``"mlp"``.
        :param overrides: ``AdaptConfig`` fields that win over the tuned ones (``device="cpu"``, say).
        """
        from itpo_wrap.config import AdaptConfig, record_defaults

        tuned = self.tuned_settings.get(kind, {})
        meant = record_defaults(tuned) if tuned else {}
        return AdaptConfig(**{**meant, **tuned, **overrides})

    def normalized_score(self, returns: Any) -> Any:
        """D4RL-style ``100 * (R - R_min) / (R_max - R_min)`` with the entry's dataset references.

        :param returns: episode return(s).
        """
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"zoo entry {self.name!r} records no reference scores; add them with "
                             "zoo.add_policy(..., ref_scores=(ref_min_score, ref_max_score)) from its dataset")
        from itpo_wrap.data.minari import normalized_score

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
        if importlib.util.find_spec("itpo_wrap.world_model.model") is None:
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
        from itpo_wrap.world_model.heads import CriticHead

        device = self.device if device is None else str(_check_device(device))
        from itpo_wrap.world_model.model import WorldModel

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

        from itpo_wrap.adapters import to_env_numpy

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
        from itpo_wrap.offline.sb3 import load_sb3_base

        refuse_zip_base(file, f"zoo entry {name!r} policy {policy_name!r}")
        actor, critic, meta = load_sb3_base(file, spec.get("algorithm", "auto").removeprefix("sb3_"),
                                            env_id=entry["env_id"], dataset_id=entry["dataset_id"])
        the_policy: Any = meta["model"]
    elif spec.get("kind") == "offline":
        from itpo_wrap.offline.checkpoint import load_offline_policy

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


def _write_entry(base: Path, name: str, entry: dict[str, Any]) -> None:
    """Write ``entry.json`` atomically (a running evaluation never reads half a file) and regenerate the card."""
    path = base / name / "entry.json"
    tmp = path.with_name("entry.json.tmp")
    tmp.write_text(json.dumps(entry, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    (base / name / "MODEL_CARD.md").write_text(model_card(entry))


def add_policy(
    name: str,
    policy_name: str,
    file: str | Path,
    *,
    kind: str,
    dataset_id: str,
    env_id: str,
    info: dict[str, Any] | None = None,
    default: bool = False,
    copy: bool = True,
    root: str | Path | None = None,
    ref_scores: tuple[float, float] | None = None,
) -> Path:
    """Copy a trained policy into the zoo, update ``entry.json`` and regenerate ``MODEL_CARD.md``.

    The file is checked first (it loads, and an offline checkpoint or weights-only SB3 file names this
    ``env_id``); an SB3 ``.zip`` is stored converted, as ``<policy_name>.pt`` in the weights-only format
    (:mod:`itpo_wrap.offline.sb3_weights`): the zoo holds no pickles, and the zip (trusted like code)
    is loaded once, here.

    :param name: the entry (``entry_name(dataset_id)`` for the standard layout).
    :param policy_name: the key inside the entry (``"rebrac"``, ``"td3_bc"``, ``"sac_expert"``).
    :param file: the checkpoint (``.pt`` for ``kind="offline"``; SB3 ``.zip`` or weights-only ``.pt`` for ``kind="sb3"``).
    :param kind: ``"offline"`` or ``"sb3"``.
    :param dataset_id: the dataset the entry belongs to.
    :param env_id: the Gymnasium id.
    :param info: card facts: ``algorithm``, ``updates``, ``wall_s``, ``command``, ``eval`` (dict), ``notes``.
    :param default: make this the entry's default policy (the first policy added always is).
    :param copy: copy ``file`` into the entry as ``<policy_name><suffix>``; ``False`` records a file already
        inside the entry folder by its relative path (a file outside is refused: entries open only their own
        files). An SB3 ``.zip`` is always stored converted.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    :param ref_scores: the dataset's ``(ref_min_score, ref_max_score)``, stored in the entry so scores can
        be normalized without the dataset (a fresh machine has the zoo but not the datasets).
    :return: the entry folder.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {KINDS}")
    check_entry_name(name)
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"cannot add {str(src)!r} to the zoo: no such file")
    folder = zoo_path(root) / name
    path = folder / "entry.json"
    entry: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "dataset_id": dataset_id,
        "env_id": env_id, "default_policy": None, "world_model": None, "policies": {}}
    if (entry["dataset_id"], entry["env_id"]) != (dataset_id, env_id):
        raise ValueError(f"zoo entry {name!r} is for {entry['dataset_id']!r} on {entry['env_id']!r}, not "
                         f"{dataset_id!r} on {env_id!r}; use another entry name")
    sb3_zip = kind == "sb3" and src.suffix == ".zip"
    if not sb3_zip:  # checked before anything is written: it loads, and names this env if it names one
        _check_policy_file(src, kind, env_id)
    stored = None if copy or sb3_zip else Path(os.path.relpath(src.resolve(), folder.resolve())).as_posix()
    if stored is not None:
        entry_file(folder, stored, f"policy {policy_name!r}")  # copy=False: only a file inside the entry
    folder.mkdir(parents=True, exist_ok=True)
    if sb3_zip:
        from itpo_wrap.offline.sb3_weights import convert_sb3_zip

        stored = convert_sb3_zip(src, folder / f"{policy_name}.pt", env_id=env_id).name
    elif stored is None:
        dest = folder / f"{policy_name}{src.suffix or '.pt'}"
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        stored = dest.name
    entry["policies"][policy_name] = {"file": stored, "kind": kind, **(info or {})}
    if ref_scores is not None:
        entry["ref_min_score"], entry["ref_max_score"] = float(ref_scores[0]), float(ref_scores[1])
    if default or not entry.get("default_policy"):
        entry["default_policy"] = policy_name
    _write_entry(folder.parent, name, entry)
    return folder


def _check_policy_file(src: Path, kind: str, env_id: str) -> None:
    """Load a policy file about to enter the zoo (CRCs, digest, format) and refuse one for another env."""
    if kind == "offline":
        from itpo_wrap.offline.checkpoint import load_offline_policy

        recorded = load_offline_policy(src)[2].get("env_id")
        if recorded and recorded != env_id:
            raise ValueError(f"{str(src)!r} was trained on {recorded!r}, not {env_id!r}; add it to an entry for "
                             f"{recorded!r}")
    else:
        from itpo_wrap.offline.sb3 import load_sb3_base

        load_sb3_base(src, env_id=env_id)  # a weights-only file that names another env is refused


def record_policy_facts(name: str, policy_name: str, facts: dict[str, Any], root: str | Path | None = None) -> None:
    """Merge measured ``facts`` (e.g. ``{"critic_calibration": {...}}``) into an existing policy's record in
    ``entry.json`` and regenerate ``MODEL_CARD.md``; the checkpoint and other fields are untouched.

    :param name: the entry.
    :param policy_name: a policy the entry already has.
    :param facts: JSON-ready fields; ``file`` and ``kind`` cannot be changed this way.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    """
    base = zoo_path(root)
    entry = read_entry(name, base)
    if policy_name not in entry["policies"]:
        raise KeyError(f"zoo entry {name!r} has no policy {policy_name!r}; it has {sorted(entry['policies'])}")
    if {"file", "kind"} & set(facts):
        raise ValueError(f"record_policy_facts cannot change 'file' or 'kind' (got {sorted(facts)}); use add_policy")
    entry["policies"][policy_name].update(facts)
    _write_entry(base, name, entry)


def add_world_model(
    name: str, kind: str, file: str | Path, *, info: dict[str, Any] | None = None, root: str | Path | None = None,
) -> Path:
    """Copy a ``WorldModel`` bundle into an existing zoo entry as ``wm_<kind>.pt`` and record it.

    Checked first (:func:`itpo_wrap.zoo_files.check_world_model_for_entry`): the bundle must read cleanly,
    hold ``kind`` dynamics, name the entry's env if it names one, and match the widths and action Box of
    the entry's other bundles.

    The bundle should be stored without a critic: :meth:`ZooEntry.load_world_model` attaches the
    chosen policy's own. One with a critic is accepted (that critic is replaced at load time).

    :param name: the entry.
    :param kind: the dynamics kind, ``"diffusion"`` or ``"meanflow"`` (or ``"mlp"``).
    :param file: the bundle written by ``itpo train-world-model``.
    :param info: card facts: ``command``, ``wall_s``, ``size_mb``, ``eval`` (dict), ``notes``.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    :return: the entry folder.
    """
    if kind not in ("diffusion", "meanflow", "mlp"):
        raise ValueError(f"kind={kind!r}; choose 'diffusion', 'meanflow' or 'mlp'")
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"cannot add {str(src)!r} to the zoo: no such file")
    base = zoo_path(root)
    entry = read_entry(name, base)
    folder = base / name
    check_world_model_for_entry(src, kind, entry, folder)  # before the copy: a wrong bundle replaces nothing
    dest = folder / f"wm_{kind}.pt"
    if src.resolve() != dest.resolve():
        shutil.copyfile(src, dest)
    entry.setdefault("world_models", {})[kind] = {"file": dest.name, "size_mb": round(dest.stat().st_size / 1e6, 2),
                                                  **(info or {})}
    if not entry.get("world_model") or kind == "diffusion":
        entry["world_model"] = dest.name
    _write_entry(folder.parent, name, entry)
    return folder


def set_tuned_settings(name: str, kind: str, settings: dict[str, Any], *, note: str = "",
                       root: str | Path | None = None) -> None:
    """Record the ITPO settings tuned for an entry's ``kind`` world model (what ``itpo demo`` and
    :meth:`ZooEntry.adapt_config` use).

    :param name: the entry.
    :param kind: a world model the entry has.
    :param settings: ``AdaptConfig`` fields, e.g. ``{"step_size": 1e-4, "persistence": "reset_each_step"}``;
        validated by building an ``AdaptConfig`` from them.
    :param note: how they were chosen (grid, seeds, where the rows are).
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    """
    from itpo_wrap.config import AdaptConfig

    base = zoo_path(root)
    entry = read_entry(name, base)
    if kind not in entry.get("world_models", {}):
        raise KeyError(f"zoo entry {name!r} has no {kind!r} world model; it has {sorted(entry.get('world_models', {}))}")
    if "step_size" not in settings:
        raise ValueError(f"settings={settings!r} must include 'step_size' (the setting that always needs tuning)")
    fields = {f.name for f in dataclasses.fields(AdaptConfig)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"settings {unknown} are not AdaptConfig fields; choose from {sorted(fields)}")
    clean = AdaptConfig(**settings).to_dict()  # validates every value with AdaptConfig's own messages
    tuned = {k: clean[k] for k in settings}
    entry["world_models"][kind].update(tuned=tuned, tuned_step_size=float(tuned["step_size"]), tuned_note=note)
    _write_entry(base, name, entry)


def set_tuned_step_size(name: str, kind: str, step_size: float, *, note: str = "",
                        root: str | Path | None = None) -> None:
    """Record only a tuned step size: ``set_tuned_settings(name, kind, {"step_size": step_size})``.

    :param name: the entry.
    :param kind: a world model the entry has.
    :param step_size: the chosen ``AdaptConfig.step_size``.
    :param note: how it was chosen.
    :param root: the zoo folder (:func:`zoo_path` when ``None``).
    """
    set_tuned_settings(name, kind, {"step_size": step_size}, note=note, root=root)


def export_entry(name: str, dest: str | Path, *, policies: builtins.list[str], world_models: builtins.list[str],
                 root: str | Path | None = None) -> Path:
    """Write a slim, self-contained copy of an entry: only the named policies and world-model kinds.

    Every weight file is copied into the new entry folder, training logs are left behind, ``entry.json`` keeps every other recorded fact and ``MODEL_CARD.md`` is regenerated. This is
    how the package's demo entry (:data:`PACKAGED_ZOO`) is made from the full zoo.

    :param name: the entry to export.
    :param dest: the zoo folder to write into (the entry becomes ``<dest>/<name>``; replaced when present).
    :param policies: policy keys to keep; the first is the default unless the entry's default is kept.
    :param world_models: world-model kinds to keep (may be empty).
    :param root: the zoo folder to read from (:func:`zoo_path` when ``None``).
    :return: the new entry folder.
    """
    base = zoo_path(root)
    entry = read_entry(name, base)
    missing = [p for p in policies if p not in entry["policies"]] + \
        [k for k in world_models if k not in entry.get("world_models", {})]
    if not policies or missing:
        raise KeyError(f"cannot export {name!r}: {missing or 'no policies asked'}; it has policies "
                       f"{sorted(entry['policies'])} and world models {sorted(entry.get('world_models', {}))}")
    out = Path(dest) / name
    if out.resolve() == (base / name).resolve():
        raise ValueError(f"export destination {str(out)!r} is the entry itself; choose another folder")
    sources = {key: entry_file(base / name, entry["policies"][key].get("file"), f"policy {key!r}") for key in policies}
    for kind in world_models:  # every file resolved inside the entry before anything is removed or written
        entry_file(base / name, entry["world_models"][kind].get("file"), f"world model {kind!r}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    slim = {k: v for k, v in entry.items() if k not in ("policies", "world_models", "world_model")}
    slim["policies"] = {}
    for key in policies:
        spec = {k: v for k, v in entry["policies"][key].items() if k not in ("eval_curve", "train_log")}
        src = sources[key]
        spec["file"] = f"{key}{src.suffix or '.pt'}"
        shutil.copyfile(src, out / spec["file"])
        slim["policies"][key] = spec
    if slim.get("default_policy") not in policies:
        slim["default_policy"] = policies[0]
    slim["world_models"] = {}
    for kind in world_models:
        spec = dict(entry["world_models"][kind])
        shutil.copyfile(base / name / spec["file"], out / spec["file"])
        slim["world_models"][kind] = spec
    kept: dict[str, dict[str, Any]] = slim["world_models"]
    first: dict[str, Any] = kept.get("diffusion") or next(iter(kept.values()), {})
    slim["world_model"] = first.get("file")
    _write_entry(Path(dest), name, slim)
    return out


def model_card(entry: dict[str, Any]) -> str:
    """Render ``MODEL_CARD.md`` from an entry dict (so card and JSON never disagree)."""
    lines = [f"# {entry['name']}", "",
             f"- dataset: `{entry['dataset_id']}`", f"- env: `{entry['env_id']}`",
             f"- default policy: `{entry.get('default_policy')}`",
             f"- world model: {('`' + entry['world_model'] + '`') if entry.get('world_model') else 'none yet'}", "",
             "| policy | algorithm | updates | wall time | return (10 eps) | normalized score |",
             "|---|---|---|---|---|---|"]
    for key, p in entry["policies"].items():
        ev = p.get("eval", {})
        ret = f"{ev['return_mean']:.1f} ± {ev['return_std']:.1f}" if "return_mean" in ev else "-"
        score = f"{ev['score_mean']:.1f} ± {ev['score_std']:.1f}" if "score_mean" in ev else "-"
        wall = f"{p['wall_s'] / 60:.1f} min" if "wall_s" in p else "-"
        lines.append(f"| `{key}` (`{p['file']}`) | {p.get('algorithm', '-')} | {p.get('updates', '-')} | {wall} "
                     f"| {ret} | {score} |")
    lines += ["", "Scores: deterministic actions, `100 * (R - R_min) / (R_max - R_min)` with our own fixed reference "
              "returns: 100 = our own SAC expert, not D4RL's (do not compare with D4RL tables; both sets of "
              "references are in docs/datasets.md).", "", "## Load", "", "```python", "from itpo_wrap import zoo", "",
              f"entry = zoo.load({entry['name']!r})  # or policy='<name>' from the table", "env = entry.make_env()",
              "```", "", "## Remake", ""]
    for key, p in entry["policies"].items():
        lines += [f"`{key}`:", "", "```bash", p.get("command", "# command not recorded"), "```", ""]
        logs = [f"`{p[k]}` ({what})" for k, what in (("eval_curve", "every evaluation of the run"),
                                                      ("train_log", "losses and Q every few hundred updates")) if p.get(k)]
        if logs:
            lines += ["Logs: " + ", ".join(logs) + ".", ""]
        if p.get("notes"):
            lines += [str(p["notes"]), ""]
        cal = p.get("critic_calibration")
        if cal:
            lines += [f"Critic calibration (`itpo critic-calibration --entry {entry['name']} --policy {key}`): "
                      f"mean min-Q {cal['q_mean']:.1f} against the discounted return collected afterwards "
                      f"{cal['return_mean']:.1f} (ratio {cal['ratio']:.2f}, correlation {cal['correlation']:.2f}) "
                      f"over {cal['states']} states of {cal['episodes']} episodes.", ""]
    wms = entry.get("world_models", {})
    if wms:
        lines += ["## World models", "",
                  "Stored without a critic; `entry.load_world_model(kind)` attaches the loaded policy's own twin "
                  "critic.", "",
                  "| kind | file | size | training wall time | one-step RMSE (state std, held-out) |",
                  "|---|---|---|---|---|"]
        for kind, w in wms.items():
            ev = w.get("eval", {})
            rmse = f"{ev['one_step_rmse_state_std']:.3f}" if "one_step_rmse_state_std" in ev else "-"
            wall = f"{w['wall_s'] / 60:.1f} min" if "wall_s" in w else "-"
            lines.append(f"| {kind} | `{w['file']}` | {w.get('size_mb', '-')} MB | {wall} | {rmse} |")
        lines += [""]
        for kind, w in wms.items():
            lines += [f"`{kind}` world model:", "", "```bash", w.get("command", "# command not recorded"), "```", ""]
            tuned = tuned_settings_of(w)
            if tuned:
                shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in tuned.items())
                lines += [f"Tuned ITPO settings: {shown}. {w.get('tuned_note', '')}".strip(), ""]
    return "\n".join(lines)
