"""Paired episodes of a zoo entry's base policy and its wrapped versions, one CSV row per episode.

What the results tables are built from (``itpo evaluate``; ``benchmarks/run.py`` is a front over it). An
:class:`EvalConfig` is one configuration of one entry (method, world model, row-key settings); one
episode of it on one seed is one :class:`EpisodeTask`, run by :func:`run_task` wherever
:func:`~itpo_wrap.parallel.run_tasks` puts it (here, or a Ray worker), which returns the episode's row.
:func:`evaluate` skips the tasks whose rows the table already holds and writes each returned row as it
arrives, the one writer of the file (:class:`~itpo_wrap.episodes.RowWriter`). A task loads the entry and
its world model once per process (a small cache), so a worker pays the loading once, not per episode;
the world model keeps no episode state and every episode gets a fresh agent, so the rows do not depend
on which process ran which episode, nor in which order.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itpo_wrap.config import AdaptConfig
from itpo_wrap.episodes import RowWriter, done_keys, settings_key
from itpo_wrap.parallel import check_backend, run_tasks
from itpo_wrap.rollout import run_episode

#: ``agent(entry, world_model) -> (predict, info_fn)``: a method beyond base and itpo (the lab's MPPI)
AgentFactory = Callable[[Any, Any], tuple[Callable[..., Any], Callable[[], Any] | None]]


@dataclass(frozen=True)
class EvalConfig:
    """One configuration of one zoo entry: what each seed's episode runs.

    :param entry: zoo entry name.
    :param policy: the entry's policy (resolved, not ``None``: it names the rows).
    :param method: ``"base"``, ``"itpo"``, or another method with ``agent``.
    :param kind: world model kind, ``""`` for the base.
    :param split: ``"eval"`` or ``"tune"`` (a row column).
    :param settings: the row-key settings (:func:`~itpo_wrap.episodes.settings_key` adds method and kind).
    :param adapt: the ``AdaptConfig`` of ``"itpo"``.
    :param max_steps: episode cap, ``None`` for full episodes.
    :param zoo_dir: the zoo folder (``None``: the default one; on a cluster, a path every node has).
    :param sampling: ``(steps, sampler)`` overriding a diffusion model's sampler.
    :param critic_policy: take the terminal critic from this policy of the entry.
    :param agent: builds ``(predict, info_fn)`` for a method other than base and itpo (a module-level
        function or ``functools.partial`` of one, so Ray can ship it).
    :param threads: torch threads per episode (a row column).
    :param commit: the code's version (a row column).
    """

    entry: str
    policy: str
    method: str
    kind: str
    split: str
    settings: dict[str, Any]
    adapt: AdaptConfig | None = None
    max_steps: int | None = None
    zoo_dir: str | None = None
    sampling: tuple[int, str] | None = None
    critic_policy: str | None = None
    agent: AgentFactory | None = field(default=None, compare=False)
    threads: int = 1
    commit: str = ""

    @property
    def key(self) -> str:
        """The ``settings`` column of this configuration's rows."""
        return settings_key(self.method, self.kind, self.settings)


@dataclass(frozen=True)
class EpisodeTask:
    """One episode: a configuration on one seed."""

    config: EvalConfig
    seed: int


