"""``train_world_model``: fit every part of a bundle on an ``OfflineDataset`` and assemble it."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itpo_wrap._version import __version__
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.tensorboard import check_tensorboard, open_run
from itpo_wrap.training.config import WorldModelTrainConfig, upgrade_dict
from itpo_wrap.training.loop import Component, MetricsLog, fit_component
from itpo_wrap.training.parts import (
    DataTensors,
    Policy,
    dynamics_component,
    fqe_component,
    reward_component,
    termination_component,
)
from itpo_wrap.utils import get_device, set_seed
from itpo_wrap.world_model.config import MLPDynamicsConfig, NetConfig
from itpo_wrap.world_model.dynamics import Dynamics, MLPDynamics
from itpo_wrap.world_model.heads import CriticHead, RewardHead, TerminationHead
from itpo_wrap.world_model.kinds import get_kind
from itpo_wrap.world_model.model import WorldModel


def _bounds(data: OfflineDataset) -> tuple[np.ndarray, np.ndarray]:
    space = data.action_space
    if space is not None and hasattr(space, "low"):
        return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    # Synthetic data without a space: the data's own range (MuJoCo's Box is [-1, 1]).
    lo, hi = data.actions.min(axis=0), data.actions.max(axis=0)
    return np.minimum(lo, -1.0).astype(np.float32), np.maximum(hi, 1.0).astype(np.float32)


def _check_dataset(data: OfflineDataset) -> None:
    for name in ("observations", "actions", "rewards", "next_observations"):
        arr = getattr(data, name)
        if not np.all(np.isfinite(arr)):
            rows = np.nonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0]
            raise ValueError(f"dataset {data.dataset_id or '<synthetic>'} has NaN/inf in {name} (rows {rows[:5].tolist()}"
                             f"...); clean or drop those episodes before training")
    if len(data) < 2:
        raise ValueError(f"dataset has {len(data)} transitions; a world model needs at least a few thousand")


def _same_setting(saved: Any, now: Any, default: Any) -> bool:
    """Equal, where a key missing from the saved dict counts as its default."""
    if isinstance(now, dict) and isinstance(saved, dict):
        d = default if isinstance(default, dict) else {}
        return all(_same_setting(saved[k], now[k], d.get(k)) if k in saved else now[k] == d.get(k) for k in now)
    return bool(saved == now)


def _prepare_run_dir(run_dir: Path, cfg: WorldModelTrainConfig, resume: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    current = json.loads(json.dumps(cfg.to_dict()))
    defaults = json.loads(json.dumps(WorldModelTrainConfig(dynamics=cfg.dynamics).to_dict()))
    if cfg_path.exists() and resume:
        saved = upgrade_dict(json.loads(cfg_path.read_text()))  # a run dir from before the kinds registry
        # What cannot change the result is not compared: the sampler's step count (chosen at sampling
        # time), and fields a newer version added with their default value (a run from before them is the
        # same run).
        ignore = {"workers", "num_threads", "device", "log_every"}
        if saved.get("dynamics") == cfg.dynamics and isinstance(saved.get("dynamics_config"), dict):
            # read as a bundle's config is read: a removed option at its no-op value is dropped (any other
            # refused), a field an older file lacks takes the default it had then
            rebuilt = get_kind(cfg.dynamics).config_from_dict(saved["dynamics_config"])
            saved["dynamics_config"] = json.loads(json.dumps(dataclasses.asdict(rebuilt)))
        for d in (saved.get("dynamics_config"), current["dynamics_config"], defaults["dynamics_config"]):
            if isinstance(d, dict):
                d.pop("num_inference_steps", None)
        diff = {k: (saved.get(k), current[k]) for k in current
                if k not in ignore and not _same_setting(saved.get(k), current[k], defaults.get(k))}
        if diff:
            raise ValueError(f"run dir {run_dir} holds a run with another config (saved vs now: {diff}); "
                             "resume with the same settings, pass resume=False (--no-resume) or use another --out")
    elif not resume:
        for old in [*run_dir.glob("*.ckpt.pt"), run_dir / "metrics.csv"]:
            old.unlink(missing_ok=True)
    cfg_path.write_text(json.dumps(current, indent=2))


def _tensorboard_name(dataset: OfflineDataset, cfg: WorldModelTrainConfig) -> str:
    """``wm_<kind>-<zoo entry>`` (``wm_<kind>`` for data without a standard dataset id)."""
    from itpo_wrap.zoo import entry_name

    try:
        return f"wm_{cfg.dynamics}-{entry_name(dataset.dataset_id or '')}"
    except ValueError:
        return f"wm_{cfg.dynamics}"


def _dynamics_models(cfg: WorldModelTrainConfig, obs_dim: int, act_dim: int,
                     device: torch.device) -> tuple[Dynamics, MLPDynamics | None]:
    """The chosen kind's dynamics and, with ``cfg.baseline``, the deterministic MLP on the same network."""
    kind = get_kind(cfg.dynamics)
    dynamics = kind.build(obs_dim, act_dim, cfg.kind_config()).to(device)
    if not cfg.baseline:
        return dynamics, None
    net = getattr(cfg.kind_config(), "net", None)  # a kind without a ``net`` gets the baseline's default one
    base_cfg = MLPDynamicsConfig(net=net if isinstance(net, NetConfig) else NetConfig())
    return dynamics, MLPDynamics(obs_dim, act_dim, base_cfg).to(device)


