"""Where an offline trainer's update spends its CPU time: updates/s, minibatch sampling, and a
torch.profiler table of the update's operators.

    python benchmarks/profile_trainer.py --algo rebrac --dataset itpo/hopper/medium-replay-v0

One thread by default (``--threads``); numbers are only comparable between runs on equally loaded cores.
Builds the networks and optimisers exactly as the trainer's ``main`` does (``build`` in each trainer),
so the profile is of the real update, not a copy of it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]


def _trainer(algo: str) -> ModuleType:
    """``policies/<algo>.py`` as a module (the trainers are scripts, not package modules)."""
    if str(ROOT / "policies") not in sys.path:
        sys.path.insert(0, str(ROOT / "policies"))
    return importlib.import_module(algo)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=["rebrac", "td3_bc"], default="rebrac")
    p.add_argument("--dataset", default="itpo/hopper/medium-replay-v0")
    p.add_argument("--updates", type=int, default=60, help="timed updates (after 10 warm-up ones)")
    p.add_argument("--profile-updates", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=15, help="operators shown")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from itpo_lab.offline.run import load_offline_dataset

    module = _trainer(a.algo)
    args = module.Args(dataset=a.dataset, progress=False, threads=a.threads)
    dataset = load_offline_dataset(a.dataset)
    parts = module.build(args, dataset)
    data, args, generator = parts.data, parts.args, parts.generator

    def run(n: int, start: int) -> None:
        for u in range(start, start + n):
            parts.step(u, data.sample(args.batch_size, generator))

    run(10, 1)
    t = time.perf_counter()
    run(a.updates, 11)
    per_s = a.updates / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(a.updates):
        data.sample(args.batch_size, generator)
    sample_ms = (time.perf_counter() - t) / a.updates * 1e3
    print(f"{a.algo} on {a.dataset}, {a.threads} thread(s): {per_s:.1f} updates/s "
          f"({1e3 / per_s:.1f} ms each; sampling a batch of {args.batch_size}: {sample_ms:.2f} ms)")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(a.profile_updates, 11 + a.updates)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
