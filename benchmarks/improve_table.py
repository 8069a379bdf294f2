"""Issue 24's table: base, improved (``itpo improve``, no adaptation), ITPO on the base and ITPO on the
improved policy, each paired with the TD3+BC base on the evaluation seeds.

    python benchmarks/improve_table.py [--csv benchmarks/results/episodes.csv] [--markdown docs/improve_eval.md]
                                       [--into docs/improve.md]

``--into`` fills the tables that ``docs/improve.md`` quotes between its ``<!-- round1 table ... -->`` and
``<!-- round2 table ... -->`` markers, leaving its prose alone.

Round 2 (the real-env check, policy ``improved_env``): a second table, one row per ``result.json`` copied into
``benchmarks/results/improve_env/<entry>.json``. Where the check refused, ``itpo improve`` returns the base
itself: that cell is the base, gain 0.0 on every seed by construction, and says so. Round 3 (distillation,
policy ``distilled``, ``itpo-lab distill``): the same, from ``benchmarks/results/distill/<entry>.json``, beside
round 2's policy.

Every cell is the mean paired gain over the **base** policy (normalized points), its 95% t interval and the
seeds it won, over the seeds both rows have; ITPO rows are the shipped defaults (``AdaptConfig()``,
MeanFlow; the diffusion model on the random level, whose entries ship no MeanFlow model). An entry with no ``improved`` rows is left out (its improvement was refused or not run).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_json  # noqa: E402
import run  # noqa: E402
import summarize  # noqa: E402

Column = tuple[str, str, str]
"""``(label, policy, method)``: a table column, the rows of ``policy`` run with ``method`` (``base`` or ``itpo``)."""
ROUND1: tuple[Column, ...] = (("improved", "improved", "base"), ("ITPO on base", "td3_bc", "itpo"),
                              ("ITPO on improved", "improved", "itpo"))
ROUND2: tuple[Column, ...] = (("improved_env", "improved_env", "base"), ("ITPO on base", "td3_bc", "itpo"),
                              ("ITPO on improved_env", "improved_env", "itpo"))
ROUND3: tuple[Column, ...] = (("distilled", "distilled", "base"), ("improved_env", "improved_env", "base"),
                              ("ITPO on base", "td3_bc", "itpo"))
KINDS = ("meanflow", "diffusion")


def _paired(ref: dict[int, float], other: dict[int, float]) -> dict[str, Any] | None:
    seeds = sorted(set(ref) & set(other))
    if len(seeds) < 2:
        return None
    d = np.array([other[s] - ref[s] for s in seeds])
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"n": len(d), "gain": float(d.mean()), "ci_low": float(d.mean()) - half,
            "ci_high": float(d.mean()) + half, "better": int((d > 0).sum()), "mean": float(np.mean([other[s] for s in seeds]))}


def table(csv_path: Path, base_policy: str = "td3_bc", kinds: tuple[str, ...] = KINDS,
          columns: tuple[Column, ...] = ROUND1, entries: list[str] | None = None) -> list[dict[str, Any]]:
    """Per entry of ``entries`` (default: those with rows of the first column's policy): the base's mean, and
    every column paired with the base.

    The ITPO columns use the first of ``kinds`` with default ITPO rows on the entry's base: MeanFlow where the
    entry has it, the diffusion model for the random level (whose entries ship no MeanFlow model)."""
    episodes = summarize.load(csv_path)
    groups = summarize.group(episodes, "eval")
    base_key = run.settings_key("base", "", {})
    defaults = {k: results_json.default_settings(k) for k in kinds}

    def scores(entry: str, policy: str, method: str, kind: str = "") -> dict[int, float]:
        for (e, p, key), by_seed in groups.items():
            if (e, p) != (entry, policy):
                continue
            if method == "base" and key == base_key:
                return {int(s): float(r["score"]) for s, r in by_seed.items()}
            settings = json.loads(key)
            if method == "itpo" and settings.get("method") == "itpo" and settings.get("kind") == kind and \
                    {k: v for k, v in settings.items() if k not in ("method", "kind", "tag")} == defaults[kind]:
                return {int(s): float(r["score"]) for s, r in by_seed.items()}
        return {}

    out = []
    for entry in entries if entries is not None else sorted({e for e, p, _ in groups if p == columns[0][1]}):
        ref = scores(entry, base_policy, "base")
        kind = next((k for k in kinds if scores(entry, base_policy, "itpo", k)), kinds[0])
        row: dict[str, Any] = {"dataset": entry, "base": float(np.mean(list(ref.values()))) if ref else None, "ref": ref,
                               "kind": kind}
        for label, policy, method in columns:
            row[label] = _paired(ref, scores(entry, policy, method, kind))
        out.append(row)
    return out


def table_checked(csv_path: Path, results: Path, columns: tuple[Column, ...] = ROUND2,
                  base_policy: str = "td3_bc") -> list[dict[str, Any]]:
    """Rows of a policy chosen by the real-env check (round 2: ``itpo improve``'s ``improved_env``; round 3:
    ``itpo-lab distill``'s ``distilled``): one per result JSON in ``results``. Where the check refused, the
    command returns the base itself: its column is the base (gain 0.0 on every seed by construction, said so),
    and ITPO on it is ITPO on the base."""
    full = {label: (policy, method) for label, policy, method in columns}
    extra = () if "ITPO on base" in full else (("ITPO on base", base_policy, "itpo"),)
    paths = sorted(results.glob("*.json"))
    by_entry = {r["dataset"]: r for r in table(csv_path, base_policy, columns=(*columns, *extra),
                                                entries=[p.stem for p in paths])}
    out = []
    for path in paths:
        result = json.loads(path.read_text())
        row = by_entry[path.stem]
        row["accepted"] = result["accepted"]
        row["chosen"] = (result.get("field") or {}).get("chosen", result.get("chosen", 0))
        if not result["accepted"]:
            ref = row.get("ref") or {}
            row[columns[0][0]] = {"n": len(ref), "gain": 0.0, "ci_low": 0.0, "ci_high": 0.0, "better": 0,
                                  "refused": True} if ref else None
            row.update({label: row.get("ITPO on base") for label, (policy, method) in full.items()
                        if policy == columns[0][1] and method == "itpo"})
        out.append(row)
    return out


def markdown_checked(rows: list[dict[str, Any]], columns: tuple[Column, ...] = ROUND2) -> list[str]:
    labels = [label for label, _, _ in columns]
    lines = ["| dataset | base | kept step (env check, seeds 0-9) | " +
             " | ".join(f"{c}: gain [95% CI], better/n" for c in labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for r in rows:
        step = f"step {r['chosen']}" if r.get("accepted") else "refused: the base"
        cells = []
        for c in labels:
            cell = r.get(c)
            text = (f"{cell['gain']:+.1f} [{cell['ci_low']:+.1f}, {cell['ci_high']:+.1f}], {cell['better']}/{cell['n']}"
                    if cell else "(not run)")
            cells.append(text + (" (the base)" if cell and cell.get("refused") else ""))
        base = f"{r['base']:.1f}" if r.get("base") is not None else "-"
        label = r["dataset"] + (f" ({r['kind']})" if r.get("kind", KINDS[0]) != KINDS[0] else "")
        lines.append(f"| {label} | {base} | {step} | " + " | ".join(cells) + " |")
    full = [r for r in rows if all(r.get(c) for c in labels[:2])]
    # The targets are on the nine medium-level datasets; the random level (diffusion) gets its own mean
    # beside them, never folded in silently.
    nine = [r for r in full if not r["dataset"].endswith("-random")]
    for name, group in [(f"the {len(nine)} non-random rows", nine), (f"all {len(full)} rows", full)][:1 + (nine != full)]:
        if group:
            means = [f"{np.mean([r[c]['gain'] for r in group]):+.1f}" if all(r.get(c) for r in group) else ""
                     for c in labels]
            lines.append(f"| mean of {name} | | | " + " | ".join(means) + " |")
    return lines


def markdown(rows: list[dict[str, Any]], columns: tuple[Column, ...] = ROUND1) -> list[str]:
    labels = [label for label, _, _ in columns]
    lines = ["| dataset | base | " + " | ".join(f"{c}: gain [95% CI], better/n" for c in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for r in rows:
        cells = [f"{c['gain']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}], {c['better']}/{c['n']}" if c else "(not run)"
                 for c in (r[k] for k in labels)]
        lines.append(f"| {r['dataset']} | {r['base']:.1f} | " + " | ".join(cells) + " |")
    full = [r for r in rows if all(r[c] for c in labels)]
    if full:
        means = [np.mean([r[c]["gain"] for r in full]) for c in labels]
        lines.append(f"| mean of the {len(full)} complete rows | | " + " | ".join(f"{m:+.1f}" for m in means) + " |")
    return lines


def into_markers(text: str, tables: dict[str, list[str]]) -> str:
    """``text`` with each ``<!-- <name> table: ... -->`` ... ``<!-- /<name> -->`` block's body replaced by the
    named table (the hand-written prose around the blocks is kept as it is).

    :param text: a document holding every named block once.
    :param tables: block name (``round1``, ``round2``) -> the table's lines.
    """
    for name, lines in tables.items():
        found = re.search(rf"(<!-- {name} table:[^\n]*-->\n)(.*?)(<!-- /{name} -->)", text, flags=re.S)
        if found is None:
            raise ValueError(f"no <!-- {name} table: ... --> ... <!-- /{name} --> block to fill")
        text = text[:found.start(2)] + "\n".join(lines) + "\n" + text[found.end(2):]
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=run.DEFAULT_OUT)
    p.add_argument("--markdown", default=None)
    p.add_argument("--results", default="benchmarks/results/improve_env", help="round 2's result.json copies")
    p.add_argument("--distill-results", default="benchmarks/results/distill", help="round 3's result.json copies")
    p.add_argument("--into", default=None,
                   help="also fill the round1/round2/round3 table blocks of this document (docs/improve.md) in place")
    args = p.parse_args()
    tables = {"round1": markdown(table(Path(args.csv)))}
    text = "\n".join(tables["round1"]) + "\n"
    for name, results, columns, title in (
            ("round2", args.results, ROUND2, "Round 2, the real-env check (policy `improved_env`; where refused, the "
                                             "base itself)"),
            ("round3", args.distill_results, ROUND3, "Round 3, distillation (policy `distilled`, `itpo-lab distill`; "
                                                     "where refused, the base itself)")):
        rows = table_checked(Path(args.csv), Path(results), columns)
        if rows:
            tables[name] = markdown_checked(rows, columns)
            text += f"\n{title}:\n\n" + "\n".join(tables[name]) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.into:
        doc = Path(args.into)
        doc.write_text(into_markers(doc.read_text(), tables))
    print(text)


if __name__ == "__main__":
    main()
