"""The one resumable training loop: world-model parts and ``itpo improve`` (:func:`fit_component`) and the
base-policy trainers (``itpo_lab.offline.TrainLoop``, TD3+BC and ReBRAC) all run on it.

The plumbing, once (:mod:`itpo_wrap.training.resumable`, re-exported here): :class:`Loop` counts updates
(continuing after a checkpoint's step), keeps the wall clock across resumed segments, says when to log, evaluate
and checkpoint, measures ``updates_per_s`` and shows a progress bar; :class:`Checkpoints` writes checkpoints
atomically and loads the newest readable one with ``weights_only=True``; :func:`collect_state` /
:func:`restore_state` save and restore modules, optimizers, schedulers and ``torch.Generator`` states by name.
Minibatches come from a checkpointed generator, so a killed and resumed run ends bit-identical to an
uninterrupted one. Metric rows go to :mod:`itpo_wrap.training.metrics` (one row model, one ``metrics.csv`` layout).

The update is the caller's. A :class:`Component` is one module and one loss (a minibatch drawn with the part's
own generator, so results do not depend on which thread runs it) and :func:`fit_component` trains it with AdamW
(warmup then cosine decay, grad clipping, optional weight average), checkpointing ``<run_dir>/<name>.ckpt.pt``;
the base-policy trainers plug in their actor-critic update with its own optimizers and target networks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from itpo_wrap.training.metrics import MetricsLog
from itpo_wrap.training.resumable import Checkpoints, Loop, collect_state, restore_state

__all__ = ["Checkpoints", "Component", "EvalFn", "Loop", "LossFn", "MetricsLog", "collect_state", "fit_component",
           "restore_state"]

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


class _Average:
    """Exponential average of the trainable weights at decay ``min(decay, (1 + n) / (10 + n))`` after update ``n``
    (0-based): warm-started, so early averages are not dominated by the random init."""

    def __init__(self, params: list[torch.Tensor], decay: float) -> None:
        self.params, self.decay = params, decay
        self.avg = [p.detach().clone() for p in params]

    def update(self, n: int) -> None:
        with torch.no_grad():
            torch._foreach_lerp_(self.avg, self.params, 1.0 - min(self.decay, (1.0 + n) / (10.0 + n)))

    def swap(self) -> None:
        """Exchange live and averaged weights (twice restores them): evaluation sees the average."""
        with torch.no_grad():
            for p, e in zip(self.params, self.avg, strict=True):
                tmp = p.detach().clone()
                p.copy_(e)
                e.copy_(tmp)

    def finish(self) -> None:
        """The part leaves training with its averaged weights."""
        with torch.no_grad():
            for p, e in zip(self.params, self.avg, strict=True):
                p.copy_(e)


def _lr_factor(step: int, total: int, warmup: int, final: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _restore(comp: Component, state: dict[str, Any], objects: dict[str, Any], ema: _Average | None,
             where: Path) -> None:
    restore_state(state, **objects)
    restore_state(state["extra"], **comp.extra)
    if ema is not None:
        if "ema" not in state:
            raise ValueError(f"{where} was written without ema_decay; resume with the run's own config "
                             "or start a fresh run (--no-resume)")
        for e, saved in zip(ema.avg, state["ema"], strict=True):
            e.copy_(saved)


def _snapshot(comp: Component, objects: dict[str, Any], ema: _Average | None) -> dict[str, Any]:
    """What a part's checkpoint holds besides its position (the inverse of :func:`_restore`)."""
    ema_state = {"ema": [e.clone() for e in ema.avg]} if ema is not None else {}
    return {**collect_state(**objects), "extra": collect_state(**comp.extra), **ema_state}


def _update(comp: Component, cfg: Any, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
            ) -> dict[str, torch.Tensor]:
    loss, metrics = comp.loss(gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(comp.module.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return metrics


def _evaluate(comp: Component, ema: _Average | None) -> dict[str, float]:
    assert comp.evaluate is not None
    comp.module.eval()
    if ema is not None:
        ema.swap()
    with torch.no_grad():
        out = comp.evaluate()
    if ema is not None:
        ema.swap()
    comp.module.train()
    return out


def fit_component(comp: Component, cfg: Any, run_dir: Path, log: MetricsLog, seed: int,
                  position: int = 0, progress: bool = True) -> dict[str, float]:
    """Train ``comp`` for its budget, resuming from its checkpoint when one exists (and dropping its
    ``metrics.csv`` rows written after that checkpoint).

    :param comp: the part.
    :param cfg: a ``WorldModelTrainConfig`` (optimiser, ``ema_decay`` and logging settings).
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
    ema_decay = float(getattr(cfg, "ema_decay", 0.0))
    ema = _Average([p for p in comp.module.parameters() if p.requires_grad], ema_decay) if ema_decay > 0 else None
    objects = {"module": comp.module, "optimizer": opt, "scheduler": sched, "generator": gen}
    loop = Loop(comp.steps, log_every=cfg.log_every, eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                desc=comp.name, position=position, progress=progress)
    store = Checkpoints(run_dir, comp.name)
    if (state := store.load(map_location=device)) is not None:
        _restore(comp, state, objects, ema, store.path(0))
        loop.resume_at(int(state["step"]), float(state["wall_s"]))
    log.truncate_after(loop.start, comp.name)
    comp.module.train()
    last_eval: dict[str, float] = {}
    done = loop.start
    for done in loop:
        metrics = _update(comp, cfg, opt, sched, gen)
        if ema is not None:
            ema.update(done - 1)
        if comp.after_step is not None:
            comp.after_step()
        if loop.due_log(done):
            row = {**{k: float(v) for k, v in metrics.items()}, "lr": opt.param_groups[0]["lr"],
                   "updates_per_s": loop.rate(done)}
            loop.show({k: f"{v:.3g}" for k, v in list(row.items())[:2]})
            log.write(comp.name, done, loop.elapsed(), row)
        if comp.evaluate is not None and loop.due_eval(done):
            with loop.pause():
                last_eval = _evaluate(comp, ema)
            log.write(comp.name, done, loop.elapsed(), {f"val_{k}": v for k, v in last_eval.items()})
        if loop.due_checkpoint(done):
            with loop.pause():
                store.save(done, loop.elapsed(), _snapshot(comp, objects, ema))
    if ema is not None:
        ema.finish()
    comp.module.eval()
    segment = loop.segment_s()
    return {"steps": float(done), "wall_s": loop.elapsed(),
            "updates_per_s": (done - loop.start) / segment if done > loop.start else float("nan"),
            **{f"val_{k}": v for k, v in last_eval.items()}}