def train_world_model(
    dataset: OfflineDataset, cfg: WorldModelTrainConfig | None = None, out: str | os.PathLike[str] | None = None, *,
    run_dir: str | os.PathLike[str] | None = None, critic: CriticHead | None = None, policy: Policy | None = None,
    teacher: WorldModel | None = None, resume: bool = True,
    progress: bool = True, tensorboard: str | os.PathLike[str] | None = None,
) -> WorldModel:
    """Train dynamics, the same-budget MLP baseline, reward and termination heads (and an FQE
    critic when ``policy`` is given without ``critic``) and assemble a ``WorldModel``.

    Episodes are split into train / held-out (``cfg.holdout_fraction``, ``cfg.seed``); normalizers
    are fitted on the train part; the held-out episode ids are stored in ``wm.info`` so
    ``evaluate_world_model`` scores on exactly those.

    :param dataset: the offline data (env units).
    :param cfg: budgets and settings (defaults: ``WorldModelTrainConfig()``).
    :param out: where to save the bundle (``None``: do not save).
    :param run_dir: checkpoints, ``metrics.csv``, ``config.json`` (default ``<out>.run``).
    :param critic: a ready terminal critic to attach (e.g. ``CriticHead.from_sb3(model)``).
    :param policy: raw obs -> env action; with no ``critic``, a critic is fitted by FQE of it.
    :param teacher: a bundle the kind distils from, handed to its ``loss_inputs`` hook
        (:mod:`itpo_wrap.world_model.kinds`): for ``meanflow`` (``teacher_ratio > 0``, the default) a diffusion
        bundle of the same dataset, holdout and seed whose DDIM sampler gives the one-step targets.
    :param resume: continue from the checkpoints in ``run_dir``.
    :param progress: show progress bars.
    :param tensorboard: also write the metrics as TensorBoard scalars under ``<tensorboard>/wm_<kind>-<entry>_<n>``
        (``--tensorboard``; needs ``pip install 'itpo-wrap[tensorboard]'``). A run option, not a config field: it
        does not change what is trained, so resuming with or without it is the same run. A resumed run appends
        to the folder it used before; steps between a part's last checkpoint and the interruption then appear
        twice there (parts resume from different steps, and TensorBoard can only hide a restart's stale steps for
        all tags at once), while ``metrics.csv`` drops each part's rows written after its checkpoint.
    """
    cfg = cfg or WorldModelTrainConfig()
    check_tensorboard(tensorboard)  # a missing package fails here, before the run dir is touched
    _check_dataset(dataset)
    kind = get_kind(cfg.dynamics)
    kind.check_run(cfg.kind_config(), teacher)
    torch.set_num_threads(cfg.num_threads)
    set_seed(cfg.seed)
    device = get_device(cfg.device)
    if run_dir is None:
        run_dir = Path(f"{out}.run") if out is not None else Path("runs/world_model") / f"{cfg.dynamics}-{int(time.time())}"
    run_dir = Path(run_dir)
    _prepare_run_dir(run_dir, cfg, resume)

    train, hold = dataset.split_episodes(cfg.holdout_fraction, seed=cfg.seed)
    norms = _normalizers(train)
    tr, va = DataTensors(train, norms, device), DataTensors(hold, norms, device)
    dynamics, baseline = _dynamics_models(cfg, dataset.obs_dim, dataset.act_dim, device)
    reward, termination = _heads(cfg, train, norms, device)
    low, high = _bounds(dataset)

    inputs = kind.loss_inputs(cfg.kind_config(), teacher, norms, device)  # e.g. MeanFlow's teacher map
    groups: list[list[Component]] = [[dynamics_component("dynamics", dynamics, tr, va, cfg.batch_size,
                                                         cfg.dynamics_steps, inputs)],
                                     _side_components(cfg, baseline, reward, termination, tr, va)]
    critic_source = "given" if critic is not None else ("fqe" if policy is not None else None)
    if critic is None and policy is not None:
        critic = _fqe_critic(cfg, dataset, norms)
        groups[1].append(fqe_component(critic.to(device), policy, tr, cfg.batch_size, cfg.critic_steps, cfg.heads))
    if cfg.workers == 1:
        groups = [groups[0] + groups[1]]

    tb = None if tensorboard is None else open_run(tensorboard, _tensorboard_name(dataset, cfg), run_dir, resume=resume)
    summaries, wall_s = _fit_groups(groups, cfg, run_dir, MetricsLog(run_dir, tb), progress)
    info: dict[str, Any] = {
        "dataset_id": dataset.dataset_id, "num_transitions": len(dataset), "train_config": cfg.to_dict(),
        "holdout_episode_ids": [int(x) for x in np.unique(hold.episode_ids)], "summaries": summaries,
        "train_wall_s": wall_s, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "itpo_version": __version__, "critic_source": critic_source,
    }
    wm = WorldModel(dynamics, reward, termination, critic, norms["obs"], norms["act"], norms["delta"], low, high,
                    env_id=dataset.env_id, baseline=baseline, info=info)
    if out is not None:
        wm.save(out)
    return wm


