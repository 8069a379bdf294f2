"""``docs/results.json``: one machine-readable row per (dataset, policy, configuration, world model) evaluated
paired with its base on the evaluation seeds (issue 20, item 5).

    python benchmarks/results_json.py [--csv benchmarks/results/episodes.csv] [--out docs/results.json]

Fields: ``dataset, policy, config, world_model, n, base_mean, itpo_mean, gain, ci_low, ci_high, better,
worst_gain, worst_seed`` (95% t interval of the paired gain; ``better``: seeds where the wrapped policy
scored higher; ``worst_gain``: the single worst paired episode). ``config`` is ``"default"`` for the shipped
``AdaptConfig()`` defaults, ``"tuned"`` for the entry's recorded tuned settings, else a candidate name of
``benchmarks/safety_loeo.py`` or the row's settings label. Truncated episodes and critic swaps are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
import safety_loeo  # noqa: E402
import summarize  # noqa: E402

from itpo_wrap import AdaptConfig, zoo  # noqa: E402


def default_settings(kind: str) -> dict[str, Any]:
    """The row-key settings of ``AdaptConfig()`` (what ``run.py`` writes for the shipped defaults)."""
    d = AdaptConfig()
    argv = ["--entry", "x", "--method", "itpo", "--kind", kind, "--step-size", str(d.step_size), "--steps", str(d.steps),
            "--particles", str(d.particles), "--horizon", str(d.horizon), "--persistence", d.persistence,
            "--gate", d.gate, "--gate-z", str(d.gate_z), "--termination", d.termination]
    if d.max_drift is not None:
        argv += ["--max-drift", str(d.max_drift)]
    if d.max_action_change is not None:
        argv += ["--max-action-change", str(d.max_action_change)]
    if d.max_model_error is not None:
        argv += ["--max-model-error", str(d.max_model_error)]
    return run.itpo_grid(run.build_parser().parse_args(argv))[0][0]


def config_name(rec: dict[str, Any], tuned: dict[str, dict[str, Any]]) -> str:
    s = {k: v for k, v in rec["settings"].items() if k not in ("method", "kind", "tag")}
    if s == default_settings(rec["kind"]):
        return "default"
    if rec["kind"] in tuned and s.get("optimizer", "sgd") == "sgd":
        want, have = summarize.with_defaults(tuned[rec["kind"]]), summarize.with_defaults(s)
        if all(have.get(k) == v for k, v in want.items()) and not (set(s) - set(want) - {"optimizer", "discount"}):
            return "tuned"
    for name in safety_loeo.CANDIDATES:
        key = json.loads(safety_loeo._key(name, rec["kind"], None))
        if {k: v for k, v in key.items() if k not in ("method", "kind", "tag")} == s:
            return name
    return str(rec["config"])


def rows(csv_path: Path) -> list[dict[str, Any]]:
    out = []
    episodes = summarize.load(csv_path)
    base = summarize.group(episodes, "eval")
    base_key = run.settings_key("base", "", {})
    for rec in summarize.summary(episodes):
        if rec["method"] != "itpo" or "gain" not in rec or rec["settings"].get("max_steps") is not None \
                or "critic" in rec["settings"]:
            continue
        try:
            entry = zoo.load(rec["entry"], policy=rec["policy"])
            tuned = entry.tuned_settings if rec["policy"] == entry.policy_name else {}
        except (KeyError, ValueError):
            tuned = {}
        ref = base.get((rec["entry"], rec["policy"], base_key), {})
        seeds = sorted(set(rec["seed_scores"]) & set(ref))
        d = np.array([rec["seed_scores"][s] - float(ref[s]["score"]) for s in seeds])
        out.append({"dataset": rec["entry"], "policy": rec["policy"], "config": config_name(rec, tuned),
                    "world_model": rec["kind"], "n": rec["pairs"],
                    "base_mean": float(np.mean([float(ref[s]["score"]) for s in seeds])),
                    "itpo_mean": float(np.mean([rec["seed_scores"][s] for s in seeds])), "gain": rec["gain"],
                    "ci_low": rec["ci_low"], "ci_high": rec["ci_high"], "better": rec["wins"],
                    "worst_gain": float(d.min()), "worst_seed": int(seeds[int(d.argmin())]),
                    "settings": {k: v for k, v in rec["settings"].items() if k not in ("method", "kind")}})
    return out


#: the columns of the default-vs-tuned table: today's default, the round-1 default it replaced (issue 20,
#: kept as measured), the entry's tuned settings
COLUMNS = ("default", "safe-reset-z2", "tuned")


def markdown(result: list[dict[str, Any]], policy: str = "td3_bc") -> list[str]:
    """Default against the round-1 default and tuned, per dataset and world model, for one base policy."""
    lines = ["| dataset | world model | base | default: gain [95% CI], better/n, worst episode | round-1 default "
             "(safe-reset-z2) | tuned |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["world_model"]) for r in result if r["policy"] == policy})
    for dataset, kind in keys:
        cells, base = {}, ""
        for r in result:
            if (r["dataset"], r["world_model"], r["policy"]) == (dataset, kind, policy) and r["config"] in COLUMNS:
                cells[r["config"]] = (f"{r['gain']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}], {r['better']}/{r['n']}, "
                                      f"{r['worst_gain']:+.1f}")
                base = f"{r['base_mean']:.1f}"
        if cells:
            lines.append(f"| {dataset} | {kind} | {base} | " + " | ".join(cells.get(c, "") for c in COLUMNS) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=run.DEFAULT_OUT)
    p.add_argument("--out", default="docs/results.json")
    p.add_argument("--markdown", default=None, help="also write the default-vs-tuned table (TD3+BC) here")
    args = p.parse_args()
    result = rows(Path(args.csv))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(result)} rows -> {args.out}")
    if args.markdown:
        Path(args.markdown).write_text("\n".join(markdown(result)) + "\n")


if __name__ == "__main__":
    main()
