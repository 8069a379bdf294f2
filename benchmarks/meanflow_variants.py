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
from itpo_wrap.training.world_model import teacher_from_bundle
from itpo_wrap.world_model.config import MeanFlowConfig, MLPDynamicsConfig, NetConfig
from itpo_wrap.world_model.dynamics import Dynamics, MLPDynamics
from itpo_wrap.world_model.meanflow import MeanFlowDynamics
from itpo_wrap.world_model.model import WorldModel

VARIANTS: dict[str, dict[str, Any]] = {
    "mlp_reference": {"mlp": True},
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
    "lowfreq_lr3e-4_ema999": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4, "ema_decay": 0.999}},
    "lowfreq_ema999": {"net": {"max_frequency": 4.0}, "train": {"ema_decay": 0.999}},
    "lowfreq_lr3e-4_teacher25": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4}, "teacher_ratio": 0.25},
    "lowfreq_lr3e-4_teacher50": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4}, "teacher_ratio": 0.5},
    "lowfreq_teacher25": {"net": {"max_frequency": 4.0}, "teacher_ratio": 0.25},
    "teacher25": {"teacher_ratio": 0.25},
    "lowfreq_teacher100": {"net": {"max_frequency": 4.0}, "teacher_ratio": 1.0},
    "gate_lowfreq": {"net": {"max_frequency": 4.0, "x_gate": True}},
    "gate_lowfreq_lr3e-4": {"net": {"max_frequency": 4.0, "x_gate": True}, "train": {"lr": 3e-4}},
    "gate_lowfreq_teacher25": {"net": {"max_frequency": 4.0, "x_gate": True}, "teacher_ratio": 0.25},
    "gate_lowfreq_teacher100": {"net": {"max_frequency": 4.0, "x_gate": True}, "teacher_ratio": 1.0},
    "gate_lowfreq_teacher100_p0": {"net": {"max_frequency": 4.0, "x_gate": True}, "teacher_ratio": 1.0,
                                   "adaptive_p": 0.0},
    "gate_lowfreq_teacher25_p0": {"net": {"max_frequency": 4.0, "x_gate": True}, "teacher_ratio": 0.25,
                                  "adaptive_p": 0.0},
    "gate_lowfreq_teacher50_p0": {"net": {"max_frequency": 4.0, "x_gate": True}, "teacher_ratio": 0.5,
                                  "adaptive_p": 0.0},
    "lowfreq_teacher100_p0": {"net": {"max_frequency": 4.0}, "teacher_ratio": 1.0, "adaptive_p": 0.0},
    "lowfreq_lr3e-4_boundary25": {"net": {"max_frequency": 4.0}, "train": {"lr": 3e-4}, "flow_ratio": 0.5,
                                  "boundary_ratio": 0.25},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="itpo/hopper/medium-replay-v0")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--out", default="benchmarks/results/meanflow_variants.csv")
    p.add_argument("--teacher", default=None,
                   help="diffusion bundle of the same dataset for the teacher_ratio variants (its 10-step DDIM sampler)")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    cfg = dataclasses.replace(WorldModelTrainConfig(), dynamics_steps=args.steps, eval_every=max(args.steps // 6, 1))
    train_part, val_part = data.split_episodes(cfg.holdout_fraction, seed=cfg.seed)  # as train_world_model
    norms = {"obs": StateNormalizer.fit(train_part.observations), "act": StateNormalizer.fit(train_part.actions),
             "delta": StateNormalizer.fit(train_part.next_observations - train_part.observations)}
    device = torch.device("cpu")
    train, val = DataTensors(train_part, norms, device), DataTensors(val_part, norms, device)
    teacher = teacher_from_bundle(WorldModel.load(args.teacher), norms, device) if args.teacher else None
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
            if over.pop("mlp", False):  # reference: the deterministic same-net regression at the same budget
                mf_cfg = MeanFlowConfig()
                model: Dynamics = MLPDynamics(data.obs_dim, data.act_dim, MLPDynamicsConfig(**over))
            else:
                mf_cfg = dataclasses.replace(MeanFlowConfig(), **over)
                model = MeanFlowDynamics(data.obs_dim, data.act_dim, mf_cfg)
            if mf_cfg.teacher_ratio > 0 and teacher is None:
                raise SystemExit(f"variant {name} needs --teacher <diffusion bundle of {args.dataset}>")
            comp = dynamics_component("dynamics", model, train, val, cfg.batch_size, args.steps, teacher=teacher)
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
