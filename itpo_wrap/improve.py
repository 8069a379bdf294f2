"""``itpo improve``: improve a base policy once, offline, by first-order ascent on the imagined return J
through its world model, so the gain costs nothing at inference (issue 24; ``docs/improve.md``).

``predict()`` optimises J at one real state per env step (METHOD.md section 3). Here the same J, the same
rollout, masks, soft termination discount and terminal critic (:func:`itpo_wrap.objective.particle_returns`
with ``ImproveConfig.objective_config()``), is averaged over batches of the dataset's states and its
gradient trains the policy's own parameters, as PWM extracts policies from a pretrained world model
(Georgiev et al. 2025: first-order gradients through the model, return normalisation, grad-norm clip 1.0).
Per step, ``B`` dataset states with ``M`` particles each on a fresh fixed noise bank::

    J(s_i) = mean_m [ sum_{j<H} gamma^j S_j r(s~_j, a~_j) + gamma^H S_H min_k Q_k(s~_H, pi(s~_H)) ]
    loss   = -alpha / mean_i|J(s_i)| * mean_i J(s_i) + mean_i ||pi(s_i) - a_i||^2      (TD3+BC, eq. 3)
    psi   <- Adam(clip(grad loss, 1.0)), then projected onto ||psi - psi_0|| <= max_drift ||psi_0||

Safety: the regulariser (``a_i`` the base's own action, or the dataset's) and the drift bound keep the
policy near the data; held-out episodes give validation states (a fixed noise bank: the best validated step
is kept) and verdict states (noise no step saw), where the improved and the base policy's J are paired
state by state (:func:`itpo_wrap.objective.paired_gate`). **An improved policy whose held-out imagined return
does not beat the base's by ``verdict_z`` standard errors is never returned or saved**: the base is.

Resumable: with a ``run_dir``, the loop (:func:`itpo_wrap.training.loop.fit_component`) checkpoints the
policy, Adam, the generator and the best step; rerunning with the same arguments continues and ends where an
uninterrupted run ends, bit for bit. The terminal critic is the base's, and stays so in the saved policy.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.minari import load_dataset
from itpo_wrap.improve_config import ImproveConfig
from itpo_wrap.improve_field import FieldCheck, field_check, load_snapshot, save_snapshot, snapshot_steps
from itpo_wrap.improve_result import ImproveResult, Verdict, make_result
from itpo_wrap.improve_run import (
    LoopSettings,
    Setup,
    check_model,
    frozen,
    open_run,
    prepare,
    projection,
    std_error,
)
from itpo_wrap.objective import paired_gate
from itpo_wrap.training.loop import Component, EvalFn, LossFn, MetricsLog, fit_component


def improve_policy(policy: Any, world_model: Any, dataset: OfflineDataset | str | Path,
                   config: ImproveConfig | None = None, *, run_dir: str | Path | None = None,
                   progress: bool = True, make_env: Callable[[], Any] | None = None) -> ImproveResult:
    """Improve ``policy`` offline by first-order ascent on J through ``world_model`` over ``dataset``'s states.

    Everything is checked (settings, the model's recorded accuracy, the pairing of policy, model and data, a
    resumed run's settings) before a file is written. The base policy is never modified.

    :param policy: a zoo entry (``zoo.load(...)``: its policy, and :meth:`ImproveResult.save` can write it
        back), an SB3 SAC/TD3/DDPG model or a torch actor (anything ``make_adapter`` takes).
    :param world_model: its world model, with the base's critic attached (``entry.load_world_model(kind)``).
    :param dataset: the offline dataset the start states come from (an ``OfflineDataset``, a Minari id or path).
    :param config: the settings (default :class:`ImproveConfig`).
    :param run_dir: keep checkpoints, ``metrics.csv``, ``config.json`` and ``result.json`` here, and resume
        from them; ``None``: a temporary folder, removed at the end.
    :param progress: show a progress bar.
    :param make_env: a fresh Gymnasium env per call (e.g. ``entry.make_env``): then the base and the policy at
        every validated step run one full episode per ``config.env_seeds`` tuning seed, and only a step that
        beats the base there, paired by seed, by ``verdict_z`` standard errors is kept
        (:mod:`itpo_wrap.improve_field`); the offline verdict is still computed and reported. ``None``: the
        offline verdict alone decides, and it cannot see the world model being exploited (``docs/improve.md``).
    """
    start = time.perf_counter()
    cfg = config if config is not None else ImproveConfig()
    if not isinstance(cfg, ImproveConfig):
        raise TypeError(f"config must be an ImproveConfig, got {type(cfg).__name__}")
    source = policy if hasattr(policy, "actor") and hasattr(policy, "load_world_model") else None
    base = source.policy if source is not None else policy
    data = dataset if isinstance(dataset, OfflineDataset) else load_dataset(dataset)
    check_model(world_model, cfg.model_check)
    with torch.inference_mode(False), torch.enable_grad(), frozen(world_model):
        setup = prepare(base, copy.deepcopy(base), world_model, data, cfg)
        with tempfile.TemporaryDirectory(prefix="itpo-improve-") as tmp:
            folder = Path(run_dir) if run_dir is not None else Path(tmp)
            done = open_run(folder, setup.identity(cfg, data))
            best = _Best(float(setup.val_base.mean()))
            fit = _fit(setup, world_model, cfg, best, folder, done, progress)
            field = None if make_env is None else _field(setup, base, world_model, make_env, cfg, folder, progress)
            with torch.no_grad():
                kept = int(best.step) if field is None else field.chosen
                torch._foreach_copy_(setup.adapter.params, _params_at(setup, folder, kept))
                verdict = _verdict(setup, world_model, cfg)
            result = make_result(setup, base, source, verdict, int(best.step), fit, cfg, run_dir, start, field)
            (folder / "result.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result


class _Best(nn.Module):
    """The best validated step and its mean validation J, as buffers: saved with the loop's checkpoint
    (``Component.extra``), so a resumed run keeps the same best. Its parameters are that step's snapshot
    (every validated step is kept on disk for the real-env check), so they are not held twice."""

    score: torch.Tensor
    step: torch.Tensor

    def __init__(self, score: float) -> None:
        super().__init__()
        self.register_buffer("score", torch.tensor(score, dtype=torch.float64))
        self.register_buffer("step", torch.tensor(0, dtype=torch.int64))

    def offer(self, score: float, step: int) -> None:
        """Keep ``step`` if its validation J beats the best so far (strictly: the base is step 0)."""
        if score > float(self.score):
            self.score.fill_(score)
            self.step.fill_(step)


def _params_at(setup: Setup, folder: Path, step: int) -> list[torch.Tensor]:
    """The parameters validated at ``step`` (``0``: the base's)."""
    return setup.anchor if step == 0 else load_snapshot(folder, step, setup.adapter.params)


def _field(setup: Setup, base: Any, wm: Any, make_env: Callable[[], Any], cfg: ImproveConfig, folder: Path,
           progress: bool) -> FieldCheck:
    """The real-env check over every validated step of this run (:mod:`itpo_wrap.improve_field`)."""

    def policy_at(step: int) -> Any:
        if step == 0:
            return base
        with torch.no_grad():
            torch._foreach_copy_(setup.adapter.params, _params_at(setup, folder, step))
        return setup.improved

    steps = snapshot_steps(folder, cfg.steps)
    return field_check(policy_at, wm, make_env, steps, cfg.env_seeds, cfg.verdict_z,
                       progress=print if progress else None)


def _fit(setup: Setup, wm: Any, cfg: ImproveConfig, best: _Best, folder: Path, done: int,
         progress: bool) -> dict[str, float]:
    """The resumable loop (Adam, grad clip, checkpoints, metrics, progress bar) of ``fit_component``."""
    counter = [done]  # steps taken: the validation records which step it kept
    comp = Component("improve", setup.adapter.module, _loss(setup, wm, cfg, counter), cfg.steps,
                     evaluate=_validation(setup, wm, cfg, best, counter, folder), after_step=projection(setup, cfg.max_drift),
                     extra={"best": best})
    log = MetricsLog(folder)
    try:
        return fit_component(comp, LoopSettings.of(cfg), folder, log, seed=cfg.seed, progress=progress)
    finally:
        log.close()


def _loss(setup: Setup, wm: Any, cfg: ImproveConfig, counter: list[int]) -> LossFn:
    """TD3+BC's actor loss with J for Q (module docstring); ``B`` states, a fresh fixed bank per batch."""

    def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.randint(0, setup.train_obs.shape[0], (cfg.batch_size,), generator=gen)
        s = setup.train_obs[idx]
        j = setup.returns(setup.policy, s, wm.draw_noise(cfg.batch_size * cfg.particles, cfg.horizon, gen))
        if not bool(torch.isfinite(j).all()):
            raise ValueError(f"the imagined return is not finite at step {counter[0] + 1}; lower lr (now {cfg.lr}) "
                             "or set a smaller max_drift")
        scale = 1.0 / j.detach().abs().mean().clamp_min(1e-6)  # PWM's return normalisation, TD3+BC's lambda
        if cfg.bc_target == "none":
            total, bc = -scale * j.mean(), torch.zeros(())
        else:
            target = setup.base_action(s) if cfg.bc_target == "base" else setup.train_actions[idx]
            bc = F.mse_loss(setup.adapter.forward(s), target)
            total = -cfg.alpha * scale * j.mean() + bc
        counter[0] += 1
        return total, {"j": j.mean().detach(), "bc_mse": bc.detach(), "lambda": scale}

    return loss


def _validation(setup: Setup, wm: Any, cfg: ImproveConfig, best: _Best, counter: list[int], folder: Path) -> EvalFn:
    """Mean J on the validation states (one fixed bank, paired with the base's); keeps the best step, and
    every validated step's parameters (the real-env check's candidates)."""

    def evaluate() -> dict[str, float]:
        j = setup.returns(setup.policy, setup.val_obs, setup.val_noise)
        gain = j - setup.val_base
        save_snapshot(folder, counter[0], setup.adapter.params)
        best.offer(float(j.mean()), counter[0])
        change = (setup.adapter.forward(setup.val_obs) - setup.base_action(setup.val_obs)).abs().mean()
        return {"j": float(j.mean()), "gain": float(gain.mean()), "gain_se": std_error(gain),
                "worse_share": float((gain < 0).double().mean()), "drift": setup.drift(),
                "action_change": float(change), "best_step": float(best.step)}

    return evaluate


def _verdict(setup: Setup, wm: Any, cfg: ImproveConfig) -> Verdict:
    """The kept parameters against the base on the verdict states, paired state by state."""
    j_new = setup.returns(setup.policy, setup.verdict_obs, setup.verdict_noise)
    j_base = setup.returns(setup.base_policy, setup.verdict_obs, setup.verdict_noise)
    gain = j_new - j_base
    accepted = bool(paired_gate(j_new[None].double(), j_base[None].double(), cfg.objective_config())[0])
    return Verdict(float(j_base.mean()), float(j_new.mean()), float(gain.mean()), std_error(gain),
                   float((gain < 0).double().mean()), int(gain.numel()), cfg.particles, accepted)
