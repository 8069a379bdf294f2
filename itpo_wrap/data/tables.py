"""Render ``docs/datasets.md`` from the behaviour cards and collect summaries (no hand-typed numbers)."""

from __future__ import annotations

import json
from pathlib import Path

from itpo_wrap.data.collect import ENVS, LEVELS


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
        "itpo collect --env all --levels all --summary   # then: itpo datasets-table --out docs/datasets.md",
        "```",
        "",
        "Normalized score = 100 x (return - ref_min_score) / (ref_max_score - ref_min_score), D4RL's x100 scale",
        "(Minari's `get_normalized_score` is the same on a 0-1 scale). `ref_min_score` is the mean return of",
        "the `random` level's episodes, `ref_max_score` the mean return of the `expert` level's episodes; both",
        "are stored in every dataset of the env.",
        "",
        "## Behaviour policies (SB3 SAC, online, one torch thread)",
        "",
        "| env | steps trained | train wall time | expert: step, eval return | medium: step, eval return (fraction of expert) | command |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
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
            f"{sel['medium_return']:.0f} ({frac:.2f}{band}) | `{card['command']}` |"
        )
        summary_path = behavior_root / env / "datasets.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            for level in LEVELS:
                if level in summary:
                    rows.append((env, level, summary[level]))
    lines += [
        "",
        "Evaluation returns are 10 stochastic episodes per checkpoint (as the data is sampled); the full curves",
        "are in `policies/behavior/<env>/eval.csv`.",
        "",
        "## Datasets",
        "",
        "| dataset id | transitions | episodes | return (mean +- std) | normalized score | ref min / max | collect time |",
        "|---|---|---|---|---|---|---|",
    ]
    for _env, _level, r in rows:
        lines.append(
            f"| `{r['dataset_id']}` | {r['transitions']:,} | {r['episodes']:,} | {r['return_mean']:.1f} +- "
            f"{r['return_std']:.1f} | {r['normalized_score'] + 0.0 if abs(r['normalized_score']) >= 0.05 else 0.0:.1f} | {r['ref_min_score']:.1f} / {r['ref_max_score']:.1f} | "
            f"{r['seconds']:.0f} s |"
        )
    lines += [
        "",
        "Command per env: `itpo collect --env <env> --levels all --summary` (add `--overwrite` to remake).",
        "Collect times are wall seconds on this project's 2-core CI-class machine while other jobs shared the cores",
        "(HalfCheetah's ran beside two SAC trainings); the levels' CPU cost is about 3.5 min per env in all.",
        "`medium-replay` and `medium-expert` take ~0 s because they reuse the committed buffer and the other levels.",
        "",
    ]
    return "\n".join(lines)
