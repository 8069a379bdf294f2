"""``make demo`` / ``itpo demo``: the product on the shipped zoo, no training, no download.

Loads a zoo entry (default ``hopper-medium-replay``: its base policy and its world model), runs SB3's
``evaluate_policy`` on the base policy and on the same policy wrapped with :class:`ITPOPolicyWrapper`,
on the same env seeds, prints a table (return, normalized score, milliseconds per step) and writes a
bar plot. A few episodes are a smoke view, not evidence: ``docs/results.md`` has the paired experiment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table


class _Timed:
    """Anything with SB3's ``predict``, timed per call and counted for a progress bar."""

    def __init__(self, predict: Any, bar: Any) -> None:
        self._predict, self.bar, self.seconds, self.calls = predict, bar, 0.0, 0

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        t0 = time.perf_counter()
        out = self._predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.bar.update(1)
        return out


def run_demo(entry_name: str = "hopper-medium-replay", kind: str = "diffusion", episodes: int = 2, seed: int = 1000,
             out_dir: Path = Path("runs/demo"), step_size: float | None = None, max_steps: int | None = None) -> int:
    """Evaluate base and wrapped policy of a zoo entry with ``evaluate_policy`` and print a table.

    :param entry_name: a zoo entry with a world model.
    :param kind: which of its world models (``"diffusion"`` carries the gain; ``"meanflow"`` is faster).
    :param episodes: episodes per policy (same seeds for both).
    :param seed: seed of the vectorised env (``DummyVecEnv.seed``).
    :param out_dir: where the plot goes.
    :param step_size: ITPO step size; default the entry's tuned one when recorded, else 1e-4 (the other
        tuned settings, e.g. persistence, apply either way).
    :param max_steps: cap episodes at this many steps (smoke tests); the env's own limit otherwise.
    :return: a process exit code.
    """
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv
    from tqdm import tqdm

    from itpo_wrap import ITPOPolicyWrapper, zoo

    torch.set_num_threads(1)  # one thread: the latency a laptop core sees (two threads on two busy cores crawl)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    entry = zoo.load(entry_name)
    if kind not in entry.world_model_kinds:
        raise ValueError(f"zoo entry {entry_name!r} has no {kind!r} world model (it has {entry.world_model_kinds}); "
                         f"pick --kind from those or an entry from {zoo.list()}")
    wm = entry.load_world_model(kind)
    env = DummyVecEnv([lambda: Monitor(entry.make_env(**({"max_episode_steps": max_steps} if max_steps else {})))])
    base_predict = entry.base_predict()

    # the entry's tuned settings (step size and, on HalfCheetah, reset_each_step persistence)
    cfg = entry.adapt_config(kind, device="cpu", track_j_after=False,
                             **({"step_size": step_size} if step_size is not None else {}))
    alpha = cfg.step_size
    wrapped = ITPOPolicyWrapper(entry.policy, wm, cfg)
    console.print(f"[bold]itpo-wrap demo[/]: zoo entry [cyan]{entry.name}[/] ({entry.algorithm} base on "
                  f"{entry.dataset_id}), {kind} world model, H={cfg.horizon} M={cfg.particles} E={cfg.steps} "
                  f"step size {alpha:g}, {cfg.persistence}; {episodes} episodes each with SB3 evaluate_policy, same seeds, 1 torch thread")
    results = {}
    for name, predict in (("base", base_predict), (f"ITPO ({kind})", wrapped.predict)):
        env.seed(seed)
        with tqdm(desc=name, unit="step", leave=False) as bar:
            timed = _Timed(predict, bar)
            returns, lengths = evaluate_policy(timed, env,  # type: ignore[arg-type]  # duck-typed predict n_eval_episodes=episodes, deterministic=True,
                                               return_episode_rewards=True)
        results[name] = (np.asarray(returns, dtype=float), np.asarray(lengths), 1e3 * timed.seconds / timed.calls)
    env.close()

    table = Table(title=f"{entry.name}: base vs wrapped ({episodes} episodes, seed {seed})")
    for col in ("policy", "return", "normalized score", "episode length", "ms / step"):
        table.add_column(col, justify="right")
    for name, (rets, lens, ms) in results.items():
        scores = entry.normalized_score(rets)
        table.add_row(name, f"{rets.mean():.1f} ± {rets.std():.1f}", f"{scores.mean():.1f} ± {scores.std():.1f}",
                      f"{lens.mean():.0f}", f"{ms:.2f}")
    console.print(table)
    plot = _plot(results, entry, out_dir)
    if plot:
        console.print(f"plot: {plot}")
    console.print("A few episodes are noisy; the paired 10-episode experiment is in docs/results.md.")
    return 0


def _plot(results: dict[str, tuple[np.ndarray, np.ndarray, float]], entry: Any, out_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is a bonus; the table is the result
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(results)
    scores = [entry.normalized_score(results[n][0]) for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(names, [s.mean() for s in scores], yerr=[s.std() for s in scores], capsize=4, color=["#999", "#3a7"])
    for i, s in enumerate(scores):
        ax.plot(np.full(len(s), i), s, "k.", ms=4)
    ax.set_ylabel("normalized score")
    ax.set_title(f"{entry.name}: per-episode scores")
    fig.tight_layout()
    path = out_dir / "demo.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
