"""The base-policy trainers' old wide logs in the library's one layout (``itpo-lab convert-logs``, issue 22).

The trainers once wrote ``train.csv`` and ``eval.csv``: a column per key and the step in an ``update`` column
(``eval/``-prefixed score columns). They now write ``metrics.csv`` like every other loop
(:mod:`itpo_wrap.training.metrics`: ``component, step, wall_s, metric, value``). :func:`convert_folder` turns a
run folder, a settings check (``policies/checks/<check>/``) or a zoo entry (``<algorithm>_train.csv`` and
``<algorithm>_eval.csv`` into ``<algorithm>_metrics.csv``, its ``entry.json`` and ``MODEL_CARD.md`` repointed)
into that layout once. Every value is copied as written (no number is re-rounded), and the new file is read back
through :func:`~itpo_wrap.training.metrics.read_metrics` and compared with the wide rows before the old files go.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from itpo_wrap.training.metrics import LONG_HEADER, read_metrics

__all__ = ["convert_folder", "convert_wide_logs"]

# the wide files and the component their rows become, in the order a trainer logged them at one update
WIDE = {"train": "train.csv", "eval": "eval.csv"}


def _wide_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a wide log (a row cut short by a killed run is dropped, as a resume would drop it)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "update" not in reader.fieldnames:
            raise ValueError(f"{str(path)!r} is not a wide trainer log (no 'update' column: {reader.fieldnames})")
        return [r for r in reader if None not in r and None not in r.values()]


def _long_lines(component: str, rows: list[dict[str, str]]) -> list[list[str]]:
    """One ``metrics.csv`` line per non-empty value; ``wall_s`` and the values keep their written digits."""
    lines = []
    for row in rows:
        wall_s = row.get("wall_s") or "nan"  # a log without wall time says so rather than inventing one
        for column, value in row.items():
            if column not in ("update", "wall_s") and value != "":
                key = column.removeprefix(f"{component}/")  # eval/score_mean: component eval, key score_mean
                lines.append([component, row["update"], wall_s, f"{component}/{key}", value])
    return lines


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _check(out: Path, component: str, rows: list[dict[str, str]]) -> None:
    """``read_metrics`` gives back every number of the wide rows, and nothing else."""
    read = read_metrics(out, component)
    want = [{"step": int(float(r["update"])), "wall_s": float(r.get("wall_s") or "nan"),
             **{c.removeprefix(f"{component}/"): float(v) for c, v in r.items() if c not in ("update", "wall_s")
                and v != ""}} for r in rows]
    if len(read) != len(want) or any(a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a)
                                     for a, b in zip(read, want, strict=True)):
        raise ValueError(f"converting to {str(out)!r} would lose or change {component!r} rows (a step logged "
                         "twice?); the wide files are left as they were")


def convert_wide_logs(files: dict[str, Path], out: Path) -> Path:
    """Write the wide logs ``files`` (``{"train": path, "eval": path}``, either may be absent) as one ``out`` in
    the ``metrics.csv`` layout, check it (:func:`read_metrics` reads back the same numbers), then remove them.

    :param files: component -> wide file.
    :param out: the long file to write; an existing file is refused (nothing is merged into it).
    :return: ``out``.
    """
    if out.exists():
        raise FileExistsError(f"{str(out)!r} exists; convert into a new file (the wide logs are untouched)")
    rows = {c: _wide_rows(path) for c, path in files.items()}
    lines = [line for c in WIDE if c in rows for line in _long_lines(c, rows[c])]
    lines.sort(key=lambda line: float(line[1]))  # stable: at one update, train before eval, as logged
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows([LONG_HEADER, *lines])
    try:
        for component, wide in rows.items():
            _check(tmp, component, wide)
    except ValueError:
        tmp.unlink()
        raise
    tmp.replace(out)
    for path in files.values():
        path.unlink()
    return out


def _wide_groups(folder: Path) -> dict[str, dict[str, Path]]:
    """The wide logs in ``folder`` by file-name prefix: ``""`` for a run's or a check's ``train.csv`` /
    ``eval.csv``, ``"<algorithm>_"`` for a zoo entry's ``<algorithm>_train.csv`` / ``<algorithm>_eval.csv``."""
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.csv")):
        for component, name in WIDE.items():
            if path.name == name or path.name.endswith(f"_{name}"):
                groups.setdefault(path.name[: -len(name)], {})[component] = path
    return groups


def _policies_naming(folder: Path, files: dict[str, Path]) -> list[str]:
    """The policies of the zoo entry in ``folder`` (none outside the zoo) whose records name ``files``."""
    if not (folder / "entry.json").is_file():
        return []
    from itpo_wrap.zoo import read_entry

    names = {path.name for path in files.values()}
    policies = read_entry(folder.name, folder.parent)["policies"]
    return [key for key, p in policies.items() if {p.get("eval_curve"), p.get("train_log")} & names]


def convert_folder(folder: str | Path) -> list[Path]:
    """Convert every wide log in ``folder`` (:func:`convert_wide_logs`); in a zoo entry, each policy record naming
    them (``eval_curve``, ``train_log``) names the new file instead (``metrics_log``, ``metrics_components``) and
    ``MODEL_CARD.md`` is regenerated (:func:`set_policy_log`).

    :param folder: a trainer's run folder, a settings check or a zoo entry folder.
    :return: the files written (none when the folder holds no wide log).
    """

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is not a folder")
    written = []
    for prefix, files in _wide_groups(folder).items():
        policies = _policies_naming(folder, files)  # read before anything is written: a bad entry stops here
        out = convert_wide_logs(files, folder / f"{prefix}metrics.csv")
        written.append(out)
        components: list[str] = [c for c in ("eval", "train") if c in files]  # the order the card names them in
        for key in policies:
            set_policy_log(folder.name, key, out.name, components, root=folder.parent)
    return written


def set_policy_log(name: str, policy_name: str, metrics_log: str, components: list[str],
                   root: str | Path | None = None) -> None:
    """Point a policy's record at its log in the ``metrics.csv`` layout (``metrics_log``: the file in the entry
    folder; ``metrics_components``: ``eval``, ``train``, named by the card) in place of the old wide logs it named
    (``eval_curve``, ``train_log``; ``itpo-lab convert-logs``), and regenerate ``MODEL_CARD.md``. ``name``,
    ``policy_name`` and ``root`` as in :func:`itpo_lab.zoo_write.record_policy_facts`."""
    from itpo_lab.zoo_write import write_entry
    from itpo_wrap.zoo import read_entry, zoo_path

    base = zoo_path(root)
    entry = read_entry(name, base)
    if policy_name not in entry["policies"]:
        raise KeyError(f"zoo entry {name!r} has no policy {policy_name!r}; it has {sorted(entry['policies'])}")
    new = {"metrics_log": metrics_log, "metrics_components": list(components)}
    record: dict[str, Any] = {}
    for key, value in entry["policies"][policy_name].items():
        if key in ("eval_curve", "train_log", *new):  # the new fields take the first old one's place
            record.update(new)
        else:
            record[key] = value
    entry["policies"][policy_name] = {**record, **new}
    write_entry(base, name, entry)
