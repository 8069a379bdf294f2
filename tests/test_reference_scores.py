"""Reference scores are fixed constants: the table, the committed summaries and the zoo agree, and
``collect`` writes the constants whatever its budget."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from itpo_lab.data.collect import ENVS, CollectConfig, collect
from itpo_lab.data.reference import (
    REFERENCE_SCORES,
    ReferenceScores,
    normalization_note,
    reference_scores,
)
from itpo_lab.paths import policies_root
from itpo_wrap.data import load_dataset

BEHAVIOR = policies_root() / "behavior"


def test_table_covers_exactly_the_recipe_envs() -> None:
    assert set(REFERENCE_SCORES) == set(ENVS) == {"halfcheetah", "hopper", "walker2d"}
    assert all(isinstance(ref, ReferenceScores) for ref in REFERENCE_SCORES.values())
    for env, ref in REFERENCE_SCORES.items():
        assert (ref.env, ref.env_id) == (env, ENVS[env])
        assert reference_scores(ref.env_id) is ref  # the Gymnasium id finds it too
    with pytest.raises(TypeError):
        REFERENCE_SCORES["ant"] = REFERENCE_SCORES["hopper"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REFERENCE_SCORES["hopper"].ref_max_score = 2684.5  # type: ignore[misc]


@pytest.mark.parametrize("env", sorted(REFERENCE_SCORES))
def test_table_equals_the_committed_datasets_summary(env: str) -> None:
    ref = reference_scores(env)
    summary = json.loads((BEHAVIOR / env / "datasets.json").read_text())
    for level, row in summary.items():
        assert (row["ref_min_score"], row["ref_max_score"]) == ref.scores, f"{env}/{level}"
    # The constants are the random and expert levels' measured means, over the episodes the table names.
    assert summary["random"]["return_mean"] == ref.ref_min_score
    assert summary["expert"]["return_mean"] == ref.ref_max_score
    assert (summary["random"]["episodes"], summary["random"]["transitions"]) == (
        ref.random_episodes, ref.random_transitions)
    assert (summary["expert"]["episodes"], summary["expert"]["transitions"]) == (
        ref.expert_episodes, ref.expert_transitions)
    card = json.loads((BEHAVIOR / env / "card.json").read_text())
    assert card["selection"]["expert_step"] == ref.expert_step


def test_table_equals_every_zoo_entry() -> None:
    entries = sorted((policies_root() / "zoo").glob("*/entry.json"))
    assert entries, "no zoo entries found"
    for path in entries:
        entry = json.loads(path.read_text())
        env = entry["dataset_id"].split("/")[1]  # itpo/<env>/<level>-v0
        ref = reference_scores(env)
        assert (entry["ref_min_score"], entry["ref_max_score"]) == ref.scores, path.parent.name
        assert entry["env_id"] == ref.env_id, path.parent.name


def test_d4rl_references_stand_beside_ours() -> None:
    # d4rl/infos.py, REF_MIN_SCORE / REF_MAX_SCORE of '<env>-random-v0' (also used for v1/v2)
    d4rl = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}
    for env, (low, high) in d4rl.items():
        ref = reference_scores(env)
        assert (ref.d4rl_ref_min_score, ref.d4rl_ref_max_score) == (low, high)
        assert ref.ref_max_score < ref.d4rl_ref_max_score  # our CPU-budget expert is weaker than D4RL's
    note = normalization_note()
    assert "our own" in note and "do not compare" in note and "D4RL tables" in note
    assert "2781.9" in note and "3234.3" in note and "\n" not in note


def test_unknown_env_names_it_and_the_known_ones() -> None:
    with pytest.raises(KeyError) as err:
        reference_scores("ant")
    message = str(err.value)
    assert "'ant'" in message and "halfcheetah" in message and "hopper" in message and "walker2d" in message
    assert "itpo_lab/data/reference.py" in message


def test_reference_scores_reject_an_empty_scale() -> None:
    ref = reference_scores("hopper")
    with pytest.raises(ValueError, match="must exceed"):
        dataclasses.replace(ref, ref_max_score=ref.ref_min_score)


def test_collect_writes_the_fixed_scores_not_the_measured_means(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny budget measures other random means than the constants; the datasets must still store the constants
    (the old ``collect`` recomputed them from the episodes it made, which this test catches)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ref = reference_scores("hopper")
    logged: list[str] = []
    summary = collect(CollectConfig(env="hopper", levels=("random", "medium"), transitions=300, seed=0),
                      log=logged.append)
    assert set(summary) == {"random", "medium"}
    for level, row in summary.items():
        assert (row["ref_min_score"], row["ref_max_score"]) == ref.scores, level
        data = load_dataset(row["dataset_id"])
        assert (data.ref_min_score, data.ref_max_score) == ref.scores, level
        # the summary's score is on the fixed scale too
        expected = 100 * (data.episode_returns() - ref.ref_min_score) / (ref.ref_max_score - ref.ref_min_score)
        assert row["normalized_score"] == pytest.approx(float(expected.mean()), rel=1e-5), level
    measured = float(load_dataset(summary["random"]["dataset_id"]).episode_returns().mean())
    assert not np.isclose(measured, ref.ref_min_score, rtol=1e-3), "the budget must measure another mean"
    assert any("measured mean return" in line and "fixed ref_min_score 17.722" in line for line in logged)
    assert not any("WARNING" in line for line in logged)  # not the measuring run's settings: no alarm
