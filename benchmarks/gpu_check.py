"""One-shot device check (issue 19, item 3): ms per env step of ``predict()`` for 1, 8, 64 and 512 envs
with a zoo entry's diffusion and MeanFlow world models, on a GPU.

Prepared to run once in a session that is lent a machine (15 minutes of device time in all), so it writes
its JSON after every row and stops starting new rows once ``--budget-s`` is spent:

    python benchmarks/gpu_check.py --device cuda --out $OUT/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --ns 1,2 --backends eager --out /tmp/gpu_check.json  # CPU rehearsal

Each row: the first call's wall time (compilation included), then the median wall time per call over
``--calls`` calls (CUDA synchronised), per env step, and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itpo_wrap import zoo  # noqa: E402
from itpo_wrap.wrapper import ITPOPolicyWrapper  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(entry: zoo.ZooEntry, kind: str, n: int, backend: str, device: str, calls: int) -> dict[str, Any]:
    """One row: a wrapper over ``n`` envs, timed after its first call."""
    wm = entry.load_world_model(kind, device=device)
    cfg = entry.adapt_config(kind, device=device, backend=backend, track_j_after=False)
    w = ITPOPolicyWrapper(entry.policy, wm, cfg)
    obs = np.random.default_rng(0).normal(size=(n, wm.obs_dim)).astype(np.float32) * 0.1
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    w.predict(obs, deterministic=True)
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        w.predict(obs, deterministic=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    return {"kind": kind, "n_envs": n, "backend": w.backend, "device": device, "first_call_s": first,
            "ms_per_call": ms, "ms_per_env_step": ms / n, "calls": calls,
            "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
            "fallbacks": int(sum(r["fallback"] for r in w.last_info)),
            "H_M_E": [cfg.horizon, cfg.particles, cfg.steps]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--entry", default="hopper-medium")
    p.add_argument("--zoo-dir", default=None)
    p.add_argument("--kinds", default="meanflow,diffusion")
    p.add_argument("--ns", default="1,8,64,512")
    p.add_argument("--backends", default="compile,eager")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--budget-s", type=float, default=480.0, help="start no new row after this many seconds")
    args = p.parse_args()
    started = time.perf_counter()
    entry = zoo.load(args.entry, root=args.zoo_dir, device=args.device)
    info = {"torch": torch.__version__, "device": args.device, "entry": args.entry, "command": " ".join(sys.argv),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "rows": [],
            "skipped": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for backend in args.backends.split(","):
        for kind in args.kinds.split(","):
            for n in (int(x) for x in args.ns.split(",")):
                if time.perf_counter() - started > args.budget_s:
                    info["skipped"].append({"kind": kind, "n_envs": n, "backend": backend, "why": "budget spent"})
                    continue
                try:
                    row = measure(entry, kind, n, backend, args.device, args.calls)
                except Exception as err:  # noqa: BLE001 - one failed row must not lose the others
                    row = {"kind": kind, "n_envs": n, "backend": backend, "error": f"{type(err).__name__}: {err}"[:500]}
                info["rows"].append(row)
                print(json.dumps(row), flush=True)
                out.write_text(json.dumps(info, indent=1) + "\n")
    info["wall_s"] = time.perf_counter() - started
    out.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