def _normalizers(data: OfflineDataset) -> dict[str, StateNormalizer]:
    """The bundle's normalisers, fitted on ``data`` (the training episodes): observations, actions and
    state deltas."""
    return {"obs": StateNormalizer.fit(data.observations), "act": StateNormalizer.fit(data.actions),
            "delta": StateNormalizer.fit(data.next_observations - data.observations)}


def _heads(cfg: WorldModelTrainConfig, train: OfflineDataset, norms: dict[str, StateNormalizer],
           device: torch.device) -> tuple[RewardHead, TerminationHead]:
    """The reward and termination heads, with the training data's statistics; the termination head skips its
    network when the data never terminates."""
    stats = {"obs_mean": norms["obs"].mean, "obs_std": norms["obs"].std, "act_mean": norms["act"].mean,
             "act_std": norms["act"].std, "reward_mean": np.float32(train.rewards.mean()),
             "reward_std": np.float32(max(float(train.rewards.std()), 1e-6))}
    reward = RewardHead(train.obs_dim, train.act_dim, cfg.heads.reward_hidden, stats).to(device)
    never = not bool(train.terminations.any())
    termination = TerminationHead(train.obs_dim, cfg.heads.termination_hidden, never, stats).to(device)
    return reward, termination


def _side_components(cfg: WorldModelTrainConfig, baseline: MLPDynamics | None, reward: RewardHead,
                     termination: TerminationHead, tr: DataTensors, va: DataTensors) -> list[Component]:
    """The parts trained beside the dynamics (on a second worker with ``cfg.workers == 2``): the MLP baseline,
    the reward head and, unless the data never terminates, the termination head."""
    side: list[Component] = []
    if baseline is not None:
        side.append(dynamics_component("baseline", baseline, tr, va, cfg.batch_size, cfg.dynamics_steps))
    side.append(reward_component(reward, tr, va, cfg.batch_size, cfg.reward_steps))
    if not termination.never_terminates:
        side.append(termination_component(termination, tr, va, cfg.batch_size, cfg.termination_steps,
                                          cfg.heads.termination_pos_weight))
    return side


