"""docs/datasets.md is generated from the committed behaviour artefacts, never typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itpo_lab.data.collect import ENVS, CollectConfig, collect
from itpo_lab.data.tables import datasets_markdown
from itpo_lab.paths import policies_root

REPO = Path(__file__).resolve().parent.parent


def test_docs_table_matches_committed_summaries() -> None:
    expected = datasets_markdown(policies_root() / "behavior")
    assert (REPO / "docs" / "datasets.md").read_text() == expected, (
        "docs/datasets.md is stale: run `itpo-lab datasets-table --out docs/datasets.md`"
    )


def test_every_env_has_its_behaviour_artefacts() -> None:
    for env in ENVS:
        d = policies_root() / "behavior" / env
        for name in ("expert.zip", "medium.zip", "medium_replay.npz", "card.json", "CARD.md", "datasets.json"):
            assert (d / name).exists(), f"{d / name} missing"


@pytest.mark.slow
@pytest.mark.parametrize("env", sorted(ENVS))
def test_full_regeneration_reproduces_the_committed_summary(env: str) -> None:
    """`itpo-lab collect` on this machine gives the numbers committed in datasets.json (about 4 CPU-min per env)."""
    committed = json.loads((policies_root() / "behavior" / env / "datasets.json").read_text())
    summary = collect(CollectConfig(env=env), log=lambda _: None)
    for level, row in committed.items():
        for key in ("transitions", "episodes", "return_mean", "return_std", "ref_min_score", "ref_max_score"):
            assert summary[level][key] == pytest.approx(row[key], rel=1e-9), f"{env}/{level}/{key}"
