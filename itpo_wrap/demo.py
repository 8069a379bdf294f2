"""``make demo`` / ``itpo demo``: the product on the shipped zoo, no training, no download.

Loads a zoo entry (its base policy and one of its world models), runs SB3's ``evaluate_policy`` on
the base policy and on the same policy wrapped with :class:`ITPOPolicyWrapper`, on the same env
seeds, and prints one table of what ran: episodes, env steps, score, milliseconds per step, and
where the plot went. The defaults are chosen so ``make demo`` ends within three minutes on a
2-core laptop-class machine and shows the product as a user meets it: Hopper medium's TD3+BC base
with its one-step MeanFlow world model and ``AdaptConfig()``'s defaults, the safety layer, no
per-dataset tuning (``--tuned`` runs the entry's tuned settings instead). A few episodes are a smoke
view, not evidence: ``docs/safety.md`` and ``docs/results.md`` have the paired experiments.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

DEFAULT_ENTRY = "hopper-medium"
DEFAULT_KIND = "meanflow"
DEFAULT_EPISODES = 2


@dataclasses.dataclass(frozen=True)
class PolicyRun:
    """What one policy did in the demo: per-episode returns, lengths and scores, and the counted work.

    :param name: the row label (``"base"`` or ``"ITPO (<kind>)"``).
    :param returns: undiscounted return of each episode.
    :param lengths: env steps of each episode.
    :param scores: normalized score of each episode (100 = our own expert, see ``docs/datasets.md``).
    :param predict_calls: calls of the policy's ``predict`` (one per env step with one env).
    :param seconds: wall time spent inside ``predict``, the first call included.
    :param first_call_s: wall time of the first ``predict`` call alone (a compiled backend compiles in it).
    """

    name: str
    returns: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    predict_calls: int
    seconds: float
    first_call_s: float = 0.0

    @property
    def steps(self) -> int:
        """Env steps over all episodes."""
        return int(self.lengths.sum())

    @property
    def ms_per_step(self) -> float:
        """Mean wall milliseconds per ``predict`` call after the first (which may compile)."""
        if self.predict_calls <= 1:
            return 1e3 * self.seconds
        return 1e3 * (self.seconds - self.first_call_s) / (self.predict_calls - 1)


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """The demo's result: one :class:`PolicyRun` per policy, the settings that ran, the plot's path."""

    entry: str
    kind: str
    episodes: int
    step_cap: int
    seed: int
    runs: tuple[PolicyRun, ...]
    plot: Path | None
    wall_s: float
    backend: str = "eager"
    device: str = "cpu"


class _Counted:
    """Anything with SB3's ``predict``, timed and counted per call (the counts go into the report,
    so the table states what actually ran, not what was asked)."""

    def __init__(self, predict: Any) -> None:
        self._predict, self.seconds, self.calls, self.first_call_s = predict, 0.0, 0, 0.0

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        t0 = time.perf_counter()
        out = self._predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)
        took = time.perf_counter() - t0
        self.seconds += took
        if self.calls == 0:
            self.first_call_s = took
        self.calls += 1
        return out


class _Progress:
    """Progress over ``episodes x step_cap`` steps. On a terminal: a tqdm bar with that total, which
    jumps to the next episode's slot when an episode ends early (a fall), so it always ends full.
    Piped or logged: one plain line per finished episode instead of carriage-return spam."""

    def __init__(self, name: str, episodes: int, step_cap: int, live: bool) -> None:
        self.name, self.episodes, self.step_cap, self.done = name, episodes, step_cap, 0
        self.bar: Any = None
        if live:
            from tqdm import tqdm

            self.bar = tqdm(total=episodes * step_cap, desc=f"{name:>16}", unit="step", leave=False,
                            dynamic_ncols=True)
            self.bar.set_postfix_str(f"episode 1/{episodes}")

    def __call__(self, local: dict[str, Any], _globals: dict[str, Any]) -> None:
        """``evaluate_policy``'s per-step callback."""
        if self.bar is not None:
            self.bar.update(1)
        if not local["done"]:
            return
        self.done += 1
        length = int(local["current_lengths"][local["i"]])
        if self.bar is not None:
            self.bar.update(self.step_cap - length)  # skip the rest of this episode's slot
            self.bar.set_postfix_str(f"episode {min(self.done + 1, self.episodes)}/{self.episodes}")
        else:
            print(f"{self.name}: episode {self.done}/{self.episodes} ended after {length} steps", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_demo(entry_name: str = DEFAULT_ENTRY, kind: str = DEFAULT_KIND, episodes: int = DEFAULT_EPISODES,
             seed: int = 1000, out_dir: Path = Path("runs/demo"), step_size: float | None = None,
             max_steps: int | None = None, zoo_dir: str | Path | None = None,
             console: Console | None = None, device: str = "cpu", backend: str = "auto",
             tuned: bool = False) -> DemoReport:
    """Evaluate a zoo entry's base policy and the same policy wrapped, print one table, save a plot.

    :param entry_name: a zoo entry with a world model (``itpo zoo list`` shows them).
    :param kind: which of its world models (``"meanflow"``: one step per sample, the fast one;
        ``"diffusion"``: the larger gain on most datasets at about 4x the cost).
    :param episodes: episodes per policy, on the same env seeds for both (at least 1).
    :param seed: seed of the vectorised env (``DummyVecEnv.seed``).
    :param out_dir: where the plot goes.
    :param step_size: ITPO step size over the settings that run (default: theirs).
    :param max_steps: cap each episode at this many env steps; the env's own limit (1000) when ``None``.
    :param zoo_dir: the zoo folder; ``None`` finds one as :func:`itpo_wrap.zoo.zoo_path` does.
    :param console: where the table goes (a fresh ``rich`` console on stdout when ``None``).
    :param device: where the policy, world model and adaptation run (``"cpu"``, ``"cuda"``).
    :param backend: ``AdaptConfig.backend``; ``"auto"`` compiles the step where a compiler is available
        (its first call compiles: about 1.5 minutes the first time on a machine for the default entry,
        seconds once inductor's cache holds it), ``"eager"`` starts at once and runs 3x slower per step.
    :param tuned: run the entry's tuned settings for ``kind`` instead of ``AdaptConfig()``'s defaults.
    :return: what ran, per policy.
    """
    if episodes < 1:
        raise ValueError(f"--episodes {episodes}: run at least 1 episode")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps {max_steps}: cap episodes at 1 step or more, or leave it out")
    import torch
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo

    torch.set_num_threads(1)  # one thread: the latency a laptop core sees (two threads on two busy cores crawl)
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    started = time.perf_counter()
    entry = zoo.load(entry_name, root=zoo_dir, device=device)
    if kind not in entry.world_model_kinds:
        raise ValueError(f"zoo entry {entry_name!r} has no {kind!r} world model (it has {entry.world_model_kinds}); "
                         f"pick --kind from those or another --entry from {zoo.list(zoo_dir)}")
    wm = entry.load_world_model(kind, device=device)
    env = DummyVecEnv([lambda: Monitor(entry.make_env(**({"max_episode_steps": max_steps} if max_steps else {})))])
    step_cap = int(max_steps or env.envs[0].spec.max_episode_steps or 1000)  # type: ignore[union-attr]

    overrides: dict[str, Any] = {"device": device, "track_j_after": False, "backend": backend,
                                 **({"step_size": step_size} if step_size is not None else {})}
    cfg = entry.adapt_config(kind, **overrides) if tuned else AdaptConfig(**overrides)
    wrapped = ITPOPolicyWrapper(entry.policy, wm, cfg)
    which = "the entry's tuned settings" if tuned else "the default settings (no tuning)"
    console.print(f"[bold]itpo-wrap demo[/]: zoo entry [cyan]{entry.name}[/] ({entry.algorithm} base on "
                  f"{entry.dataset_id}), {kind} world model with {which}: {_settings_text(cfg)}. "
                  f"{episodes} episode(s) per policy capped at {step_cap} steps, SB3 evaluate_policy, "
                  f"env seed {seed} for both, 1 torch thread, {wrapped.backend} step on {device}"
                  + (" (its first call compiles: minutes the first time on this machine, seconds after)"
                     if wrapped.backend == "compile" else "") + ".")
    live = sys.stderr.isatty()
    runs = [_run_policy(name, predict, env, seed, episodes, step_cap, live, entry.normalized_score)
            for name, predict in (("base", entry.base_predict()), (f"ITPO ({kind})", wrapped.predict))]
    env.close()
    plot = _plot(runs, entry.name, out_dir)
    report = DemoReport(entry.name, kind, episodes, step_cap, seed, tuple(runs), plot, time.perf_counter() - started,
                        wrapped.backend, device)
    console.print(render_table(report))
    return report


def _settings_text(cfg: Any) -> str:
    """The ``AdaptConfig`` fields the demo's header names: ``H=5 M=8 E=5 step size 0.0001, ...``."""
    return (f"H={cfg.horizon} M={cfg.particles} E={cfg.steps} step size {cfg.step_size:g}, {cfg.persistence}, "
            f"gate {cfg.gate}, {cfg.termination} termination")


def _run_policy(name: str, predict: Any, env: Any, seed: int, episodes: int, step_cap: int, live: bool,
                score: Any) -> PolicyRun:
    """One row of the demo: SB3's ``evaluate_policy`` of ``predict`` on ``env`` seeded with ``seed``, each
    ``predict`` call timed and counted.

    :param score: returns -> normalized scores (the zoo entry's :meth:`~itpo_wrap.zoo.ZooEntry.normalized_score`).
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    env.seed(seed)
    counted, progress = _Counted(predict), _Progress(name, episodes, step_cap, live)
    try:
        returns, lengths = evaluate_policy(counted, env, n_eval_episodes=episodes,  # type: ignore[arg-type]
                                           deterministic=True, return_episode_rewards=True, callback=progress)
    finally:
        progress.close()
    rets, lens = np.asarray(returns, dtype=float), np.asarray(lengths, dtype=int)
    if len(rets) != episodes or int(lens.sum()) != counted.calls:
        # evaluate_policy's contract with one env: one predict per step, exactly `episodes` episodes
        raise RuntimeError(f"{name}: ran {len(rets)} episodes and {counted.calls} predict calls for "
                           f"{int(lens.sum())} env steps; asked for {episodes} episodes")
    return PolicyRun(name, rets, lens, np.asarray(score(rets), dtype=float), counted.calls, counted.seconds,
                     counted.first_call_s)


def render_table(report: DemoReport) -> Table:
    """The demo's one table: what each policy ran and scored, and where the plot went."""
    caption = (f"plot: {report.plot}" if report.plot else "plot: none (pip install matplotlib)") + \
        f"; demo wall time {report.wall_s:.0f} s. Score 100 = our own SAC expert (docs/datasets.md). " \
        "A few episodes are a smoke view; the paired 10-seed experiment is in docs/results.md."
    table = Table(title=f"{report.entry}: base vs wrapped ({report.kind} world model, {report.backend} step on "
                        f"{report.device}), env seed {report.seed}",
                  caption=caption)
    for col in ("policy", "episodes", "env steps", "normalized score", "return", "ms / step", "first call s"):
        table.add_column(col, justify="right")
    for run in report.runs:
        table.add_row(run.name, str(len(run.returns)), str(run.steps),
                      f"{run.scores.mean():.1f} ± {run.scores.std():.1f}",
                      f"{run.returns.mean():.0f} ± {run.returns.std():.0f}", f"{run.ms_per_step:.2f}",
                      f"{run.first_call_s:.1f}")
    return table


def _plot(runs: list[PolicyRun], entry: str, out_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is a bonus; the table is the result
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([r.name for r in runs], [r.scores.mean() for r in runs], yerr=[r.scores.std() for r in runs], capsize=4,
           color=["#999", "#3a7"])
    for i, r in enumerate(runs):
        ax.plot(np.full(len(r.scores), i), r.scores, "k.", ms=4)
    ax.set_ylabel("normalized score (100 = our expert)")
    ax.set_title(f"{entry}: per-episode scores")
    fig.tight_layout()
    path = out_dir / "demo.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