def git_commit() -> str:
    """The checkout's short commit (``""`` outside a git checkout), the rows' ``commit`` column."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def load_entry(name: str, policy: str | None, zoo_dir: str | None) -> Any:
    """``zoo.load``, once per process, arguments and zoo folder (``$ITPO_ZOO_PATH`` resolved).

    :param name: entry name.
    :param policy: the entry's policy (``None``: its default).
    :param zoo_dir: zoo folder (``None``: the default one).
    """
    from itpo_wrap import zoo

    return _load_entry(name, policy, zoo_dir, str(zoo.zoo_path(zoo_dir)))


@functools.lru_cache(maxsize=8)
def _load_entry(name: str, policy: str | None, zoo_dir: str | None, _where: str) -> Any:
    from itpo_wrap import zoo

    return zoo.load(name, policy=policy, root=zoo_dir)


def load_world_model(entry: Any, kind: str, sampling: tuple[int, str] | None = None,
                     critic_from: Any = None) -> Any:
    """The entry's ``kind`` world model; ``sampling`` = (steps, sampler) overrides a diffusion model's
    sampler (the same trained model, fewer denoising steps); ``critic_from`` (the same entry loaded with
    another policy) supplies the terminal critic instead of the wrapped policy's own.

    :param entry: a loaded zoo entry.
    :param kind: the world model's kind.
    :param sampling: ``(steps, sampler)`` or ``None``.
    :param critic_from: another loaded policy of the entry, or ``None``.
    """
    wm = (critic_from or entry).load_world_model(kind)
    if sampling is not None:
        if kind != "diffusion":
            raise ValueError(f"--sampling-steps applies to the diffusion model, not {kind!r}")
        wm.dynamics.set_timesteps(sampling[0], sampling[1])
    return wm


@functools.lru_cache(maxsize=4)
def _world_model(entry: str, policy: str, zoo_dir: str | None, kind: str, sampling: tuple[int, str] | None,
                 critic_policy: str | None, _where: str) -> Any:
    critic_from = load_entry(entry, critic_policy, zoo_dir) if critic_policy is not None else None
    return load_world_model(load_entry(entry, policy, zoo_dir), kind, sampling, critic_from)


def cached_world_model(entry: str, policy: str, zoo_dir: str | None, kind: str,
                       sampling: tuple[int, str] | None = None, critic_policy: str | None = None) -> Any:
    """:func:`load_world_model` of a zoo entry by name, once per process and arguments (a Ray worker loads
    it for its first episode of a configuration, not for every one).

    :param entry: entry name.
    :param policy: the entry's policy (resolved).
    :param zoo_dir: zoo folder (``None``: the default one).
    :param kind: the world model's kind.
    :param sampling: ``(steps, sampler)`` or ``None``.
    :param critic_policy: take the terminal critic from this policy of the entry.
    """
    from itpo_wrap import zoo

    return _world_model(entry, policy, zoo_dir, kind, sampling, critic_policy, str(zoo.zoo_path(zoo_dir)))


def make_agent(entry: Any, config: EvalConfig, wm: Any) -> tuple[Callable[..., Any], Callable[[], Any] | None]:
    """``(predict, info_fn)`` of one episode: a fresh agent over a loaded world model.

    :param entry: the loaded zoo entry.
    :param config: the configuration.
    :param wm: its world model (``None`` for the base).
    """
    if config.method == "base":
        return entry.base_predict(), None
    if config.agent is not None:
        return config.agent(entry, wm)
    if config.method == "itpo":
        from itpo_wrap.wrapper import ITPOPolicyWrapper

        w = ITPOPolicyWrapper(entry.policy, wm, config.adapt)
        return w.predict, lambda: w.last_info
    raise ValueError(f"method={config.method!r}; choose base or itpo (other methods need an agent factory)")


def run_task(_shared: Any, task: EpisodeTask) -> dict[str, Any]:
    """Run one episode and return its row (the :data:`~itpo_wrap.episodes.FIELDS` columns).

    :param _shared: unused (the :func:`~itpo_wrap.parallel.run_tasks` signature).
    :param task: the episode.
    """
    c = task.config
    entry = load_entry(c.entry, c.policy, c.zoo_dir)
    wm = None if c.method == "base" else cached_world_model(c.entry, c.policy, c.zoo_dir, c.kind, c.sampling,
                                                             c.critic_policy)
    predict, info_fn = make_agent(entry, c, wm)
    env = entry.make_env()
    try:
        ep = run_episode(predict, env, task.seed, info_fn=info_fn, max_steps=c.max_steps)
    finally:
        env.close()
    s = c.settings
    return {"entry": entry.name, "policy": entry.policy_name, "method": c.method, "kind": c.kind, "split": c.split,
            "seed": task.seed, "episode_return": f"{ep.episode_return:.3f}",
            "score": f"{float(entry.normalized_score(ep.episode_return)):.3f}", "length": ep.length,
            "ms_per_step": f"{ep.ms_per_step:.3f}", "terminated": int(ep.terminated), "fallbacks": ep.fallbacks,
            "step_size": s.get("step_size", ""), "steps": s.get("steps", ""), "particles": s.get("particles", ""),
            "horizon": s.get("horizon", ""), "gate": s.get("gate", ""), "settings": c.key, "commit": c.commit,
            "threads": c.threads, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def pending_tasks(configs: Sequence[EvalConfig], seeds: Sequence[int], out: str | Path,
                  say: Callable[[str], None] = print) -> list[EpisodeTask]:
    """The episodes whose rows ``out`` does not hold yet, configuration by configuration.

    :param configs: the configurations.
    :param seeds: the env seeds each runs.
    :param out: the episode table.
    :param say: told about each configuration that is already done.
    """
    done = done_keys(out)
    tasks: list[EpisodeTask] = []
    for c in configs:
        todo = [s for s in seeds if (c.entry, c.policy, c.split, c.key, str(s)) not in done]
        if not todo:
            say(f"{c.entry} {c.method} {c.kind} {c.settings}: all {len(seeds)} seeds done")
        tasks.extend(EpisodeTask(c, int(s)) for s in todo)
    return tasks


def evaluate(configs: Sequence[EvalConfig], seeds: Sequence[int], out: str | Path, *, backend: str = "local",
             address: str | None = None, workers: int | None = None,
             progress: bool = True) -> list[dict[str, Any]]:
    """Run every configuration on every seed whose row ``out`` lacks; append each row as its episode ends.

    This process is the table's one writer, whichever backend runs the episodes; with ``backend="local"``
    its torch threads are set to the configurations' ``threads`` (a Ray task sets its own).

    :param configs: the configurations (:class:`EvalConfig`).
    :param seeds: env seeds (``env.reset(seed=...)``), the same for every configuration: paired episodes.
    :param out: the episode table (CSV), created with its header when missing; a rerun resumes it.
    :param backend: ``"local"`` (in order, here) or ``"ray"`` (one Ray task per episode).
    :param address: the Ray cluster to join (``ray`` only).
    :param workers: CPUs of a local Ray (``ray`` only).
    :param progress: show a progress bar.
    :return: the rows written, in the order they were written.
    """
    import torch
    from tqdm import tqdm

    check_backend(backend, address, workers)  # before any file is touched: a missing Ray fails here
    tasks = pending_tasks(configs, seeds, out)
    writer = RowWriter(out)
    if not tasks:
        return []
    threads = max(c.threads for c in configs)
    if backend == "local":
        torch.set_num_threads(threads)
    rows = []
    bar = tqdm(total=len(tasks), desc=f"{len(tasks)} episode(s), {backend}", disable=not progress)
    for _, row in run_tasks(run_task, tasks, backend=backend, address=address, workers=workers, threads=threads):
        writer.write(row)
        rows.append(row)
        bar.set_postfix(last=f"{row['method']} {row['step_size']} seed {row['seed']}", score=row["score"])
        bar.update()
    bar.close()
    return rows
