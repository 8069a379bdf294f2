"""MeanFlow loss variants against the one-step accuracy target of issue 3 (within 1.5x of diffusion).

Trains only the dynamics part of a bundle, with the training loop and validation metric of
``itpo train-world-model`` (one-step RMSE in units of the per-dimension state std, one sample per row,
on held-out episodes), for each variant of :class:`~itpo_wrap.world_model.config.MeanFlowConfig`, one
torch thread, and writes one CSV row per (variant, evaluation) to ``--out``.

    .venv/bin/python benchmarks/meanflow_variants.py --dataset itpo/hopper/medium-replay-v0 --steps 6000 \\
        --out benchmarks/results/meanflow_variants_hopper-mr.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from itpo_wrap.data.minari import load_dataset
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.training.config import WorldModelTrainConfig
from itpo_wrap.training.loop import MetricsLog, fit_component
from itpo_wrap.training.parts import DataTensors, dynamics_component
from itpo_wrap.world_model.config import MeanFlowConfig, NetConfig
from itpo_wrap.world_model.meanflow import MeanFlowDynamics

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "boundary25": {"flow_ratio": 0.5, "boundary_ratio": 0.25},
    "boundary25_p05": {"flow_ratio": 0.5, "boundary_ratio": 0.25, "adaptive_p": 0.5},
    "boundary50_p05": {"flow_ratio": 0.25, "boundary_ratio": 0.5, "adaptive_p": 0.5},
    "u_prediction": {"prediction": "u"},
    "p0": {"adaptive_p": 0.0},
    "t_floor02": {"t_floor": 0.2},
    "lowfreq": {"net": {"max_frequency": 4.0}},
    "lowfreq_boundary25": {"net": {"max_frequency": 4.0}, "flow_ratio": 0.5, "boundary_ratio": 0.25},
    "lowfreq_lr3e-4": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4}},
    "lowfreq_p0": {"net": {"max_frequency": 4.0}, "adaptive_p": 0.0},
    "lowfreq_lr3e-4_boundary25": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4}, "flow_ratio": 0.5,
                                  "boundary_ratio": 0.25},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="itpo/hopper/medium-replay-v0")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--out", default="benchmarks/results/meanflow_variants.csv")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    cfg = dataclasses.replace(WorldModelTrainConfig(), dynamics_steps=args.steps, eval_every=max(args.steps // 6, 1))
    train_part, val_part = data.split_episodes(cfg.holdout_fraction, seed=cfg.seed)  # as train_world_model
    norms = {"obs": StateNormalizer.fit(train_part.observations), "act": StateNormalizer.fit(train_part.actions),
             "delta": StateNormalizer.fit(train_part.next_observations - train_part.observations)}
    device = torch.device("cpu")
    train, val = DataTensors(train_part, norms, device), DataTensors(val_part, norms, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "variant", "steps", "rmse_state_std", "updates_per_s", "settings"])
        for name in args.variants:
            torch.manual_seed(cfg.seed)
            over = dict(VARIANTS[name])
            run_cfg = dataclasses.replace(cfg, **over.pop("train", {}))
            if "net" in over:
                over["net"] = dataclasses.replace(NetConfig(), **over["net"])
            mf_cfg = dataclasses.replace(MeanFlowConfig(), **over)
            model = MeanFlowDynamics(data.obs_dim, data.act_dim, mf_cfg)
            comp = dynamics_component("dynamics", model, train, val, cfg.batch_size, args.steps)
            with tempfile.TemporaryDirectory() as tmp:
                log = MetricsLog(Path(tmp))
                t0 = time.perf_counter()
                summary = fit_component(comp, run_cfg, Path(tmp), log, cfg.seed, progress=False)
                log.close()
                rows = list(csv.DictReader((Path(tmp) / "metrics.csv").read_text().splitlines()))
            for row in rows:
                if row["metric"] == "dynamics/val_rmse_state_std":
                    writer.writerow([args.dataset, name, row["step"], f"{float(row['value']):.4f}",
                                     f"{summary['updates_per_s']:.1f}", VARIANTS[name]])
            f.flush()
            print(f"{name:<16} rmse {summary['val_rmse_state_std']:.4f}  {summary['updates_per_s']:.1f} upd/s  "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
