"""``AdaptConfig.time_budget_ms`` on a zoo entry: wall ms per ``predict()`` and ascent steps taken, per budget.

Wrappers with each budget share the entry's policy and world model and are called in interleaved rounds on
the same observations (a base-policy episode), one torch thread, so the rows are comparable on a noisy machine:

    .venv/bin/python benchmarks/time_budget.py --entry hopper-medium --kind meanflow --budgets 20 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from itpo_wrap import ITPOPolicyWrapper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (benchmarks/run.py, a script beside this one: its load_entry)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entry", default="hopper-medium", help="zoo entry")
    p.add_argument("--kind", default="meanflow", help="world model kind (its tuned settings are used)")
    p.add_argument("--budgets", type=float, nargs="+", default=[20.0, 10.0], help="ms per call, beside no budget")
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds (env steps)")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    entry = run.load_entry(args.entry, root=args.zoo_dir)
    env, wm, base = entry.make_env(), entry.load_world_model(args.kind), entry.base_predict()
    obs, _ = env.reset(seed=0)
    wrappers = {b: ITPOPolicyWrapper(entry.policy, wm, entry.adapt_config(args.kind, time_budget_ms=b,
                                                                          track_j_after=False))
                for b in (None, *args.budgets)}
    for w in wrappers.values():
        w.predict(obs, deterministic=True)  # first call compiles the step (or warms up): not timed
    ms: dict[float | None, list[float]] = {b: [] for b in wrappers}
    steps: dict[float | None, list[int]] = {b: [] for b in wrappers}
    for _ in range(args.rounds):
        for b, w in wrappers.items():
            w.predict(obs, deterministic=True)
            ms[b].append(w.last_info[0]["ms"])
            steps[b].append(w.last_info[0]["adapt_steps"])
        obs, _, terminated, truncated, _ = env.step(base(obs)[0])
        if terminated or truncated:
            obs, _ = env.reset()
    print(f"{entry.name}, {args.kind}, {args.rounds} interleaved calls each, 1 torch thread")
    print("| budget (ms) | median ms | max ms | mean steps |\n|---|---|---|---|")
    for b in wrappers:
        print(f"| {'none' if b is None else f'{b:g}'} | {statistics.median(ms[b]):.1f} | {max(ms[b]):.1f} | "
              f"{np.mean(steps[b]):.2f} |")


if __name__ == "__main__":
    main()
