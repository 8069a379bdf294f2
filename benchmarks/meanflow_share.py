"""MeanFlow's share of the diffusion model's predict() latency, on a zoo entry's real bundles.

Issue 6's target reads "MeanFlow keeps at least 75% of the diffusion model's gain at no more than 25% of
its latency". The latency half is a ratio, so this script times both wrappers in the same interleaved
rounds (background load hits them alike) with one torch thread, over observations from the entry's own
environment, for the diffusion model at its tuned settings and MeanFlow at several E, M and H (fewer
adaptation steps and a shorter horizon are MeanFlow's levers: its per-step cost is dominated by the policy,
reward and critic that both models share). Both run as ``benchmarks/run.py`` scores them: tuned settings,
``track_j_after=False``.

    .venv/bin/python benchmarks/meanflow_share.py --entry hopper-medium-replay --meanflow-steps 1 3 5
    .venv/bin/python benchmarks/meanflow_share.py --entry hopper-medium-replay --meanflow-steps 5 \\
        --meanflow-particles 4 8 --meanflow-horizon 3 5   # the other latency levers, M and H

Prints the median CPU and wall milliseconds per predict() call and each MeanFlow setting's share of the
diffusion one; the CPU time is the steadier figure on a loaded machine.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from itpo_wrap import ITPOPolicyWrapper
from itpo_wrap.config import AdaptConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (benchmarks/run.py, a script beside this one: its load_entry)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entry", default="hopper-medium-replay")
    p.add_argument("--zoo-dir", default=None, help="zoo folder (default: $ITPO_ZOO_PATH, else the checkout's policies/zoo)")
    p.add_argument("--meanflow-steps", type=int, nargs="+", default=[1, 3, 5], help="E values for MeanFlow")
    p.add_argument("--meanflow-particles", type=int, nargs="+", default=None, metavar="M",
                   help="rollouts M for MeanFlow (default: its tuned M)")
    p.add_argument("--meanflow-horizon", type=int, nargs="+", default=None, metavar="H",
                   help="horizon H for MeanFlow (default: its tuned H)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (one call per setting each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per setting first")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    entry = run.load_entry(args.entry, root=args.zoo_dir)
    # load_world_model names the kinds an entry has when one is missing; the wrappers share the one policy
    # (each restores the pretrained weights after every call)
    diffusion_wm, mf_wm = entry.load_world_model("diffusion"), entry.load_world_model("meanflow")
    # the configurations benchmarks/run.py scores: its episodes run without the diagnostic extra forward
    # (track_j_after=False), which costs MeanFlow a larger fraction of its call than it costs diffusion
    diffusion_cfg = entry.adapt_config("diffusion", track_j_after=False)
    settings = {_label("diffusion", diffusion_cfg): ITPOPolicyWrapper(entry.policy, diffusion_wm, diffusion_cfg)}
    tuned = entry.adapt_config("meanflow", track_j_after=False)
    for e, m, h in itertools.product(args.meanflow_steps, args.meanflow_particles or [tuned.particles],
                                     args.meanflow_horizon or [tuned.horizon]):
        cfg = entry.adapt_config("meanflow", steps=e, particles=m, horizon=h, track_j_after=False)
        settings[_label("meanflow", cfg)] = ITPOPolicyWrapper(entry.policy, mf_wm, cfg)

    env = entry.make_env()
    obs, _ = env.reset(seed=0)
    observations, base = [obs], entry.base_predict()
    for _ in range(args.rounds + args.warmup - 1):  # states the policy really visits, not noise
        obs, _, term, trunc, _ = env.step(base(obs[None], deterministic=True)[0][0])
        observations.append(obs if not (term or trunc) else env.reset(seed=len(observations))[0])

    cpu: dict[str, list[float]] = {k: [] for k in settings}
    wall: dict[str, list[float]] = {k: [] for k in settings}
    for i, o in enumerate(observations):
        for name, w in settings.items():
            c0, t0 = time.process_time(), time.perf_counter()
            w.predict(o[None], episode_start=np.array([i == 0]), deterministic=True)
            if i >= args.warmup:
                cpu[name].append(1e3 * (time.process_time() - c0))
                wall[name].append(1e3 * (time.perf_counter() - t0))

    ref = next(iter(settings))
    ref_cpu = statistics.median(cpu[ref])
    print(f"{args.entry}, one torch thread, median of {args.rounds} interleaved calls")
    print("| setting | CPU ms per call | wall ms per call | share of the diffusion CPU time |")
    print("|---|---|---|---|")
    for name in settings:
        share = statistics.median(cpu[name]) / ref_cpu
        print(f"| {name} | {statistics.median(cpu[name]):.1f} | {statistics.median(wall[name]):.1f} | {share:.0%} |")


def _label(kind: str, cfg: AdaptConfig) -> str:
    return f"{kind} E={cfg.steps} M={cfg.particles} H={cfg.horizon}"


if __name__ == "__main__":
    main()
