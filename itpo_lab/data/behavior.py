"""Turn one online SB3 SAC run into D4RL-style behaviour artefacts.

D4RL (Fu et al. 2020, section 5) takes its ``expert`` policy from the end of an online SAC run, its
``medium`` policy from the same run at about a third of the expert's performance, and its
``medium-replay`` data from the replay buffer up to that point. Our rule, written down:

- ``expert``: the checkpoint with the highest mean evaluation return (10 stochastic episodes).
- ``medium``: among checkpoints *before* the expert whose mean return lies in
  ``[1/3, 1/2]`` of the expert's, the one closest to ``0.4 x`` the expert's; if none lies in the band,
  the one closest to ``0.4 x`` overall (the card says so).
- ``medium-replay``: every transition the run stored before the medium checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from itpo_lab.remake import command_of

MEDIUM_BAND = (1.0 / 3.0, 0.5)
MEDIUM_TARGET = 0.4


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which checkpoints became ``expert`` and ``medium``, with their evaluation returns."""

    expert_step: int
    expert_return: float
    medium_step: int
    medium_return: float
    medium_in_band: bool


def read_eval_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``policies/sac_behavior.py`` ``eval.csv`` (step, mean_return, std_return, ...).

    Not the training loop's ``metrics.csv``: SB3's own SAC loop writes it from a callback, one row per saved
    checkpoint in environment steps, and the shipped datasets' checkpoint choice was made from these files."""
    with open(path, newline="") as fh:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    if not rows:
        raise ValueError(f"{path} holds no evaluation rows; train the behaviour policy first")
    return rows


def select_checkpoints(rows: list[dict[str, float]]) -> Selection:
    """Apply the module's selection rule to evaluation rows."""
    best = max(rows, key=lambda r: (r["mean_return"], -r["step"]))
    expert_ret = best["mean_return"]
    if expert_ret <= 0:
        raise ValueError(f"the best checkpoint's mean return is {expert_ret:.1f} <= 0; the run has not learned yet")
    before = [r for r in rows if r["step"] < best["step"]]
    if not before:
        raise ValueError("the best checkpoint is the first one; no earlier checkpoint can be 'medium'")
    lo, hi = MEDIUM_BAND[0] * expert_ret, MEDIUM_BAND[1] * expert_ret
    in_band = [r for r in before if lo <= r["mean_return"] <= hi]
    pool = in_band or before
    medium = min(pool, key=lambda r: (abs(r["mean_return"] - MEDIUM_TARGET * expert_ret), r["step"]))
    return Selection(int(best["step"]), expert_ret, int(medium["step"]), medium["mean_return"], bool(in_band))


def replay_buffer_episodes(buffer: Any, upto: int) -> list[dict[str, np.ndarray]]:
    """Split an SB3 ``ReplayBuffer`` (first ``upto`` rows, single env) into Minari-layout episodes.

    An episode ends at ``dones``; SB3 marks time-limit ends in ``timeouts`` (bootstrap allowed, so a
    truncation) and the rest are terminations. A run that was resumed from a checkpoint has a
    discontinuity where ``next_observations[i] != observations[i + 1]`` without a done: that
    episode is closed as truncated too, as is the last one when the data stops mid-episode.
    """
    n = min(int(upto), int(buffer.buffer_size if buffer.full else buffer.pos))
    obs = buffer.observations[:n, 0].astype(np.float32)
    nxt = buffer.next_observations[:n, 0].astype(np.float32)
    act = buffer.actions[:n, 0].astype(np.float32)
    rew = buffer.rewards[:n, 0].astype(np.float32)
    done = buffer.dones[:n, 0] > 0.5
    timeout = buffer.timeouts[:n, 0] > 0.5
    cut = np.zeros(n, dtype=bool)
    cut[:-1] = ~done[:-1] & np.any(buffer.next_observations[: n - 1, 0] != buffer.observations[1:n, 0], axis=1)
    cut[-1] = not done[-1]
    ends = np.flatnonzero(done | cut)
    episodes: list[dict[str, np.ndarray]] = []
    start = 0
    for end in ends:
        sl = slice(start, end + 1)
        term = done[sl] & ~timeout[sl]
        trunc = (done[sl] & timeout[sl]) | cut[sl]
        episodes.append({
            "observations": np.concatenate([obs[sl], nxt[end: end + 1]], axis=0),
            "actions": act[sl], "rewards": rew[sl], "terminations": term, "truncations": trunc,
        })
        start = int(end) + 1
    return episodes


def save_episodes(path: str | Path, episodes: list[dict[str, np.ndarray]]) -> None:
    """Store episodes compactly (one ``.npz``, float32, Minari's T+1 observation layout)."""
    lengths = np.array([len(ep["actions"]) for ep in episodes], dtype=np.int64)
    np.savez_compressed(
        path,
        lengths=lengths,
        observations=np.concatenate([ep["observations"] for ep in episodes]).astype(np.float32),
        actions=np.concatenate([ep["actions"] for ep in episodes]).astype(np.float32),
        rewards=np.concatenate([ep["rewards"] for ep in episodes]).astype(np.float32),
        terminations=np.concatenate([ep["terminations"] for ep in episodes]),
        truncations=np.concatenate([ep["truncations"] for ep in episodes]),
    )


