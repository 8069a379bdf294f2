"""Writing the offline-policy checkpoint format: the writer lives beside the reader in the library
(:func:`itpo_wrap.formats.offline_policy.save_offline_policy`, which ``itpo improve`` also uses); re-exported
here for the trainers' final ``policy.pt``."""

from __future__ import annotations

from itpo_wrap.formats.offline_policy import save_offline_policy

__all__ = ["save_offline_policy"]
