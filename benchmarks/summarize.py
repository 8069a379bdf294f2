"""Turn the score experiment's per-episode rows into ``docs/results.md`` and two plots.

    .venv/bin/python benchmarks/summarize.py            # reads benchmarks/results/episodes.csv

Tables: the headline (each dataset's tuned diffusion and MeanFlow configurations, as the zoo records them);
per (entry, configuration) on the evaluation seeds, the mean and std of the normalized score and
the milliseconds per step; the paired difference against the base policy on the seeds both ran, with a
95% Student-t interval; the step-size grid on the tuning seeds. Plots: the tuned configurations' gain per dataset
with its interval (``docs/gain_per_dataset.png``) and score against milliseconds per step (``docs/pareto.png``).
Aggregate: the tuned configurations' IQM and mean over datasets and seeds with rliable's stratified bootstrap
(``benchmarks/aggregate.py``; needs ``pip install 'itpo-wrap[stats]'``, the section says so without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from itpo_lab.stats import paired_difference
from itpo_wrap import zoo
from itpo_wrap.config import AdaptConfig, record_defaults
from itpo_wrap.episodes import read_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aggregate  # noqa: E402  (benchmarks/aggregate.py, a script beside this one)

Row = dict[str, str]


NORMALIZED_NOTE = ("Normalized scores: 100 = the mean return of our own SAC expert on each env, not D4RL's expert "
                   "(D4RL's reference returns are higher: see docs/datasets.md); do not compare these numbers "
                   "with D4RL tables.")


def label(row: Row) -> str:
    """Short human name of a configuration."""
    s = json.loads(row["settings"])
    cap = s.pop("max_steps", None)
    tag = s.pop("tag", "")
    critic = s.pop("critic", None)
    text = _label(s) + (f" T<={cap}" if cap is not None else "") + (f" critic={critic}" if critic else "")
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
    """The episode table's complete rows (a last line a kill cut short is left out)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no episode table at {str(path)!r}; run benchmarks/run.py or itpo evaluate first")
    return read_rows(path)


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

    position = {id(r): i for i, r in enumerate(rows)}
    for (entry, policy, settings), by_seed in sorted(groups.items(), key=order):
        first, parsed = next(iter(by_seed.values())), json.loads(settings)
        scores = np.array([float(r["score"]) for r in by_seed.values()])
        rec: dict[str, Any] = {
            "entry": entry, "policy": policy, "config": label(first), "method": parsed["method"],
            "kind": first["kind"], "n": len(scores), "score_mean": scores.mean(), "score_std": scores.std(),
            "ms_per_step": float(np.mean([float(r["ms_per_step"]) for r in by_seed.values()])),
            "fallbacks": sum(int(r["fallbacks"]) for r in by_seed.values()),
            "seed_scores": {s: float(r["score"]) for s, r in by_seed.items()},  # the aggregate's matrix cells
            "settings": parsed, "last_row": max(position[id(r)] for r in by_seed.values())}
        ref = base.get((entry, policy, parsed.get("max_steps")))
        if ref is not None and rec["method"] != "base":
            seeds = sorted(set(by_seed) & set(ref))
            if len(seeds) >= 2:
                d = paired_difference([float(by_seed[s]["score"]) for s in seeds],
                                      [float(ref[s]["score"]) for s in seeds])
                rec.update(gain=d.mean, ci_low=d.ci_low, ci_high=d.ci_high, pairs=d.n, wins=d.wins)
        out.append(rec)
    return out


# the AdaptConfig fields tune_eval grids and records (beside the step size); a zoo entry's tuned settings
# (older ones recorded only some) and a row's settings compare with AdaptConfig's defaults filled in
TUNED_FIELDS = ("steps", "particles", "horizon", "persistence", "gate", "max_action_change")


def with_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the default of every missing tuned field: rows and records left out what they did
    not change from ``AdaptConfig``'s defaults of their time (``itpo_wrap.config.record_defaults``)."""
    defaults = {**AdaptConfig().to_dict(), **record_defaults(settings)}
    return {**{f: defaults[f] for f in TUNED_FIELDS}, **settings}


