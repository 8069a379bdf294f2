"""Which files a zoo entry may open, and what may be added to one.

An ``entry.json`` is data, possibly from someone else: the zoo never follows it outside the entry's
folder (no ``..``, no absolute path, no link out) and never loads a pickle from it (SB3 bases are
weights-only files, :mod:`itpo_wrap.formats.sb3_weights`). What is added to an entry is checked
against the entry before it is copied in: a world model for another env, or of another dynamics
kind than its slot, never replaces a good one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from itpo_wrap.pairing import compare, payload_facts

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_entry_name(name: str) -> None:
    """Refuse an entry name that is not a plain folder name (``hopper-medium``), e.g. ``../x`` or ``a/b``.

    :param name: the entry name as given.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"zoo entry name {name!r} is not a plain folder name (letters, digits, '-', '_', '.'); "
                         "pass a name from itpo_wrap.zoo.list()")


def entry_file(folder: Path, recorded: Any, what: str) -> Path:
    """The file ``entry.json`` records for ``what``, resolved inside the entry ``folder``; anything that would
    leave it (absolute path, ``..``, a symlink pointing out) is refused before it is opened.

    :param folder: the entry folder.
    :param recorded: the ``"file"`` value from ``entry.json``.
    :param what: what the file is, for messages (``"policy 'td3_bc'"``).
    """
    if not isinstance(recorded, str) or not recorded.strip():
        raise ValueError(f"zoo entry {folder.name!r}: {what} records file {recorded!r}; expected a file name inside "
                         "the entry folder")
    rel = Path(recorded)
    inside = folder.resolve()
    path = (folder / rel).resolve()
    if rel.is_absolute() or ".." in rel.parts or not path.is_relative_to(inside):
        raise ValueError(f"zoo entry {folder.name!r}: {what} points at {recorded!r}, outside the entry folder "
                         f"{str(folder)!r}; a zoo entry only opens its own files: copy the file into the folder "
                         "and record its name")
    return path


def refuse_zip_base(path: Path, what: str) -> None:
    """The zoo never loads an SB3 ``.zip`` (a pickle, which runs code when loaded): name the conversion.

    :param path: the recorded file.
    :param what: the policy, for messages.
    """
    if path.suffix == ".zip":
        raise ValueError(f"{what} is an SB3 .zip ({str(path)!r}), a pickle that runs code when loaded, so the zoo "
                         "refuses it; convert it once from a source you trust with "
                         "itpo_lab.offline.sb3_weights.convert_sb3_zip(zip, 'name.pt', env_id=...) and record the .pt")


def check_world_model_for_entry(src: Path, kind: str, entry: dict[str, Any], folder: Path) -> None:
    """Refuse a bundle that does not belong in ``entry``'s ``kind`` slot, before anything is copied: it must
    read cleanly (CRCs, digest), hold ``kind`` dynamics, name the entry's env (if it names one) and
    match the widths and action Box of the bundles already in the entry.

    :param src: the bundle to add.
    :param kind: the slot (``"diffusion"``, ``"meanflow"``, ``"mlp"``).
    :param entry: the parsed ``entry.json``.
    :param folder: the entry folder.
    """
    from itpo_wrap.world_model.persistence import read_payload

    new = payload_facts(read_payload(src))
    fix = "add the bundle trained on this entry's dataset, under the kind of its dynamics"
    compare(f"the bundle {str(src)!r}", new, f"the {kind!r} slot of zoo entry {folder.name!r}",
            {"env_id": entry.get("env_id"), "kind": kind}, fix)
    for other, record in entry.get("world_models", {}).items():
        try:
            path = entry_file(folder, record.get("file"), f"world model {other!r}")
            old = payload_facts(read_payload(path)) if path.is_file() else {}
        except ValueError:  # a damaged bundle there is being replaced: nothing to compare with
            continue
        old.pop("kind", None)
        compare(f"the bundle {str(src)!r}", {k: v for k, v in new.items() if k != "kind"},
                f"the entry's {other!r} bundle ({path.name})", old, fix)
