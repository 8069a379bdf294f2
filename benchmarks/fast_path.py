"""Issue 19's measurements of the adaptation step on the zoo's models, one JSON per part.

    taskset -c 0 python benchmarks/fast_path.py speed  --out benchmarks/results/fast_path_speed.json
    taskset -c 0 python benchmarks/fast_path.py exact  --out benchmarks/results/fast_path_exact.json
    taskset -c 0 python benchmarks/fast_path.py rss    --out benchmarks/results/fast_path_rss.json
    taskset -c 0 python benchmarks/fast_path.py start  --out benchmarks/results/fast_path_start.json

- ``speed``: ``predict()`` CPU time per env step, eager and compiled backends interleaved in one process
  (medians over rounds), for N = 1 and N = 8 envs, the first call's wall time (compile included), and the
  FLOP rate of one call (``torch.utils.flop_counter``) against the core's fp32 peak (``--peak-gflops``).
- ``exact``: N = 8 envs in one wrapper against 8 single-env wrappers seeded ``noise_seed + i``, over
  ``--steps`` persistent steps: the largest action difference per backend (0.0 = bit for bit).
- ``rss``: resident memory after each of ``--rebuilds`` wrappers, each over a freshly loaded zoo entry.
- ``start``: wall time from a fresh process's start to its first action, with the compile cache warm.

One torch thread throughout; pin the process to one core (``taskset``) when another job runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap import zoo
from itpo_wrap.wrapper import ITPOPolicyWrapper


def _setup(entry: str, kind: str, backend: str, n: int, zoo_dir: str | None) -> tuple[ITPOPolicyWrapper, np.ndarray]:
    e = zoo.load(entry, root=zoo_dir)
    wm = e.load_world_model(kind)
    cfg = e.adapt_config(kind, backend=backend, persistence="persistent")
    obs = np.random.default_rng(0).normal(size=(n, wm.obs_dim)).astype(np.float32) * 0.1
    return ITPOPolicyWrapper(e.policy, wm, cfg), obs


def _flops(w: ITPOPolicyWrapper, obs: np.ndarray) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    eager = ITPOPolicyWrapper(w.adapter, w.world_model, dataclasses.replace(w.config, backend="eager"))
    with FlopCounterMode(display=False) as counter:
        eager.predict(obs, deterministic=True)
    return float(counter.get_total_flops())


def speed(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for kind in args.kinds:
        impls: dict[str, tuple[ITPOPolicyWrapper, np.ndarray]] = {}
        first: dict[str, float] = {}
        for n in (1, 8):
            for backend in ("eager", "compile"):
                w, obs = _setup(args.entry, kind, backend, n, args.zoo_dir)
                t0 = time.perf_counter()
                w.predict(obs, deterministic=True)
                first[f"{backend}/N{n}"] = time.perf_counter() - t0
                impls[f"{backend}/N{n}"] = (w, obs)
                print(f"{kind} {backend} N={n}: first call {first[f'{backend}/N{n}']:.1f} s", flush=True)
        cpu: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(args.rounds):  # interleaved: every implementation sees the same machine load
            for name, (w, obs) in impls.items():
                c0 = time.process_time()
                for _ in range(args.calls):
                    w.predict(obs, deterministic=True)
                cpu[name].append(1e3 * (time.process_time() - c0) / args.calls)
        flops = _flops(*impls["eager/N1"])
        med = {k: float(np.median(v)) for k, v in cpu.items()}
        for name in impls:
            backend, n = name.split("/N")
            gflops = flops * int(n) / (med[name] / 1e3) / 1e9
            rows.append({"kind": kind, "backend": backend, "n_envs": int(n), "cpu_ms_per_call": med[name],
                         "cpu_ms_per_env_step": med[name] / int(n), "first_call_s": first[name],
                         "gflop_per_env_step": flops / 1e9, "gflops": gflops,
                         "pct_of_peak": 100 * gflops / args.peak_gflops,
                         "vs_eager_same_n": med[name] / med[f"eager/N{n}"],
                         "vs_one_env_call": med[name] / med[f"{backend}/N1"]})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "config": dataclasses.asdict(impls["eager/N1"][0].config)}


def exact(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for kind in args.kinds:
        for backend in ("eager", "compile"):
            w, obs = _setup(args.entry, kind, backend, 8, args.zoo_dir)
            rng = np.random.default_rng(1)
            seq = [obs + 0.05 * rng.normal(size=obs.shape).astype(np.float32) for _ in range(args.steps)]
            together = np.stack([w.predict(o, deterministic=True)[0] for o in seq])
            worst = 0.0
            for i in range(8):
                solo, _ = _setup(args.entry, kind, backend, 1, args.zoo_dir)
                solo = ITPOPolicyWrapper(solo.adapter, solo.world_model,
                                         dataclasses.replace(solo.config, noise_seed=solo.config.noise_seed + i))
                acts = np.stack([solo.predict(o[i], deterministic=True)[0] for o in seq])
                worst = max(worst, float(np.abs(acts - together[:, i]).max()))
            rows.append({"kind": kind, "backend": backend, "steps": args.steps, "max_abs_action_diff": worst})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in ("eager", "compile"):
        readings = []
        for _ in range(args.rebuilds):  # a user reloading the entry and wrapping it again, every episode
            w, obs = _setup(args.entry, args.kinds[0], backend, 1, args.zoo_dir)
            w.predict(obs, deterministic=True)
            del w
            readings.append(_rss_mb())
        growth = (readings[-1] - readings[1]) / (len(readings) - 2)  # after the first (compiling) wrapper
        out[backend] = {"rss_mb": readings, "mb_per_wrapper": growth}
        print(backend, f"RSS {readings[0]:.0f} -> {readings[-1]:.0f} MB, {growth:.2f} MB per wrapper", flush=True)
    return out


def start(args: argparse.Namespace) -> dict[str, Any]:
    code = ("import time; t0 = time.perf_counter(); import sys; sys.argv = ['x']; "
            "from benchmarks.fast_path import _setup; "
            f"w, obs = _setup({args.entry!r}, {args.kinds[0]!r}, 'compile', 1, {args.zoo_dir!r}); "
            "w.predict(obs, deterministic=True); print(time.perf_counter() - t0)")
    runs = []
    for i in range(2):  # the first fills the cache (if it is cold), the second is the one that counts
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        runs.append({"process_wall_s": time.perf_counter() - t0, "to_first_action_s": float(res.stdout.split()[-1])})
        print(f"process {i}: {runs[-1]}", flush=True)
    return {"kind": args.kinds[0], "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["speed", "exact", "rss", "start"])
    p.add_argument("--out", required=True)
    p.add_argument("--entry", default="hopper-medium-replay")
    p.add_argument("--zoo-dir", default=None)
    p.add_argument("--kinds", nargs="+", default=["diffusion", "meanflow"])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rebuilds", type=int, default=40)
    p.add_argument("--peak-gflops", type=float, default=217.0, help="this core's fp32 peak (AVX-512 FMA)")
    args = p.parse_args()
    torch.set_num_threads(1)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "entry": args.entry,
            "loadavg": Path("/proc/loadavg").read_text().strip(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["python", *sys.argv])}
    parts = {"speed": speed, "exact": exact, "rss": rss, "start": start}
    result = {"meta": meta, **parts[args.part](args)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
