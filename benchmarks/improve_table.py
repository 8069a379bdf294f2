"""Issue 24's table: base, improved (``itpo improve``, no adaptation), ITPO on the base and ITPO on the
improved policy, each paired with the TD3+BC base on the evaluation seeds.

    python benchmarks/improve_table.py [--csv benchmarks/results/episodes.csv] [--markdown docs/improve_eval.md]

Every cell is the mean paired gain over the **base** policy (normalized points), its 95% t interval and the
seeds it won, over the seeds both rows have; ITPO rows are the shipped defaults (``AdaptConfig()``,
MeanFlow). An entry with no ``improved`` rows is left out (its improvement was refused or not run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_json  # noqa: E402
import run  # noqa: E402
import summarize  # noqa: E402

COLUMNS = ("improved", "ITPO on base", "ITPO on improved")


def _paired(ref: dict[int, float], other: dict[int, float]) -> dict[str, Any] | None:
    seeds = sorted(set(ref) & set(other))
    if len(seeds) < 2:
        return None
    d = np.array([other[s] - ref[s] for s in seeds])
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"n": len(d), "gain": float(d.mean()), "ci_low": float(d.mean()) - half,
            "ci_high": float(d.mean()) + half, "better": int((d > 0).sum()), "mean": float(np.mean([other[s] for s in seeds]))}


def table(csv_path: Path, base_policy: str = "td3_bc", kind: str = "meanflow") -> list[dict[str, Any]]:
    episodes = summarize.load(csv_path)
    groups = summarize.group(episodes, "eval")
    base_key = run.settings_key("base", "", {})
    default = results_json.default_settings(kind)

    def scores(entry: str, policy: str, method: str) -> dict[int, float]:
        for (e, p, key), by_seed in groups.items():
            if (e, p) != (entry, policy):
                continue
            if method == "base" and key == base_key:
                return {int(s): float(r["score"]) for s, r in by_seed.items()}
            settings = json.loads(key)
            if method == "itpo" and settings.get("method") == "itpo" and settings.get("kind") == kind and \
                    {k: v for k, v in settings.items() if k not in ("method", "kind", "tag")} == default:
                return {int(s): float(r["score"]) for s, r in by_seed.items()}
        return {}

    out = []
    for entry in sorted({e for e, p, _ in groups if p == "improved"}):
        ref = scores(entry, base_policy, "base")
        row: dict[str, Any] = {"dataset": entry, "base": float(np.mean(list(ref.values()))) if ref else None}
        for col, (policy, method) in zip(COLUMNS, [("improved", "base"), (base_policy, "itpo"), ("improved", "itpo")],
                                         strict=True):
            row[col] = _paired(ref, scores(entry, policy, method))
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| dataset | base | " + " | ".join(f"{c}: gain [95% CI], better/n" for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [f"{c['gain']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}], {c['better']}/{c['n']}" if c else "(not run)"
                 for c in (r[k] for k in COLUMNS)]
        lines.append(f"| {r['dataset']} | {r['base']:.1f} | " + " | ".join(cells) + " |")
    full = [r for r in rows if all(r[c] for c in COLUMNS)]
    if full:
        means = [np.mean([r[c]["gain"] for r in full]) for c in COLUMNS]
        lines.append(f"| mean of the {len(full)} complete rows | | " + " | ".join(f"{m:+.1f}" for m in means) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=run.DEFAULT_OUT)
    p.add_argument("--markdown", default=None)
    args = p.parse_args()
    text = "\n".join(markdown(table(Path(args.csv)))) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
