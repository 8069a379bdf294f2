"""What the zoo's docs lay out, read for both the tables (:mod:`itpo_lab.zoo_tables`) and the learning-curve
figure (:mod:`itpo_lab.zoo_curves`): the nine datasets (three envs by three levels), every entry's parsed
``entry.json``, and each dataset's own score (its behaviour policy's, from ``policies/behavior``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from itpo_lab.paths import policies_root
from itpo_wrap import zoo

ENVS = ("halfcheetah", "hopper", "walker2d")
LEVELS = ("medium", "medium-replay", "medium-expert")


def entries(root: Path) -> list[dict[str, Any]]:
    """Every entry's parsed ``entry.json`` in the zoo at ``root``, by name."""
    return [zoo.read_entry(name, root) for name in zoo.list(root)]


def dataset_score(env: str, level: str) -> str:
    """The dataset's own mean normalized score as the docs print it (``"-"`` when not recorded)."""
    path = policies_root() / "behavior" / env / "datasets.json"
    if not path.is_file():
        return "-"
    level_info = json.loads(path.read_text()).get(level, {})
    return f"{level_info['normalized_score']:.1f}" if "normalized_score" in level_info else "-"
