"""Render ``docs/datasets.md`` from the behaviour cards and collect summaries (no hand-typed numbers)."""

from __future__ import annotations

import json
from pathlib import Path

from itpo_lab.data.collect import ENVS, LEVELS
from itpo_lab.data.reference import MEASURED_SEED, MEASURED_TRANSITIONS, REFERENCE_SCORES, normalization_note
from itpo_lab.remake import command_of


def datasets_markdown(behavior_root: Path) -> str:
    """Markdown with the behaviour-policy table and the env x level dataset table.

    :param behavior_root: ``policies/behavior``, holding ``<env>/card.json`` and ``<env>/datasets.json``.
    """
    lines = [
        "# Datasets",
        "",
        "D4RL-style Minari datasets generated locally from Gymnasium MuJoCo v5 envs (no download needed).",
        "Regenerate all of them, deterministically, from the committed behaviour policies with",
        "",
        "```bash",
        "itpo-lab collect --env all --levels all --summary   # then: itpo-lab datasets-table --out docs/datasets.md",
        "```",
        "",
        *reference_markdown(),
        "",
        *behaviour_markdown(behavior_root),
        "",
        "Evaluation returns are 10 stochastic episodes per checkpoint (as the data is sampled); the full curves",
        "are in `policies/behavior/<env>/eval.csv`.",
        "",
        *dataset_rows_markdown(behavior_root),
        "",
        "Command per env: `itpo-lab collect --env <env> --levels all --summary` (add `--overwrite` to remake).",
        "Collect times are wall seconds on this project's 2-core CI-class machine while other jobs shared the cores",
        "(HalfCheetah's ran beside two SAC trainings); the levels' CPU cost is about 3.5 min per env in all.",
        "`medium-replay` and `medium-expert` take ~0 s because they reuse the committed buffer and the other levels.",
        "",
    ]
    return "\n".join(lines)


def behaviour_markdown(behavior_root: Path) -> list[str]:
    """The behaviour-policy section: each env's online SAC run and the checkpoints its levels came from
    (``<env>/card.json``).

    :param behavior_root: ``policies/behavior``.
    """
    lines = [
        "## Behaviour policies (SB3 SAC, online, one torch thread)",
        "",
        "| env | steps trained | train wall time | expert: step, eval return | medium: step, eval return (fraction of expert) | command |",
        "|---|---|---|---|---|---|",
    ]
    for env, env_id in ENVS.items():
        card_path = behavior_root / env / "card.json"
        if not card_path.exists():
            lines.append(f"| {env_id} | not trained yet | | | | |")
            continue
        card = json.loads(card_path.read_text())
        sel = card["selection"]
        frac = sel["medium_return"] / sel["expert_return"]
        band = "" if sel["medium_in_band"] else ", outside the 1/3-1/2 band"
        lines.append(
            f"| {env_id} | {card['total_steps']:,} | {card['train_wall_s'] / 3600:.2f} h | "
            f"{sel['expert_step']:,}, {sel['expert_return']:.0f} | {sel['medium_step']:,}, "
            f"{sel['medium_return']:.0f} ({frac:.2f}{band}) | `{command_of(card)}` |"
        )
    return lines


def dataset_rows_markdown(behavior_root: Path) -> list[str]:
    """The dataset section: one row per collected level (``<env>/datasets.json``) of every env whose
    behaviour policy is trained.

    :param behavior_root: ``policies/behavior``.
    """
    lines = [
        "## Datasets",
        "",
        "| dataset id | transitions | episodes | return (mean +- std) | normalized score | ref min / max | collect time |",
        "|---|---|---|---|---|---|---|",
    ]
    for env in ENVS:
        summary_path = behavior_root / env / "datasets.json"
        if not (behavior_root / env / "card.json").exists() or not summary_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        for r in (summary[level] for level in LEVELS if level in summary):
            lines.append(
                f"| `{r['dataset_id']}` | {r['transitions']:,} | {r['episodes']:,} | {r['return_mean']:.1f} +- "
                f"{r['return_std']:.1f} | {r['normalized_score'] + 0.0 if abs(r['normalized_score']) >= 0.05 else 0.0:.1f} | {r['ref_min_score']:.1f} / {r['ref_max_score']:.1f} | "
                f"{r['seconds']:.0f} s |"
            )
    return lines


def reference_markdown() -> list[str]:
    """The reference-scores section: what 0 and 100 mean, ours beside D4RL's, from :mod:`itpo_lab.data.reference`."""
    lines = [
        "## Reference scores: 100 is our own expert, not D4RL's",
        "",
        normalization_note(),
        "",
        f"Measured once with `itpo-lab collect --env <env> --levels all --summary` at its defaults (seed {MEASURED_SEED}, "
        f">= {MEASURED_TRANSITIONS:,} transitions per sampled level): the `random` and `expert` levels' mean returns. "
        "`itpo-lab collect` writes these constants into every dataset of the env and never re-measures them (it logs "
        "the random/expert means of the episodes it generates as a check), so another `--transitions` or `--seed` "
        "does not move the scale. Minari's `get_normalized_score` is the same formula on a 0-1 scale.",
        "",
        "| env | ref_min_score (ours): uniform random | ref_max_score (ours): our SAC expert | D4RL random | D4RL expert |",
        "|---|---|---|---|---|",
    ]
    for ref in REFERENCE_SCORES.values():
        lines.append(
            f"| {ref.env_id} | {ref.ref_min_score:.1f} ({ref.random_episodes:,} episodes, "
            f"{ref.random_transitions:,} transitions) | {ref.ref_max_score:.1f} (`expert.zip`, "
            f"{ref.expert_step:,} training steps; {ref.expert_episodes:,} episodes, {ref.expert_transitions:,} "
            f"transitions) | {ref.d4rl_ref_min_score} | {ref.d4rl_ref_max_score} |"
        )
    return lines
