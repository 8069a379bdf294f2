"""Where the zoo lives and what it holds, read from ``entry.json`` files alone (no weights load): the zoo
root (:func:`zoo_path`), its entries' names (:func:`list`, :func:`entry_name`), one parsed entry
(:func:`read_entry`) and a world model's tuned settings in it (:func:`tuned_settings_of`). The layout is
:mod:`itpo_wrap.zoo`'s docstring; everything here is re-exported there.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from pathlib import Path
from typing import Any

from itpo_wrap.zoo_files import check_entry_name

FORMAT = "itpo-zoo-entry"
FORMAT_VERSION = 1
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


def tuned_settings_of(wm: dict[str, Any]) -> dict[str, Any]:
    """A world model record's tuned ``AdaptConfig`` fields (older entries stored only ``tuned_step_size``).

    :param wm: one ``entry.json`` ``world_models`` record.
    """
    if "tuned" in wm:
        return dict(wm["tuned"])
    return {"step_size": float(wm["tuned_step_size"])} if "tuned_step_size" in wm else {}
