"""Where the lab's checked-in artefacts live: the source checkout's ``policies/`` folder.

The library has one zoo root (``itpo_wrap.zoo.zoo_path``: ``--zoo-dir``, else ``$ITPO_ZOO_PATH``, else the
checkout's ``policies/zoo``); the lab's behaviour policies, dataset summaries and settings checks are files
of the checkout itself, so they need no environment variable of their own.
"""

from __future__ import annotations

from pathlib import Path


def policies_root() -> Path:
    """The checkout's ``policies/`` folder (behaviour policies, dataset summaries, settings checks, the zoo):
    next to the package in a source checkout (an editable install, the lab's usual case), else ``./policies``."""
    beside = Path(__file__).resolve().parent.parent / "policies"
    return beside if beside.is_dir() else Path("policies")
