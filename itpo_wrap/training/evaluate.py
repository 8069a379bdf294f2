"""``evaluate_world_model``: how accurate is a bundle on held-out episodes, and what does the
generative dynamics buy over the same-budget deterministic MLP (issue 3, item 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.world_model.model import WorldModel

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def heldout_part(wm: WorldModel, dataset: OfflineDataset) -> OfflineDataset:
    """The episodes the bundle held out in training, when ``dataset`` is the one it was trained on;
    otherwise ``dataset`` itself (then pass data the model never saw).

    :param wm: the bundle (its ``info`` records the held-out episode ids).
    :param dataset: the full dataset or a separate evaluation set.
    """
    ids = wm.info.get("holdout_episode_ids")
    if ids and wm.info.get("num_transitions") == len(dataset):
        return dataset.select_episodes(np.asarray(ids))
    return dataset


def _starts(data: OfflineDataset, horizon: int, max_starts: int, rng: np.random.Generator) -> np.ndarray:
    """Rows i whose next ``horizon`` rows stay in the same episode (rows are in time order)."""
    n = len(data) - horizon + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    ok = data.episode_ids[:n] == data.episode_ids[horizon - 1:]
    idx = np.nonzero(ok)[0]
    return idx if len(idx) <= max_starts else np.sort(rng.choice(idx, max_starts, replace=False))


@torch.no_grad()
def _dynamics_metrics(step: StepFn, data: OfflineDataset, std: torch.Tensor, horizon: int, rows: np.ndarray,
                      starts: np.ndarray, device: torch.device) -> dict[str, Any]:
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=device)

    err = step(t(data.observations[rows]), t(data.actions[rows])) - t(data.next_observations[rows])
    out: dict[str, Any] = {
        "one_step_rmse": float(err.pow(2).mean().sqrt()),
        "one_step_rmse_state_std": float((err / std).pow(2).mean().sqrt()),
        "one_step_rmse_state_std_per_dim": (err / std).pow(2).mean(dim=0).sqrt().tolist(),
    }
    s = t(data.observations[starts])
    raw, normed = [], []
    for h in range(horizon):
        s = step(s, t(data.actions[starts + h]))
        e = s - t(data.next_observations[starts + h])
        raw.append(float(e.pow(2).mean().sqrt()))
        normed.append(float((e / std).pow(2).mean().sqrt()))
    out["open_loop_rmse"], out["open_loop_rmse_state_std"] = raw, normed
    return out


@torch.no_grad()
def evaluate_world_model(wm: WorldModel, dataset: OfflineDataset, *, horizon: int = 10, max_rows: int = 50_000,
                         max_starts: int = 2_000, seed: int = 0, heldout: bool = True) -> dict[str, Any]:
    """One-step RMSE (raw and in units of the per-dimension state std), open-loop error for
    H = 1..horizon under the dataset's actions, reward RMSE and termination accuracy, for the
    bundle's dynamics and (when saved) its MLP baseline.

    The state std is the one of the bundle's training split (its obs normalizer), so the normalized
    numbers are comparable across models of the same dataset. Stochastic models are scored on one
    sample per row (what the adaptation loop uses), with a seeded generator.

    :param wm: the bundle.
    :param dataset: the dataset (its held-out episodes are used when it is the training dataset).
    :param horizon: longest open-loop horizon.
    :param max_rows: cap on rows for the one-step metrics (random subset).
    :param max_starts: cap on open-loop start rows.
    :param seed: subset and sampling seed.
    :param heldout: use the bundle's held-out episodes (else all of ``dataset``).
    """
    if dataset.obs_dim != wm.obs_dim or dataset.act_dim != wm.act_dim:
        raise ValueError(f"dataset has (obs_dim, act_dim)=({dataset.obs_dim}, {dataset.act_dim}) but the world model "
                         f"has ({wm.obs_dim}, {wm.act_dim}); evaluate on the dataset it was trained for")
    data = heldout_part(wm, dataset) if heldout else dataset
    rng = np.random.default_rng(seed)
    device = wm.action_low.device
    rows = np.arange(len(data)) if len(data) <= max_rows else np.sort(rng.choice(len(data), max_rows, replace=False))
    starts = _starts(data, horizon, max_starts, rng)
    std = wm.obs_std
    gen = torch.Generator(device=device).manual_seed(seed)

    def sample_step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return wm.next(s, a, wm.draw_noise(s.shape[0], 1, gen)[0])

    result: dict[str, Any] = {"rows": len(rows), "open_loop_starts": len(starts), "episodes": data.num_episodes,
                              "dynamics_kind": wm.dynamics.kind}
    result["dynamics"] = _dynamics_metrics(sample_step, data, std, horizon, rows, starts, device)
    if wm.baseline is not None:
        result["baseline"] = _dynamics_metrics(wm.baseline_next, data, std, horizon, rows, starts, device)
    s, a = torch.as_tensor(data.observations[rows], device=device), torch.as_tensor(data.actions[rows], device=device)
    r = torch.as_tensor(data.rewards[rows], device=device)
    r_err = wm.reward(s, a) - r
    result["reward_rmse"] = float(r_err.pow(2).mean().sqrt())
    result["reward_rmse_reward_std"] = result["reward_rmse"] / max(float(r.std()), 1e-8)
    done = torch.as_tensor(data.terminations[rows], device=device)
    pred = wm.terminated(torch.as_tensor(data.next_observations[rows], device=device))
    result["termination_accuracy"] = float((pred == done).float().mean())
    pos, neg = done, ~done
    result["termination_recall"] = float(pred[pos].float().mean()) if bool(pos.any()) else float("nan")
    result["termination_false_positive_rate"] = float(pred[neg].float().mean()) if bool(neg.any()) else float("nan")
    result["terminal_rows"] = int(pos.sum())
    return result


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten an evaluation into CSV rows (one per model and horizon) for tables and plots."""
    rows = []
    for model in ("dynamics", "baseline"):
        if model not in result:
            continue
        m = result[model]
        name = result["dynamics_kind"] if model == "dynamics" else "mlp_baseline"
        for h, (raw, normed) in enumerate(zip(m["open_loop_rmse"], m["open_loop_rmse_state_std"], strict=True), 1):
            rows.append({"model": name, "horizon": h, "rmse": raw, "rmse_state_std": normed})
    return rows
