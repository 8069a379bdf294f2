"""The checkpoint formats the zoo reads: offline-policy checkpoints (:mod:`.offline_policy`), SB3 bases as
weights-only files (:mod:`.sb3_weights`) and SB3 models as base policies with their critics (:mod:`.sb3`).

Only readers live here; the lab (``itpo_lab.offline``) writes these files.
"""

from __future__ import annotations

from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.formats.sb3 import SB3Actor, SB3TwinCritic, load_sb3_base, load_sb3_model
from itpo_wrap.formats.sb3_weights import load_sb3_weights, warn_sb3_pickle

__all__ = [
    "SB3Actor",
    "SB3TwinCritic",
    "load_offline_policy",
    "load_sb3_base",
    "load_sb3_model",
    "load_sb3_weights",
    "warn_sb3_pickle",
]
