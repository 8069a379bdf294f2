"""One resumable training loop for every part of a bundle (dynamics, baseline, heads, FQE critic).

Each part is a ``Component``: a module, a loss over a minibatch drawn with the part's own
``torch.Generator`` (so results do not depend on which thread runs it), and a step budget. The
loop owns the optimiser (AdamW, warmup then cosine decay, grad clipping), the periodic checkpoint
``<run_dir>/<name>.ckpt.pt`` it resumes from, metric rows, and a progress bar.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from itpo_wrap.tensorboard import TensorBoardLog

LossFn = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]
EvalFn = Callable[[], dict[str, float]]


@dataclasses.dataclass
class Component:
    """A trainable part of the bundle.

    :param name: metric namespace and checkpoint name (``dynamics``, ``reward``, ...).
    :param module: the parameters to train (and to checkpoint).
    :param loss: ``loss(generator) -> (loss, metrics)``; draws its own minibatch.
    :param steps: update budget.
    :param evaluate: held-out validation metrics, called every ``eval_every`` steps and at the end.
    :param after_step: hook after each optimiser step (e.g. Polyak averaging of FQE targets).
    :param extra: further modules saved with the checkpoint (e.g. FQE target critics).
    """

    name: str
    module: nn.Module
    loss: LossFn
    steps: int
    evaluate: EvalFn | None = None
    after_step: Callable[[], None] | None = None
    extra: dict[str, nn.Module] = dataclasses.field(default_factory=dict)


class MetricsLog:
    """Thread-safe metric sink: long-format CSV (``component, step, wall_s, metric, value``) and, when given a
    TensorBoard log (``--tensorboard``), the same rows as scalars tagged ``<component>/<metric>``.

    :param run_dir: where ``metrics.csv`` goes (appended on resume).
    :param tensorboard: an :class:`itpo_wrap.tensorboard.TensorBoardLog` (closed with this log); ``None`` writes
        nothing TensorBoard-related.
    """

    def __init__(self, run_dir: Path, tensorboard: TensorBoardLog | None = None) -> None:
        self.path = run_dir / "metrics.csv"
        self._lock = threading.Lock()
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["component", "step", "wall_s", "metric", "value"])
        self._tb = tensorboard

    def write(self, component: str, step: int, wall_s: float, metrics: dict[str, float]) -> None:
        with self._lock:
            for key, value in metrics.items():
                self._csv.writerow([component, step, f"{wall_s:.2f}", f"{component}/{key}", f"{value:.6g}"])
            self._file.flush()
            if self._tb is not None:
                self._tb.write(step, {f"{component}/{key}": value for key, value in metrics.items()})

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _lr_factor(step: int, total: int, warmup: int, final: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def fit_component(comp: Component, cfg: Any, run_dir: Path, log: MetricsLog, seed: int,
                  position: int = 0, progress: bool = True) -> dict[str, float]:
    """Train ``comp`` for its budget, resuming from its checkpoint when one exists.

    :param comp: the part.
    :param cfg: a ``WorldModelTrainConfig`` (optimiser and logging settings).
    :param run_dir: checkpoint directory.
    :param log: metric sink.
    :param seed: seed of this part's generator.
    :param position: progress-bar row (one per worker thread).
    :param progress: show a progress bar.
    :return: summary (``updates_per_s``, ``wall_s``, last validation metrics).
    """
    device = next(comp.module.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    opt = torch.optim.AdamW(comp.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, comp.steps, min(cfg.warmup_steps, comp.steps // 10), cfg.final_lr_fraction))
    ckpt_path = run_dir / f"{comp.name}.ckpt.pt"
    step, wall_before = 0, 0.0
    params: list[torch.Tensor] = [p for p in comp.module.parameters() if p.requires_grad]
    ema_decay = float(getattr(cfg, "ema_decay", 0.0))
    ema = [p.detach().clone() for p in params] if ema_decay > 0 else None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        comp.module.load_state_dict(state["module"])
        for key, mod in comp.extra.items():
            mod.load_state_dict(state["extra"][key])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"].cpu() if device.type == "cpu" else state["generator"])
        step, wall_before = int(state["step"]), float(state["wall_s"])
        if ema is not None:
            if "ema" not in state:
                raise ValueError(f"{ckpt_path} was written without ema_decay; resume with the run's own config "
                                 "or start a fresh run (--no-resume)")
            for e, saved in zip(ema, state["ema"], strict=True):
                e.copy_(saved)

    def save(at: int, wall: float) -> None:
        tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
        torch.save({"step": at, "wall_s": wall, "module": comp.module.state_dict(),
                    "extra": {k: m.state_dict() for k, m in comp.extra.items()}, "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "generator": gen.get_state(),
                    **({"ema": [e.clone() for e in ema]} if ema is not None else {})}, tmp)
        os.replace(tmp, ckpt_path)

    def swap_ema() -> None:
        """Exchange live and averaged weights (twice restores them): evaluation sees the average."""
        if ema is None:
            return
        with torch.no_grad():
            for p, e in zip(params, ema, strict=True):
                tmp = p.detach().clone()
                p.copy_(e)
                e.copy_(tmp)

    comp.module.train()
    bar = tqdm(total=comp.steps, initial=step, desc=comp.name, position=position, leave=True,
               disable=not progress, dynamic_ncols=True, mininterval=1.0)
    start, start_step = time.perf_counter(), step
    last_eval: dict[str, float] = {}
    while step < comp.steps:
        loss, metrics = comp.loss(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(comp.module.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            # warm-started decay (1 + n) / (10 + n): early averages are not dominated by the random init
            decay = min(ema_decay, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - decay)
        if comp.after_step is not None:
            comp.after_step()
        step += 1
        bar.update(1)
        wall = wall_before + time.perf_counter() - start
        if step % cfg.log_every == 0 or step == comp.steps:
            row = {k: float(v) for k, v in metrics.items()}
            row["lr"] = opt.param_groups[0]["lr"]
            row["updates_per_s"] = (step - start_step) / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(row.items())[:2]}, refresh=False)
            log.write(comp.name, step, wall, row)
        if comp.evaluate is not None and (step % cfg.eval_every == 0 or step == comp.steps):
            comp.module.eval()
            swap_ema()
            with torch.no_grad():
                last_eval = comp.evaluate()
            swap_ema()
            comp.module.train()
            log.write(comp.name, step, wall, {f"val_{k}": v for k, v in last_eval.items()})
        if step % cfg.checkpoint_every == 0 or step == comp.steps:
            save(step, wall)
    bar.close()
    if ema is not None:  # the part leaves training with its averaged weights
        with torch.no_grad():
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
    comp.module.eval()
    elapsed = time.perf_counter() - start
    return {"steps": float(step), "wall_s": wall_before + elapsed,
            "updates_per_s": (step - start_step) / elapsed if step > start_step else float("nan"),
            **{f"val_{k}": v for k, v in last_eval.items()}}
