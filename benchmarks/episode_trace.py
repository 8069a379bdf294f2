"""Per-step traces of paired episodes: what the wrapper did at each step, and how wrong its world model was.

    python benchmarks/episode_trace.py --entry walker2d-medium --seeds 2 3 4 --out benchmarks/results/traces

For each seed, the base policy and the wrapped policy (``AdaptConfig()``'s defaults unless ``--config``
overrides fields as JSON) each run one episode on the same env seed. Every step writes one row:
reward, the executed action's L2 distance from the base action at that observation, whether the gate
rejected the update, the parameters' distance from the pretrained ones, and the world model's *real*
one-step error: its prediction of the observed next state from the observed state and the executed
action, in the model's own state-std units (RMS over dims), the quantity the bundle's held-out
``one_step_rmse`` measures offline, computed by the reality check itself (``itpo_wrap.reality``, zero
noise). (The first traces, of 2026-12-05, averaged the prediction over 8 noise draws instead.) The traces answer where a lost
episode went wrong and whether the model's error on real transitions warned before it did. Tuning seeds
only (the default ``--seeds`` are 2..9): this is a diagnostic for choosing settings.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper  # noqa: E402
from itpo_wrap.reality import RealityCheck  # noqa: E402

FIELDS = ["entry", "kind", "agent", "seed", "t", "reward", "action_change", "gate_rejected", "off_model",
          "param_drift", "j_before", "model_error", "p_term_next", "terminated"]


def model_error(wm: Any, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> tuple[float, float]:
    """The world model's error on one real transition, as the reality check measures it, and its
    termination probability at the real next state."""
    check = RealityCheck(wm, float("inf"))
    check.record(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1), np.asarray(action).reshape(1, -1))
    real = torch.as_tensor(next_obs, dtype=torch.float32).reshape(1, -1)
    with torch.no_grad():
        return float(check.errors(real)[0]), float(wm.termination_probability(real)[0])


def trace(entry: Any, wm: Any, predict: Any, info_fn: Any, seed: int, agent: str, kind: str,
          max_steps: int | None) -> list[dict[str, Any]]:
    env = entry.make_env()
    obs, _ = env.reset(seed=seed)
    rows, t, done = [], 0, False
    while not done and (max_steps is None or t < max_steps):
        action, _ = predict(obs, deterministic=True)
        info = info_fn()[0] if info_fn is not None else {}
        nxt, reward, terminated, truncated, _ = env.step(action)
        err, p = model_error(wm, obs, action, nxt)
        rows.append({"entry": entry.name, "kind": kind, "agent": agent, "seed": seed, "t": t,
                     "reward": f"{reward:.4f}", "action_change": f"{info.get('action_change', 0.0):.4f}",
                     "gate_rejected": int(info.get("gate_rejected", False)),
                     "off_model": int(info.get("off_model", False)),
                     "param_drift": f"{info.get('param_drift', 0.0):.5f}",
                     "j_before": f"{info.get('j_before', float('nan')):.4f}", "model_error": f"{err:.4f}",
                     "p_term_next": f"{p:.4f}", "terminated": int(terminated)})
        obs, done, t = nxt, terminated or truncated, t + 1
    env.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entry", required=True)
    p.add_argument("--policy", default=None)
    p.add_argument("--kind", choices=["diffusion", "meanflow"], default="meanflow")
    p.add_argument("--seeds", type=int, nargs="*", default=list(range(2, 10)))
    p.add_argument("--config", default="{}", help="AdaptConfig fields as JSON, over the defaults")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results/traces")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    entry = run.load_entry(args.entry, args.policy)
    wm = run.load_world_model(entry, args.kind)
    cfg = dataclasses.replace(AdaptConfig(device="cpu", model_check="off"), **json.loads(args.config))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = out / f"{entry.name}-{entry.policy_name}-{args.kind}-seed{seed}.csv"
        rows = trace(entry, wm, entry.base_predict(), None, seed, "base", args.kind, args.max_steps)
        w = ITPOPolicyWrapper(entry.policy, wm, cfg)
        rows += trace(entry, wm, w.predict, lambda w=w: w.last_info, seed, "itpo", args.kind, args.max_steps)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        for agent in ("base", "itpo"):
            mine = [r for r in rows if r["agent"] == agent]
            ret = sum(float(r["reward"]) for r in mine)
            err = np.array([float(r["model_error"]) for r in mine])
            rej = np.mean([r["gate_rejected"] for r in mine])
            print(f"{entry.name} seed {seed} {agent}: return {ret:.0f} ({float(entry.normalized_score(ret)):.1f}), "
                  f"{len(mine)} steps, model error median {np.median(err):.3f} p95 {np.quantile(err, 0.95):.3f}, "
                  f"gate rejected {rej:.0%}", flush=True)


if __name__ == "__main__":
    main()
