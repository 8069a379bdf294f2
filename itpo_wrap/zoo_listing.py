"""``itpo zoo list``: the zoo's entries as one table, read from ``entry.json`` files only (no weights load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from itpo_wrap import zoo

# the AdaptConfig fields worth a column's space, in the order a reader scans them
_SHOWN = (("step_size", "a"), ("steps", "E"), ("particles", "M"), ("horizon", "H"), ("persistence", ""))


def tuned_text(settings: dict[str, Any]) -> str:
    """``a=0.0003 E=5 M=8 H=5 reset_each_step`` from a tuned-settings dict (fields not tuned are left out,
    they take the ``AdaptConfig`` defaults).

    :param settings: a world model's ``tuned`` record from ``entry.json``.
    """
    parts = []
    for key, short in _SHOWN:
        if key in settings:
            value = settings[key]
            text = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"{short}={text}" if short else text)
    return " ".join(parts) if parts else "defaults"


def entry_rows(root: str | Path | None = None) -> list[dict[str, str]]:
    """One row of plain strings per entry: name, env, dataset, policies (default first, starred),
    world models with their sizes, tuned settings per world model.

    :param root: the zoo folder (:func:`itpo_wrap.zoo.zoo_path` when ``None``).
    """
    rows = []
    for name in zoo.list(root):
        entry = zoo.read_entry(name, root)
        default = entry.get("default_policy")
        policies = sorted(entry["policies"], key=lambda p: (p != default, p))
        wms = entry.get("world_models", {})
        rows.append({
            "entry": name,
            "env": str(entry.get("env_id", "")),
            "dataset": str(entry.get("dataset_id", "")),
            "policies": ", ".join(f"{p}*" if p == default else p for p in policies),
            "world models": ", ".join(f"{k} ({w.get('size_mb', '?')} MB)" for k, w in wms.items()) or "none",
            "tuned settings": "; ".join(f"{k}: {tuned_text(t)}" for k, w in wms.items() if (t := zoo.tuned_settings_of(w)))
                              or "none (AdaptConfig defaults, step size 1e-4)",
        })
    return rows


def entries_table(root: str | Path | None = None) -> Table:
    """:func:`entry_rows` as a ``rich`` table (``*`` marks each entry's default policy).

    :param root: the zoo folder (:func:`itpo_wrap.zoo.zoo_path` when ``None``).
    """
    rows = entry_rows(root)
    table = Table(caption="* the entry's default policy; `itpo zoo show <entry>` prints its model card")
    for col in ("entry", "env", "dataset", "policies", "world models", "tuned settings"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    if not rows:
        table.add_row("(no entries)", "", "", "", "", "")
    return table