def headline(recs: list[dict[str, Any]], tuned: dict[str, dict[str, dict[str, Any]]],
             policies: dict[str, str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """``(entry, kind) -> record`` of the configuration each zoo entry records as tuned for that world model
    (``itpo_wrap.zoo`` tuned settings, the one ``itpo demo`` and ``entry.adapt_config`` run); when several
    evaluated rows match (a re-trained world model under a new tag), the most recently written wins.

    :param tuned: ``entry -> kind -> tuned settings``.
    :param policies: ``entry -> the policy its settings were tuned for`` (its default); rows of another base
        policy are left out. Rows that swap in another policy's critic (``--critic-policy``) always are: the
        tuned configuration is the policy with its own critic.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in recs:
        if (r["method"] != "itpo" or "gain" not in r or r["kind"] not in tuned.get(r["entry"], {})
                or r["settings"].get("max_steps") is not None  # truncated episodes are smoke tests, not evidence
                or "critic" in r["settings"]
                or (policies is not None and r["policy"] != policies.get(r["entry"], r["policy"]))):
            continue
        want, s = with_defaults(tuned[r["entry"]][r["kind"]]), with_defaults(r["settings"])
        if s.get("optimizer", "sgd") != "sgd" or "sampling_steps" in s or any(s[k] != v for k, v in want.items()):
            continue
        key = (r["entry"], r["kind"])
        if key not in out or r["last_row"] > out[key]["last_row"]:
            out[key] = r
    return out


def headline_table(recs: list[dict[str, Any]], best: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Base score and the tuned diffusion and MeanFlow gains per dataset, with MeanFlow's ratios to diffusion."""
    base = {r["entry"]: r for r in recs if r["method"] == "base" and r["settings"].get("max_steps") is None}
    lines = ["| dataset | base | diffusion (tuned): gain [95% CI], wins | MeanFlow (tuned): gain [95% CI], wins "
             "| MeanFlow gain / diffusion gain | MeanFlow ms / diffusion ms |", "|---|---|---|---|---|---|"]

    def cell(r: dict[str, Any] | None) -> str:
        return "" if r is None else (f"{r['gain']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}], "
                                     f"{r['wins']}/{r['pairs']} ({r['config']})")

    for entry in sorted({e for e, _ in best}):
        d, m = best.get((entry, "diffusion")), best.get((entry, "meanflow"))
        share = ("" if not (d and m and d["gain"] > 0) else f"{m['gain'] / d['gain']:.0%}" if m["gain"] >= 0
                 else "below 0")
        ms = f"{m['ms_per_step'] / d['ms_per_step']:.0%}" if d and m else ""
        b = f"{base[entry]['score_mean']:.1f}" if entry in base else ""
        lines.append(f"| {entry} | {b} | {cell(d)} | {cell(m)} | {share} | {ms} |")
    gains = {k: [r["gain"] for (_, kind), r in best.items() if kind == k] for k in ("diffusion", "meanflow")}
    for kind, g in gains.items():
        if g:
            lines.append(f"\n{kind}: {len(g)} datasets, mean gain {np.mean(g):+.1f}, above base on the mean on "
                         f"{sum(x > 0 for x in g)}, worse than -1 on {sum(x < -1 for x in g)}.")
    return lines


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


def plots(recs: list[dict[str, Any]], docs: Path, min_pairs: int = 5,
          best: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[str]:
    """Write the two figures; returns their file names (empty without matplotlib).

    :param best: :func:`headline`'s tuned configurations, the gain plot's bars.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return []
    # the headline: each dataset's tuned diffusion and MeanFlow configurations, one colour per world model
    # (every other configuration is in the results table; 20 of them in one bar chart read as noise)
    gains = {k: r for k, r in (best or {}).items() if r["pairs"] >= min_pairs}  # a 2-4 pair interval dwarfs the rest
    files = []
    if gains:
        entries = sorted({e for e, _ in gains})
        kinds = [k for k in ("diffusion", "meanflow") if any(kind == k for _, kind in gains)]
        colours = {"diffusion": "tab:blue", "meanflow": "tab:orange"}
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(entries)), 4))
        width = 0.8 / len(kinds)
        for k_i, kind in enumerate(kinds):
            pts = [(i, gains[(e, kind)]) for i, e in enumerate(entries) if (e, kind) in gains]
            xs = [i + (k_i - (len(kinds) - 1) / 2) * width for i, _ in pts]
            ys = [r["gain"] for _, r in pts]
            err = [[r["gain"] - r["ci_low"] for _, r in pts], [r["ci_high"] - r["gain"] for _, r in pts]]
            ax.bar(xs, ys, width, yerr=err, capsize=3, color=colours[kind], label=f"ITPO, {kind} world model (tuned)")
            for x, (_, r) in zip(xs, pts, strict=True):
                ax.annotate(f"{r['wins']}/{r['pairs']}", (x, max(r["ci_high"], 0)), fontsize=7, ha="center",
                            xytext=(0, 2), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(entries)), entries, rotation=20, ha="right")
        ax.set_ylabel("paired gain over base (normalized score)")
        bases = ", ".join(sorted({r["policy"] for r in gains.values()}))
        ax.set_title(f"Gain per dataset over the base policy ({bases}), 95% CI (labels: seeds better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / "gain_per_dataset.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append("gain_per_dataset.png")
    # colour: dataset; marker: method and world model (annotating 30 points with their names was unreadable)
    markers = {"base": "s", "itpo-diffusion": "o", "itpo-meanflow": "^", "itpo-mlp": "D", "mppi-diffusion": "x"}

    def family(r: dict[str, Any]) -> str:
        return "base" if r["method"] == "base" else f"{r['method']}-{r['kind']}"

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    entries = sorted({r["entry"] for r in recs})
    colour = {e: plt.get_cmap("tab10")(i % 10) for i, e in enumerate(entries)}
    for r in recs:
        ax.scatter(r["ms_per_step"], r["score_mean"], color=colour[r["entry"]],
                   marker=markers.get(family(r), "*"), s=28)
    handles = [Line2D([], [], color=colour[e], marker="o", ls="", label=e) for e in entries]
    handles += [Line2D([], [], color="k", marker=m, ls="", label=f) for f, m in markers.items()
                if any(family(r) == f for r in recs)]
    ax.set_xscale("log")
    ax.set_xlabel("ms per env step (wall, 1 torch thread, cores shared: see latency.md)")
    ax.set_ylabel("normalized score (mean of 10 episodes)")
    ax.set_title("Score against latency, every evaluated configuration")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(docs / "pareto.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    files.append("pareto.png")
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", default="benchmarks/results/episodes.csv")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--notes", default="benchmarks/results/notes.md", help="prose prepended to the tables")
    p.add_argument("--min-pairs", type=int, default=5, help="plot a gain only with this many paired seeds")
    p.add_argument("--zoo-dir", default=None, help="zoo root whose tuned settings pick the headline (default: the shipped zoo)")
    args = p.parse_args()
    rows = load(Path(args.episodes))
    recs = summary(rows)
    docs = Path(args.out).parent
    docs.mkdir(parents=True, exist_ok=True)
    root = Path(args.zoo_dir) if args.zoo_dir else None
    entries = {n: zoo.load(n, root=root) for n in zoo.list(root=root)}
    tuned = {n: e.tuned_settings for n, e in entries.items()}
    best = headline(recs, tuned, {n: e.policy_name for n, e in entries.items()})
    figures = plots(recs, docs, args.min_pairs, best)
    notes = Path(args.notes).read_text().strip() + "\n\n" if Path(args.notes).is_file() else ""
    lines = ["# Results: base policy against inference-time adaptation", "",
             "Generated by `.venv/bin/python benchmarks/summarize.py` from `benchmarks/results/episodes.csv`; every "
             "row there names the commit and settings that made it (commands: `benchmarks/run.py --help`).", "",
             NORMALIZED_NOTE, "",
             notes + "## Headline: each dataset's tuned configurations", "",
             "The configuration each zoo entry records as tuned for its diffusion and MeanFlow world models "
             "(what `itpo demo` and `entry.adapt_config(kind)` run), on the evaluation seeds. The ms ratio is "
             "wall time per env step from these episodes, on a shared machine; `benchmarks/meanflow_share.py` "
             "measures the CPU-time share properly.", "", *headline_table(recs, best), "",
             *aggregate.section(recs, best, min_runs=args.min_pairs), "",
             "## Evaluation (seeds 1000..1009, paired with the base policy)", "", *results_table(recs), "",
             "## Step-size tuning (seeds 0..4, disjoint from evaluation)", "", *tuning_table(rows), ""]
    lines += [f"![{f}]({f})" for f in figures]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} ({len(recs)} configurations) and {figures}")


if __name__ == "__main__":
    main()
