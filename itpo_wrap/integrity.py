"""Integrity of the weight files this library writes and reads: nothing corrupt loads, nothing runs.

Every file here is a ``torch.save`` zip archive of plain values and tensors, read with
``torch.load(weights_only=True)``. Two checks sit in front of that read, because torch itself
checks neither (a bundle with 4 KiB of a tensor record overwritten loads, and the wrapper acts on
the garbage):

- the zip's own CRC-32 of every record, which torch writes but never verifies on read: catches
  corruption of any file, including ones written before digests existed (the shipped zoo);
- a SHA-256 digest of the payload's tensors and values, stored in the payload by the writers of
  this library (:func:`stamp`) and recomputed on load (:func:`verify`): catches a payload changed
  and re-zipped with fresh CRCs, and says which file is corrupt.

A payload that needs anything beyond tensors and plain values is refused with a message that
does not suggest ``weights_only=False``: such a file can run code and is never loaded here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from typing import Any

import torch

DIGEST_KEY = "digest"
_ALGORITHM = "sha256"


def check_archive(path: str | os.PathLike[str], what: str = "weights file", writer: str = "this library") -> None:
    """Refuse a file that is not a complete zip archive or whose records fail their CRC-32.

    :param path: a file written by ``torch.save``.
    :param what: what the file should be, for messages.
    :param writer: the function that writes such files, for messages.
    :raises ValueError: naming the file (``"corrupt: CRC mismatch in <file> ..."`` for a damaged record).
    """
    name = os.fspath(path)
    try:  # is_zipfile itself raises on some damaged end records (a multi-disk marker, say)
        complete = zipfile.is_zipfile(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ValueError(f"corrupt: {name!r} is a damaged archive ({type(err).__name__}: {err}); restore the file "
                         "from its source or re-save it") from None
    if not complete:
        raise ValueError(f"{name!r} is not a readable {what}: it is not a complete torch archive (truncated?), so "
                         f"it is corrupt or was not written by {writer}")
    try:
        with zipfile.ZipFile(name) as archive:
            bad = archive.testzip()  # reads every record and compares its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise ValueError(f"corrupt: {name!r} is a damaged archive ({type(err).__name__}: {err}); restore the file "
                         "from its source or re-save it") from None
    if bad is not None:
        raise ValueError(f"corrupt: CRC mismatch in {name!r} (record {bad!r}); the file was damaged after it was "
                         "written: restore it from its source or re-save it")


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and plain value of ``payload``, in key order.

    The stored digest itself is left out; tuples and lists hash alike (a save/load round trip may
    change one into the other), so the digest depends on the content only.

    :param payload: the dict a writer passes to ``torch.save``.
    """
    h = hashlib.new(_ALGORITHM)
    _feed(h, "", {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def stamp(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its digest added under ``"digest"`` (what :func:`verify` checks on load).

    :param payload: the dict about to be saved.
    """
    return {**payload, DIGEST_KEY: {"algorithm": _ALGORITHM, "value": payload_digest(payload)}}


def verify(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Recompute a stamped payload's digest and refuse a mismatch; payloads without one pass (older files,
    which :func:`check_archive` still covers).

    :param payload: what ``torch.load`` returned.
    :param path: the file, named in the error.
    :raises ValueError: ``"corrupt: digest mismatch in <file>"``.
    """
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        return
    if not isinstance(stored, dict) or stored.get("algorithm") != _ALGORITHM or not isinstance(stored.get("value"), str):
        raise ValueError(f"corrupt: {os.fspath(path)!r} has a malformed digest record {stored!r}; restore the file "
                         "from its source or re-save it")
    if payload_digest(payload) != stored["value"]:
        raise ValueError(f"corrupt: digest mismatch in {os.fspath(path)!r}: its tensors or settings changed after "
                         "it was written; restore the file from its source or re-save it")


def load_checked(path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *, what: str,
                 writer: str) -> Any:
    """:func:`check_archive`, then ``torch.load(weights_only=True)``, then :func:`verify`.

    :param path: the file.
    :param map_location: device for the tensors.
    :param what: what the file should be, for messages (``"world model bundle"``).
    :param writer: the function that writes such files, for messages (``"WorldModel.save"``).
    :raises ValueError: for a corrupt file, or one that holds pickled objects (never loaded: they could run code).
    """
    name = os.fspath(path)
    check_archive(name, what, writer)
    try:
        payload = torch.load(name, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False; keep only its line naming the refused object
        lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        first = lines[0].strip() if lines else type(err).__name__
        raise ValueError(f"refused: {name!r} holds pickled Python objects besides tensors ({first}); a {what} has "
                         "only tensors and plain values, and a pickle can run code, so it is never loaded here. "
                         f"Re-save it with {writer} from a source you trust") from None
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise ValueError(f"{name!r} is not a readable {what} ({type(err).__name__}: {err}); it is corrupt or was "
                         f"not written by {writer}") from err
    if isinstance(payload, dict):
        verify(payload, name)
    return payload


def _feed(h: Any, key: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}:tensor:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"{key}:dict:{len(value)}:".encode())
        for k in sorted(value, key=str):
            _feed(h, f"{key}/{k}", value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"{key}:list:{len(value)}:".encode())
        for i, v in enumerate(value):
            _feed(h, f"{key}[{i}]", v)
    else:
        h.update(f"{key}:{json.dumps(value, default=repr)}:".encode())