def load_episodes(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Inverse of :func:`save_episodes`."""
    with np.load(path) as z:
        lengths = z["lengths"]
        obs, act, rew, term, trunc = (z[k] for k in ("observations", "actions", "rewards", "terminations", "truncations"))
    episodes, o, t = [], 0, 0
    for length in lengths:
        length = int(length)
        episodes.append({
            "observations": obs[o: o + length + 1], "actions": act[t: t + length], "rewards": rew[t: t + length],
            "terminations": term[t: t + length], "truncations": trunc[t: t + length],
        })
        o += length + 1
        t += length
    return episodes


def export_behavior(run_dir: str | Path, out_dir: str | Path, env_id: str) -> dict[str, Any]:
    """Copy the selected checkpoints and the medium-replay episodes of a run into ``out_dir``.

    Writes ``expert.zip``, ``medium.zip`` (SB3 SAC), ``medium_replay.npz``, ``eval.csv`` and
    ``card.json``; returns the card. The card's provenance record is the run's ``policies/sac_behavior.py``
    with ``--total-steps`` at the last logged step (a run stopped early is remade by that budget).

    :param run_dir: the SAC run folder.
    :param out_dir: where the behaviour policy goes (``policies/behavior/<env>``).
    :param env_id: the Gymnasium id the run trained on.
    """
    from stable_baselines3.common.save_util import load_from_pkl

    from itpo_lab.remake import script_record  # imports policies/sac_behavior.py: SB3 and gymnasium

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_eval_log(run_dir / "eval.csv")
    sel = select_checkpoints(rows)
    shutil.copy(run_dir / f"ckpt_{sel.expert_step:07d}.zip", out_dir / "expert.zip")
    shutil.copy(run_dir / f"ckpt_{sel.medium_step:07d}.zip", out_dir / "medium.zip")
    shutil.copy(run_dir / "eval.csv", out_dir / "eval.csv")
    buffer = load_from_pkl(run_dir / "replay_buffer.pkl")
    episodes = replay_buffer_episodes(buffer, upto=sel.medium_step)
    save_episodes(out_dir / "medium_replay.npz", episodes)
    total_steps = int(max(r["step"] for r in rows))
    made_by = script_record("policies/sac_behavior.py", {"env": env_id, "run_dir": str(run_dir), "total_steps": total_steps})
    card = {
        "env_id": env_id,
        "algorithm": "stable-baselines3 SAC (MlpPolicy 256x256, learning_starts=10000, otherwise defaults)",
        "total_steps": total_steps,
        "train_wall_s": float(max(r["wall_s"] for r in rows)),
        "selection": dataclasses.asdict(sel),
        "medium_rule": f"closest to {MEDIUM_TARGET} x expert return among earlier checkpoints in "
                       f"[{MEDIUM_BAND[0]:.3f}, {MEDIUM_BAND[1]:.3f}] x expert",
        "medium_replay": {"episodes": len(episodes), "transitions": int(sum(len(e["actions"]) for e in episodes))},
        "provenance": made_by.to_dict(),
    }
    write_card(out_dir, card)
    return card


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    """Write ``card.json`` and the ``CARD.md`` rendered from it (:func:`card_markdown`).

    :param out_dir: the behaviour policy's folder.
    :param card: the card.
    """
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / "CARD.md").write_text(card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable behaviour card written next to ``card.json``."""
    sel = card["selection"]
    return "\n".join([
        f"# Behaviour policy: {card['env_id']}",
        "",
        f"- Algorithm: {card['algorithm']}, one torch thread, seed 0.",
        f"- Trained for {card['total_steps']:,} env steps in {card['train_wall_s'] / 3600:.2f} h of wall time "
        "(three such runs shared this machine's 2 cores, so one run alone is faster).",
        f"- `expert.zip`: checkpoint at {sel['expert_step']:,} steps, mean return {sel['expert_return']:.1f} "
        "(10 stochastic episodes).",
        f"- `medium.zip`: checkpoint at {sel['medium_step']:,} steps, mean return {sel['medium_return']:.1f} "
        f"({sel['medium_return'] / sel['expert_return']:.2f} of expert; rule: {card['medium_rule']}"
        f"{'' if sel['medium_in_band'] else '; no checkpoint fell in the band, closest taken'}).",
        f"- `medium_replay.npz`: the replay buffer up to the medium checkpoint, {card['medium_replay']['transitions']:,} "
        f"transitions in {card['medium_replay']['episodes']:,} episodes (float32).",
        "- `eval.csv`: the evaluation curve, every 10k steps.",
        "",
        "Made with:",
        "",
        "```bash",
        command_of(card) or "# command not recorded",
        f"itpo-lab export-behavior --env {card['env_id'].split('-')[0].lower()} --run-dir <run-dir>",
        "```",
        "",
    ])
