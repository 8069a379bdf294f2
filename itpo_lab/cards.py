"""``itpo-lab render-cards``: the cards rendered from their JSON, the zoo's ``MODEL_CARD.md`` (from
``entry.json``: :func:`itpo_lab.model_card.model_card`) and the behaviour policies' ``CARD.md`` (from
``card.json``: :func:`itpo_lab.data.behavior.card_markdown`).

Every write through the lab renders them already; this renders them again after the renderers change (a
new card layout, a command rendered differently), and into another folder for ``make docs-check``.

    itpo-lab render-cards policies/zoo policies/behavior itpo_wrap/zoo_demo
    itpo-lab render-cards policies/zoo --out-dir /tmp/cards     # <out-dir>/<entry>/MODEL_CARD.md
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CARDS", "card_text", "render_cards"]

CARDS = {"entry.json": "MODEL_CARD.md", "card.json": "CARD.md"}
"""The card rendered from each JSON file, beside it."""


def card_text(path: str | Path) -> str:
    """The card of one ``entry.json`` or ``card.json``.

    :param path: the JSON file.
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if path.name == "entry.json":
        from itpo_lab.model_card import model_card

        return model_card(data)
    if path.name == "card.json":
        from itpo_lab.data.behavior import card_markdown

        return card_markdown(data)
    raise ValueError(f"{str(path)!r} is none of {sorted(CARDS)}")


def render_cards(paths: Iterable[str | Path], out_dir: str | Path | None = None) -> list[Path]:
    """Render the card of every ``entry.json`` and ``card.json`` under each of ``paths``.

    :param paths: folders searched recursively (``policies/zoo``, ``policies/behavior``).
    :param out_dir: write ``<out_dir>/<folder under the path>/<card>`` instead of beside each JSON file.
    :return: the cards written.
    """
    written = []
    for root in map(Path, paths):
        if not root.is_dir():
            raise FileNotFoundError(f"{str(root)!r} is not a folder of zoo entries or behaviour policies")
        for source in sorted(p for name in CARDS for p in root.rglob(name)):
            folder = source.parent if out_dir is None else Path(out_dir) / source.parent.relative_to(root)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / CARDS[source.name]
            target.write_text(card_text(source))
            written.append(target)
    return written
