"""Turn the score experiment's per-episode rows into ``docs/results.md`` and two plots.

    .venv/bin/python benchmarks/summarize.py            # reads benchmarks/results/episodes.csv

Tables: per (entry, configuration) on the evaluation seeds, the mean and std of the normalized score and
the milliseconds per step; the paired difference against the base policy on the seeds both ran, with a
95% Student-t interval; the step-size grid on the tuning seeds. Plots: the gain per dataset with its
interval (``docs/gain_per_dataset.png``) and score against milliseconds per step (``docs/pareto.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from itpo_wrap.rollout import paired_difference

Row = dict[str, str]


def label(row: Row) -> str:
    """Short human name of a configuration."""
    s = json.loads(row["settings"])
    cap = s.pop("max_steps", None)
    tag = s.pop("tag", "")
    text = _label(s) + (f" T<={cap}" if cap is not None else "")
    return text.replace(" ", f"[{tag}] ", 1) if tag else text


def _label(s: dict[str, Any]) -> str:
    method = s.pop("method")
    kind = s.pop("kind")
    if method == "base":
        return "base"
    if method == "itpo":
        extra = [f"a={s['step_size']:g}", f"E={s['steps']}", f"M={s['particles']}", f"H={s['horizon']}"]
        if s.get("optimizer", "sgd") != "sgd":
            extra.append(s["optimizer"])
        if s.get("gate", "off") != "off":
            extra.append(f"gate={s['gate']}")
        if s.get("persistence", "persistent") != "persistent":
            extra.append(s["persistence"])
        if s.get("max_action_change") is not None:
            extra.append(f"trust={s['max_action_change']:g}")
        if "sampling_steps" in s:
            kind = f"{kind}-{s['sampler']}{s['sampling_steps']}"
        return f"itpo-{kind} " + " ".join(extra)
    if "sampling_steps" in s:
        kind = f"{kind}-{s['sampler']}{s['sampling_steps']}"
    return f"mppi-{kind} N={s['samples']}+{s['policy_samples']} it={s['iterations']}"


def load(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def group(rows: list[Row], split: str) -> dict[tuple[str, str, str], dict[int, Row]]:
    """``(entry, policy, settings) -> {seed: row}`` for one split (the last row wins on duplicates)."""
    out: dict[tuple[str, str, str], dict[int, Row]] = defaultdict(dict)
    for r in rows:
        if r["split"] == split:
            out[(r["entry"], r["policy"], r["settings"])][int(r["seed"])] = r
    return out


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    """One record per evaluated configuration: score stats, latency and the paired gain over base."""
    groups = group(rows, "eval")
    # a configuration pairs with the base run of the same episode cap (None: full episodes)
    base = {(e, p, json.loads(s).get("max_steps")): g for (e, p, s), g in groups.items()
            if json.loads(s)["method"] == "base"}
    out = []
    def order(item: tuple[tuple[str, str, str], dict[int, Row]]) -> tuple[str, str, bool, str]:
        (entry, policy, settings), _ = item
        return entry, policy, json.loads(settings)["method"] != "base", settings

    for (entry, policy, settings), by_seed in sorted(groups.items(), key=order):
        first = next(iter(by_seed.values()))
        scores = np.array([float(r["score"]) for r in by_seed.values()])
        rec: dict[str, Any] = {
            "entry": entry, "policy": policy, "config": label(first), "method": json.loads(settings)["method"],
            "kind": first["kind"], "n": len(scores), "score_mean": scores.mean(), "score_std": scores.std(),
            "ms_per_step": float(np.mean([float(r["ms_per_step"]) for r in by_seed.values()])),
            "fallbacks": sum(int(r["fallbacks"]) for r in by_seed.values())}
        ref = base.get((entry, policy, json.loads(settings).get("max_steps")))
        if ref is not None and rec["method"] != "base":
            seeds = sorted(set(by_seed) & set(ref))
            if len(seeds) >= 2:
                d = paired_difference([float(by_seed[s]["score"]) for s in seeds],
                                      [float(ref[s]["score"]) for s in seeds])
                rec.update(gain=d.mean, ci_low=d.ci_low, ci_high=d.ci_high, pairs=d.n, wins=d.wins)
        out.append(rec)
    return out


def tuning_table(rows: list[Row]) -> list[str]:
    groups = group(rows, "tune")
    if not groups:
        return ["No tuning runs yet."]
    lines = ["| entry | configuration | tuning seeds | score (mean ± std) | ms / step |", "|---|---|---|---|---|"]
    for (entry, _policy, _settings), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][0], label(
            next(iter(kv[1].values()))) != "base", kv[0][2])):
        first = next(iter(by_seed.values()))
        scores = np.array([float(r["score"]) for r in by_seed.values()])
        ms = np.mean([float(r["ms_per_step"]) for r in by_seed.values()])
        lines.append(f"| {entry} | {label(first)} | {','.join(map(str, sorted(by_seed)))} | "
                     f"{scores.mean():.1f} ± {scores.std():.1f} | {ms:.1f} |")
    return lines


def results_table(recs: list[dict[str, Any]]) -> list[str]:
    lines = ["| entry | base policy | configuration | episodes | score (mean ± std) | paired gain [95% CI] | wins "
             "| ms / step | fallbacks |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        gain = (f"{r['gain']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" if "gain" in r else "")
        wins = f"{r['wins']}/{r['pairs']}" if "wins" in r else ""
        lines.append(f"| {r['entry']} | {r['policy']} | {r['config']} | {r['n']} | {r['score_mean']:.1f} ± "
                     f"{r['score_std']:.1f} | {gain} | {wins} | {r['ms_per_step']:.1f} | {r['fallbacks']} |")
    return lines


def plots(recs: list[dict[str, Any]], docs: Path, min_pairs: int = 5) -> list[str]:
    """Write the two figures; returns their file names (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    gains = [r for r in recs if "gain" in r and r["pairs"] >= min_pairs]  # a 2-4 pair interval dwarfs the rest
    files = []
    if gains:
        entries = sorted({r["entry"] for r in gains})
        configs = sorted({r["config"] for r in gains})
        fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(entries)), 4))
        # bars of one dataset sit side by side around its tick (only the configurations it has, so no gaps);
        # a configuration keeps one colour across datasets
        here = {e: [c for c in configs if any(r["entry"] == e and r["config"] == c for r in gains)] for e in entries}
        width = 0.8 / max(len(v) for v in here.values())
        for cfg in configs:
            xs, ys, lo, hi = [], [], [], []
            for i, e in enumerate(entries):
                for r in gains:
                    if r["entry"] == e and r["config"] == cfg:
                        k, n = here[e].index(cfg), len(here[e])
                        xs.append(i + (k - (n - 1) / 2) * width)
                        ys.append(r["gain"])
                        lo.append(r["gain"] - r["ci_low"])
                        hi.append(r["ci_high"] - r["gain"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=cfg)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(entries)), entries, rotation=15)
        ax.set_ylabel("paired gain over base (normalized score)")
        ax.set_title("Inference-time adaptation: gain per dataset (95% CI)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(docs / "gain_per_dataset.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append("gain_per_dataset.png")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for e in sorted({r["entry"] for r in recs}):
        pts = sorted((r["ms_per_step"], r["score_mean"], r["config"]) for r in recs if r["entry"] == e)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=e)
        for x, y, c in pts:
            ax.annotate(c.split(" ")[0], (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("ms per env step (wall, 1 torch thread, cores shared: see latency.md)")
    ax.set_ylabel("normalized score")
    ax.set_title("Score against latency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(docs / "pareto.png", dpi=120)
    plt.close(fig)
    files.append("pareto.png")
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", default="benchmarks/results/episodes.csv")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--notes", default="benchmarks/results/notes.md", help="prose prepended to the tables")
    p.add_argument("--min-pairs", type=int, default=5, help="plot a gain only with this many paired seeds")
    args = p.parse_args()
    rows = load(Path(args.episodes))
    recs = summary(rows)
    docs = Path(args.out).parent
    docs.mkdir(parents=True, exist_ok=True)
    figures = plots(recs, docs, args.min_pairs)
    notes = Path(args.notes).read_text().strip() + "\n\n" if Path(args.notes).is_file() else ""
    lines = ["# Results: base policy against inference-time adaptation", "",
             "Generated by `.venv/bin/python benchmarks/summarize.py` from `benchmarks/results/episodes.csv`; every "
             "row there names the commit and settings that made it (commands: `benchmarks/run.py --help`).", "",
             notes + "## Evaluation (seeds 1000..1009, paired with the base policy)", "", *results_table(recs), "",
             "## Step-size tuning (seeds 0..4, disjoint from evaluation)", "", *tuning_table(rows), ""]
    lines += [f"![{f}]({f})" for f in figures]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} ({len(recs)} configurations) and {figures}")


if __name__ == "__main__":
    main()