def _fqe_critic(cfg: WorldModelTrainConfig, data: OfflineDataset, norms: dict[str, StateNormalizer]) -> CriticHead:
    """A fresh twin critic for FQE (``cfg.heads``' widths), reading observations with ``norms["obs"]``."""
    critic = CriticHead(data.obs_dim, data.act_dim, cfg.heads.critic_hidden, 2, "relu", cfg.heads.critic_layernorm)
    critic.obs_norm.mean.copy_(torch.as_tensor(norms["obs"].mean))
    critic.obs_norm.std.copy_(torch.as_tensor(norms["obs"].std))
    return critic


def _fit_groups(groups: list[list[Component]], cfg: WorldModelTrainConfig, run_dir: Path, log: MetricsLog,
                progress: bool) -> tuple[dict[str, dict[str, float]], float]:
    """Fit each group of parts on a thread of its own (the groups in parallel, a group's parts in turn) and
    close ``log``.

    :return: every part's summary by name, and the wall time: across resumes each part's checkpoint carries
        its own cumulative time, and the groups ran in parallel.
    """
    seeds = {name: cfg.seed * 1000 + i for i, name in enumerate(("dynamics", "baseline", "reward", "termination", "critic"))}

    def run(pos: int, comps: list[Component]) -> dict[str, dict[str, float]]:
        torch.set_num_threads(cfg.num_threads)
        return {c.name: fit_component(c, cfg, run_dir, log, seeds[c.name], pos, progress) for c in comps}

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(run, pos, comps) for pos, comps in enumerate(groups)]
            summaries = {k: v for f in futures for k, v in f.result().items()}
    finally:
        log.close()
    wall_s = max(time.perf_counter() - start, max(sum(summaries[c.name]["wall_s"] for c in comps) for comps in groups))
    return summaries, wall_s


def fit_fqe(policy: Policy, dataset: OfflineDataset, cfg: WorldModelTrainConfig | None = None, *,
            run_dir: str | os.PathLike[str] = "runs/fqe", resume: bool = False, progress: bool = True) -> CriticHead:
    """Fit a twin critic by fitted Q evaluation of ``policy`` on ``dataset`` (for a plain torch
    policy that comes without a critic). Uses ``cfg.critic_steps``, ``cfg.heads``, ``cfg.batch_size``.

    :param policy: raw obs -> env-space action (a differentiable torch callable).
    :param dataset: the offline data.
    :param cfg: settings (defaults: ``WorldModelTrainConfig()``).
    :param run_dir: checkpoints and metrics.
    :param resume: continue from a checkpoint in ``run_dir``.
    :param progress: show a progress bar.
    """
    cfg = cfg or WorldModelTrainConfig()
    device = get_device(cfg.device)
    run_dir = Path(run_dir)
    _prepare_run_dir(run_dir, cfg, resume)
    norms = _normalizers(dataset)
    tr = DataTensors(dataset, norms, device)
    critic = _fqe_critic(cfg, dataset, norms)
    comp = fqe_component(critic.to(device), policy, tr, cfg.batch_size, cfg.critic_steps, cfg.heads)
    log = MetricsLog(run_dir)
    try:
        fit_component(comp, cfg, run_dir, log, cfg.seed, 0, progress)
    finally:
        log.close()
    return critic.requires_grad_(False)
