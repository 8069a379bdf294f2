"""Start and finish of an offline training run: dataset loading, run folders, evaluation in the
dataset's env, the final checkpoint and its zoo entry. Shared by ``policies/td3_bc.py`` and
``policies/rebrac.py`` so each script keeps only its algorithm."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from itpo_lab.offline.checkpoint import save_offline_policy
from itpo_lab.offline.evaluation import EvalResult, evaluate_actor
from itpo_lab.zoo_write import add_policy
from itpo_wrap import provenance
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.networks import TanhActor, TwinQ
from itpo_wrap.training.metrics import read_metrics
from itpo_wrap.zoo import entry_name


def load_offline_dataset(dataset_id: str) -> OfflineDataset:
    """``itpo_wrap.data.load_dataset(dataset_id)``, imported lazily (it needs Minari).

    :param dataset_id: a Minari id (``itpo/hopper/medium-replay-v0``) or a dataset path.
    """
    try:
        from itpo_wrap.data import load_dataset
    except ImportError as err:
        raise ImportError("itpo_wrap.data.load_dataset is unavailable (itpo_wrap/data/minari.py missing or minari "
                          "not installed: pip install 'minari[hdf5]' pillow)") from err
    return load_dataset(dataset_id)


def run_name(dataset_id: str) -> str:
    """A folder-safe name for a dataset id (the zoo entry name when the id has the standard form)."""
    try:
        return entry_name(dataset_id)
    except ValueError:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_id).strip("_") or "dataset"


def default_run_dir(algorithm: str, dataset_id: str, seed: int) -> Path:
    """``runs/<algorithm>/<entry-name>-seed<seed>``."""
    return Path("runs") / algorithm / f"{run_name(dataset_id)}-seed{seed}"


def require_env(dataset: OfflineDataset, eval_every: int) -> None:
    """Fail before training, not at the first evaluation, when the dataset names no env to evaluate in."""
    if eval_every > 0 and not dataset.env_id:
        raise ValueError(f"dataset {dataset.dataset_id!r} has no env_id, so the policy cannot be evaluated; "
                         "set env_id on the dataset or pass --eval-every 0")


def evaluate_on_dataset_env(actor: Any, dataset: OfflineDataset, episodes: int, seed: int) -> EvalResult:
    """Evaluate ``actor`` in ``dataset.env_id`` with the dataset's reference scores.

    :param actor: obs -> ``[-1, 1]`` module.
    :param dataset: supplies ``env_id``, ``ref_min_score``, ``ref_max_score``.
    :param episodes: episodes (10 for reporting).
    :param seed: episode ``i`` resets with ``seed + i``.
    """
    if not dataset.env_id:
        raise ValueError(f"dataset {dataset.dataset_id!r} has no env_id, so the policy cannot be evaluated; "
                         "set env_id on the dataset or pass --eval-every 0")
    return evaluate_actor(actor, dataset.env_id, episodes=episodes, seed=seed,
                          ref_min_score=dataset.ref_min_score, ref_max_score=dataset.ref_max_score)


def eval_row(actor: Any, dataset: OfflineDataset, episodes: int, seed: int, update: int) -> dict[str, Any]:
    """:func:`evaluate_on_dataset_env` as an evaluation row (``metrics.csv``'s component ``eval``, and the last one
    in each checkpoint): ``update``, ``episodes``, ``seed``, ``eval/...``."""
    result = evaluate_on_dataset_env(actor, dataset, episodes, seed)
    return {"update": update, "episodes": episodes, "seed": seed, **result.row()}


def finalize_run(
    run_dir: Path,
    actor: TanhActor,
    critic: TwinQ,
    *,
    algorithm: str,
    script: str,
    args: Any,
    dataset: OfflineDataset,
    action_low: np.ndarray,
    action_high: np.ndarray,
    updates: int,
    wall_s: float,
    final_eval: dict[str, Any] | None,
    zoo_dir: str | None,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/policy.pt`` and, with ``zoo_dir``, add it to ``<zoo_dir>/<entry>/<algorithm>.pt`` with its
    log (``run_dir/metrics.csv``: learning curve, losses and Q) as ``<algorithm>_metrics.csv``.

    :param final_eval: the last evaluation row (``eval/...`` keys plus ``episodes`` and ``seed``).
    :param extra_config: resolved settings to store next to the arguments (e.g. ReBRAC's betas).
    :return: the path of ``policy.pt``.
    """
    # the run and TensorBoard folders are where this run happened to log, not part of how to remake the policy
    where = {"run_dir": None, **({"tensorboard": None} if hasattr(args, "tensorboard") else {})}
    made_by = provenance.from_dataclass(script, dataclasses.replace(args, **where)).to_dict()
    ev = {k.removeprefix("eval/"): v for k, v in (final_eval or {}).items() if k != "update"}
    info = {"wall_s": round(wall_s, 1), provenance.KEY: made_by, "eval": ev}
    path = save_offline_policy(run_dir / "policy.pt", actor, critic, algorithm=algorithm,
                               config={**dataclasses.asdict(args), **(extra_config or {})}, dataset_id=dataset.dataset_id or args.dataset,
                               env_id=dataset.env_id, action_low=action_low, action_high=action_high,
                               updates=updates, info=info)
    if zoo_dir:
        if not dataset.env_id:
            raise ValueError("a zoo entry needs the dataset's env_id; this dataset has none")
        name = run_name(dataset.dataset_id or args.dataset)
        folder = Path(zoo_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        curve: dict[str, Any] = {}  # the run's log travels with the checkpoint (runs/ is not kept): score curve, losses and Q
        if (run_dir / "metrics.csv").is_file():
            shutil.copyfile(run_dir / "metrics.csv", folder / f"{algorithm}_metrics.csv")
            curve = {"metrics_log": f"{algorithm}_metrics.csv", "metrics_components": [
                c for c in ("eval", "train") if read_metrics(run_dir / "metrics.csv", c)]}  # what the card names
        add_policy(name, algorithm, path, kind="offline",
                       dataset_id=dataset.dataset_id or args.dataset, env_id=dataset.env_id, root=zoo_dir,
                       info={"algorithm": algorithm, "updates": updates, **info, **curve},
                       ref_scores=_ref_scores(dataset))
    return path


def _ref_scores(dataset: OfflineDataset) -> tuple[float, float] | None:
    lo, hi = getattr(dataset, "ref_min_score", None), getattr(dataset, "ref_max_score", None)
    return None if lo is None or hi is None else (float(lo), float(hi))


class TrainerParts(NamedTuple):
    """What a trainer's ``build(args, dataset)`` returns: everything :func:`train_actor_critic` needs besides
    the dataset, so the update can also be timed or profiled alone (``benchmarks/profile_trainer.py``).

    :param args: the ``Args`` with run-time choices resolved (e.g. ReBRAC's ``bf16``).
    :param step: ``step(update_index, batch) -> metrics``, one algorithm update.
    :param extra_config: resolved settings stored next to the arguments (ReBRAC's betas).
    """

    args: Any
    data: Any
    nets: dict[str, Any]
    opts: dict[str, Any]
    generator: Any
    step: Any
    extra_config: dict[str, Any]


def _open_loop(args: Any, algorithm: str, config: dict[str, Any], objects: dict[str, Any],
               may_differ: Any) -> tuple[Any, dict[str, Any] | None]:
    """The run folder's ``TrainLoop``, positioned after its newest checkpoint with ``objects`` (networks,
    optimizers, generator) restored from it and, with ``args.tensorboard``, its TensorBoard run open; and the
    last evaluation row that checkpoint holds."""
    from itpo_lab.offline.loop import TrainLoop
    from itpo_wrap.tensorboard import open_run
    from itpo_wrap.training.resumable import restore_state

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(algorithm, args.dataset, args.seed)
    loop = TrainLoop(run_dir, total_updates=args.total_updates, checkpoint_every=args.checkpoint_every,
                     eval_every=args.eval_every, log_every=args.log_every, desc=f"{algorithm} {run_dir.name}",
                     progress=args.progress)
    state = loop.resume(config, may_differ=may_differ)
    if state is not None:
        restore_state(state, **objects)
    tensorboard = getattr(args, "tensorboard", None)
    if tensorboard is not None:  # a resumed run hides its TensorBoard steps after the checkpoint (metrics.csv drops them)
        loop.tensorboard = open_run(tensorboard, f"{algorithm}-{run_dir.name}", run_dir, resume=state is not None,
                                    purge_from=loop.start + 1)
    return loop, None if state is None else state.get("last_eval")


def train_actor_critic(
    args: Any,
    dataset: OfflineDataset,
    data: Any,
    nets: dict[str, Any],
    opts: dict[str, Any],
    generator: Any,
    step: Any,
    *,
    algorithm: str,
    script: str,
    may_differ: Any,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """The resumable update loop both offline trainers share: sample, update, log, evaluate, checkpoint,
    then a final evaluation and :func:`finalize_run`.

    :param args: the trainer's ``Args`` (fields ``run_dir``, ``dataset``, ``seed``, ``total_updates``,
        ``checkpoint_every``, ``eval_every``, ``log_every``, ``progress``, ``batch_size``,
        ``eval_episodes``, ``eval_seed``, ``zoo_dir``; optionally ``tensorboard``, a folder for TensorBoard
        scalars under ``<tensorboard>/<algorithm>-<run dir name>_<n>``).
    :param data: the dataset as ``TransitionTensors``.
    :param nets: ``actor``, ``critic``, ``actor_target``, ``critic_target``.
    :param opts: ``actor`` and ``critic`` optimizers.
    :param generator: the torch generator minibatches are drawn from (checkpointed for bit-exact resume).
    :param step: ``step(update_index, batch) -> metrics``, one algorithm update.
    :param algorithm: name used for the run folder and the checkpoint.
    :param script: the trainer's path, recorded in the checkpoint and model card.
    :param may_differ: ``Args`` fields a resumed run may change (passed to ``TrainLoop.resume``).
    :param extra_config: settings resolved at run time, stored in the config and checkpoint.
    """
    from itpo_wrap.tensorboard import check_tensorboard
    from itpo_wrap.training.resumable import collect_state

    check_tensorboard(getattr(args, "tensorboard", None))  # before the run folder is created
    config = {**dataclasses.asdict(args), **(extra_config or {})}
    objects = {**nets, "actor_opt": opts["actor"], "critic_opt": opts["critic"], "generator": generator}
    loop, last_eval = _open_loop(args, algorithm, config, objects, may_differ)
    run_dir, latest, done = loop.run_dir, {}, loop.start
    actor = nets["actor"]
    try:
        for u in loop:
            latest.update(step(u, data.sample(args.batch_size, generator)))
            done = u
            if loop.due_log(u):
                loop.log(u, latest)
            if loop.due_eval(u):
                with loop.pause():
                    last_eval = eval_row(actor, dataset, args.eval_episodes, args.eval_seed, u)
                loop.log_eval(u, last_eval)
            if loop.due_checkpoint(u):
                loop.save(u, {**collect_state(**objects), "config": config, "last_eval": last_eval})
    finally:
        loop.close()
    if args.eval_every > 0 and (last_eval is None or last_eval["update"] != done):
        last_eval = eval_row(actor, dataset, args.eval_episodes, args.eval_seed, done)
    return finalize_run(run_dir, actor, nets["critic"], algorithm=algorithm, script=script, args=args,
                        dataset=dataset, action_low=data.action_low, action_high=data.action_high,
                        updates=done, wall_s=loop.elapsed(), final_eval=last_eval, zoo_dir=args.zoo_dir,
                        extra_config=extra_config)
