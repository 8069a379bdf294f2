"""Writing the zoo (the lab's side of :mod:`itpo_wrap.zoo`, which only reads): adding base policies and
world models to an entry, recording measured facts and tuned settings, exporting a slim entry.

Every write rewrites ``entry.json`` atomically and regenerates ``MODEL_CARD.md`` from it
(:func:`itpo_lab.model_card.model_card`), so card and JSON never disagree. The layout is described in
:mod:`itpo_wrap.zoo`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from itpo_lab.model_card import model_card
from itpo_lab.offline.sb3_weights import convert_sb3_zip
from itpo_wrap.config import AdaptConfig
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.formats.sb3 import load_sb3_base
from itpo_wrap.world_model.kinds import kind_names
from itpo_wrap.zoo import FORMAT, FORMAT_VERSION, KINDS, read_entry, zoo_path
from itpo_wrap.zoo_files import check_entry_name, check_world_model_for_entry, entry_file


def write_entry(base: Path, name: str, entry: dict[str, Any]) -> None:
    """Write ``entry.json`` atomically (a running evaluation never reads half a file) and regenerate the card.

    :param base: the zoo folder.
    :param name: the entry (its folder under ``base``).
    :param entry: the whole entry, as :func:`~itpo_wrap.zoo.read_entry` returns it.
    """
    path = base / name / "entry.json"
    tmp = path.with_name("entry.json.tmp")
    tmp.write_text(json.dumps(entry, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    (base / name / "MODEL_CARD.md").write_text(model_card(entry))


def _entry_to_add_to(folder: Path, name: str, dataset_id: str, env_id: str) -> dict[str, Any]:
    """The parsed ``entry.json`` in ``folder``, which must be for ``dataset_id`` on ``env_id``, or a new empty
    entry (nothing is written here)."""
    path = folder / "entry.json"
    entry: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "dataset_id": dataset_id,
        "env_id": env_id, "default_policy": None, "world_model": None, "policies": {}}
    if (entry["dataset_id"], entry["env_id"]) != (dataset_id, env_id):
        raise ValueError(f"zoo entry {name!r} is for {entry['dataset_id']!r} on {entry['env_id']!r}, not "
                         f"{dataset_id!r} on {env_id!r}; use another entry name")
    return entry


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
    (:mod:`itpo_wrap.formats.sb3_weights`, written by :func:`itpo_lab.offline.sb3_weights.convert_sb3_zip`): the zoo holds no pickles, and the zip (trusted like code)
    is loaded once, here.

    :param name: the entry (``entry_name(dataset_id)`` for the standard layout).
    :param policy_name: the key inside the entry (``"rebrac"``, ``"td3_bc"``, ``"sac_expert"``).
    :param file: the checkpoint (``.pt`` for ``kind="offline"``; SB3 ``.zip`` or weights-only ``.pt`` for ``kind="sb3"``).
    :param kind: ``"offline"`` or ``"sb3"``.
    :param dataset_id: the dataset the entry belongs to.
    :param env_id: the Gymnasium id.
    :param info: card facts: ``algorithm``, ``updates``, ``wall_s``, ``provenance``, ``eval`` (dict), ``notes``.
    :param default: make this the entry's default policy (the first policy added always is).
    :param copy: copy ``file`` into the entry as ``<policy_name><suffix>``; ``False`` records a file already
        inside the entry folder by its relative path (a file outside is refused: entries open only their own
        files). An SB3 ``.zip`` is always stored converted.
    :param root: the zoo folder (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
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
    entry = _entry_to_add_to(folder, name, dataset_id, env_id)
    sb3_zip = kind == "sb3" and src.suffix == ".zip"
    if not sb3_zip:  # checked before anything is written: it loads, and names this env if it names one
        _check_policy_file(src, kind, env_id)
    stored = None if copy or sb3_zip else Path(os.path.relpath(src.resolve(), folder.resolve())).as_posix()
    if stored is not None:
        entry_file(folder, stored, f"policy {policy_name!r}")  # copy=False: only a file inside the entry
    folder.mkdir(parents=True, exist_ok=True)
    if sb3_zip:
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
    write_entry(folder.parent, name, entry)
    return folder


def _check_policy_file(src: Path, kind: str, env_id: str) -> None:
    """Load a policy file about to enter the zoo (CRCs, digest, format) and refuse one for another env."""
    if kind == "offline":
        recorded = load_offline_policy(src)[2].get("env_id")
        if recorded and recorded != env_id:
            raise ValueError(f"{str(src)!r} was trained on {recorded!r}, not {env_id!r}; add it to an entry for "
                             f"{recorded!r}")
    else:
        load_sb3_base(src, env_id=env_id)  # a weights-only file that names another env is refused


def record_policy_facts(name: str, policy_name: str, facts: dict[str, Any], root: str | Path | None = None) -> None:
    """Merge measured ``facts`` (e.g. ``{"critic_calibration": {...}}``) into an existing policy's record in
    ``entry.json`` and regenerate ``MODEL_CARD.md``; the checkpoint and other fields are untouched.

    :param name: the entry.
    :param policy_name: a policy the entry already has.
    :param facts: JSON-ready fields; ``file`` and ``kind`` cannot be changed this way.
    :param root: the zoo folder (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
    """
    base = zoo_path(root)
    entry = read_entry(name, base)
    if policy_name not in entry["policies"]:
        raise KeyError(f"zoo entry {name!r} has no policy {policy_name!r}; it has {sorted(entry['policies'])}")
    if {"file", "kind"} & set(facts):
        raise ValueError(f"record_policy_facts cannot change 'file' or 'kind' (got {sorted(facts)}); use add_policy")
    entry["policies"][policy_name].update(facts)
    write_entry(base, name, entry)


def add_world_model(
    name: str, kind: str, file: str | Path, *, info: dict[str, Any] | None = None, root: str | Path | None = None,
) -> Path:
    """Copy a ``WorldModel`` bundle into an existing zoo entry as ``wm_<kind>.pt`` and record it.

    Checked first (:func:`itpo_wrap.zoo_files.check_world_model_for_entry`): the bundle must read cleanly,
    hold ``kind`` dynamics, name the entry's env if it names one, and match the widths and action Box of
    the entry's other bundles.

    The bundle should be stored without a critic: :meth:`~itpo_wrap.zoo.ZooEntry.load_world_model` attaches the
    chosen policy's own. One with a critic is accepted (that critic is replaced at load time).

    :param name: the entry.
    :param kind: the dynamics kind, ``"diffusion"`` or ``"meanflow"`` (or ``"mlp"``).
    :param file: the bundle written by ``itpo train-world-model``.
    :param info: card facts: ``provenance``, ``wall_s``, ``size_mb``, ``eval`` (dict), ``notes``.
    :param root: the zoo folder (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
    :return: the entry folder.
    """
    if kind not in kind_names():
        raise ValueError(f"kind={kind!r}; choose one of {kind_names()}")
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
    write_entry(folder.parent, name, entry)
    return folder


def set_tuned_settings(name: str, kind: str, settings: dict[str, Any], *, note: str = "",
                       root: str | Path | None = None) -> None:
    """Record the ITPO settings tuned for an entry's ``kind`` world model (what ``itpo demo`` and
    :meth:`~itpo_wrap.zoo.ZooEntry.adapt_config` use).

    :param name: the entry.
    :param kind: a world model the entry has.
    :param settings: ``AdaptConfig`` fields, e.g. ``{"step_size": 1e-4, "persistence": "reset_each_step"}``;
        validated by building an ``AdaptConfig`` from them.
    :param note: how they were chosen (grid, seeds, where the rows are).
    :param root: the zoo folder (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
    """
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
    write_entry(base, name, entry)


def set_tuned_step_size(name: str, kind: str, step_size: float, *, note: str = "",
                        root: str | Path | None = None) -> None:
    """Record only a tuned step size: ``set_tuned_settings(name, kind, {"step_size": step_size})``.

    :param name: the entry.
    :param kind: a world model the entry has.
    :param step_size: the chosen ``AdaptConfig.step_size``.
    :param note: how it was chosen.
    :param root: the zoo folder (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
    """
    set_tuned_settings(name, kind, {"step_size": step_size}, note=note, root=root)


def export_entry(name: str, dest: str | Path, *, policies: list[str], world_models: list[str],
                 root: str | Path | None = None) -> Path:
    """Write a slim, self-contained copy of an entry: only the named policies and world-model kinds.

    Every weight file is copied into the new entry folder, training logs are left behind, ``entry.json`` keeps every other recorded fact and ``MODEL_CARD.md`` is regenerated. This is
    how the package's demo entry (:data:`~itpo_wrap.zoo.PACKAGED_ZOO`) is made from the full zoo.

    :param name: the entry to export.
    :param dest: the zoo folder to write into (the entry becomes ``<dest>/<name>``; replaced when present).
    :param policies: policy keys to keep; the first is the default unless the entry's default is kept.
    :param world_models: world-model kinds to keep (may be empty).
    :param root: the zoo folder to read from (:func:`~itpo_wrap.zoo.zoo_path` when ``None``).
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
        spec = {k: v for k, v in entry["policies"][key].items() if k not in ("metrics_log", "metrics_components")}
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
    write_entry(Path(dest), name, slim)
    return out
