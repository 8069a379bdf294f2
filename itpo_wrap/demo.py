"""``make demo`` / ``itpo demo``: the smallest real end-to-end job on the shipped artefacts.

Until the zoo and the wrapper demo exist, it runs the data pipeline end to end: it regenerates small
Hopper datasets (every level) from the committed behaviour policies into a private Minari store,
reads them back through :func:`itpo_wrap.data.load_dataset`, and prints what it made.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_demo(out_dir: Path, transitions: int = 5_000, env: str = "hopper") -> int:
    """Collect ``env``'s levels at a small size into ``out_dir/datasets`` and print a table.

    :param out_dir: where the demo's Minari store goes (never the user's own store).
    :param transitions: minimum transitions of each sampled level.
    :param env: which recipe to run.
    :return: a process exit code.
    """
    # A pipe (CI, `make demo | tee`) reports 80 columns; the table needs more to stay readable.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    store = (out_dir / "datasets").resolve()
    os.environ["MINARI_DATASETS_PATH"] = str(store)  # keep the demo out of the user's ~/.minari
    from itpo_wrap.data import dataset_normalized_score, load_dataset
    from itpo_wrap.data.collect import LEVELS, CollectConfig, collect

    console.print(f"[bold]itpo-wrap demo[/]: regenerating D4RL-style {env} datasets ({transitions} transitions per "
                  f"sampled level) from policies/behavior/{env} into {store}")
    t0 = time.perf_counter()
    summary = collect(CollectConfig(env=env, transitions=transitions, overwrite=True), log=lambda s: None)
    table = Table(title=f"{env}: datasets written and read back")
    for col in ("dataset id", "transitions", "episodes", "terminations", "timeouts", "mean return", "normalized"):
        table.add_column(col, justify="right")
    for level in LEVELS:
        data = load_dataset(summary[level]["dataset_id"])
        rets = data.episode_returns()
        score = float(dataset_normalized_score(data, rets).mean()) + 0.0  # no "-0.0"
        table.add_row(data.dataset_id, f"{len(data):,}", f"{data.num_episodes:,}", f"{int(data.terminations.sum())}",
                      f"{int(data.truncations.sum())}", f"{rets.mean():.1f}", f"{score if abs(score) >= 0.05 else 0.0:.1f}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - t0:.1f}s. The full datasets: `itpo collect --env all --levels all` "
                  "(docs/datasets.md).")
    return 0
