"""Read any local Minari dataset into an :class:`OfflineDataset`, and write episodes as one.

Minari is imported lazily so ``itpo_wrap.data`` stays importable without it (install hint in the
error). Writing goes through ``minari.create_dataset_from_buffers``, which needs no JAX (Minari's
``DataCollector`` does).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from itpo_wrap.data.buffer import OfflineDataset

#: Where our own recipes live; named in the not-found error so a user knows the fix.
COLLECT_HINT = "itpo-lab collect --env {env} --levels {level}"
REPO_URL = "https://github.com/itpo-wrap/itpo-wrap"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset id is not in the local Minari store and could not be downloaded."""


def _minari() -> Any:
    try:
        import minari
    except ImportError as err:  # pragma: no cover - exercised only without the dependency
        raise ImportError('reading Minari datasets needs minari: pip install "minari[hdf5]" pillow') from err
    return minari


def datasets_root() -> Path:
    """The Minari storage root: ``$MINARI_DATASETS_PATH`` if set, else ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def _not_found_message(dataset_id: str, reason: str) -> str:
    root = datasets_root()
    source = "$MINARI_DATASETS_PATH" if os.environ.get("MINARI_DATASETS_PATH") else "the default (MINARI_DATASETS_PATH is unset)"
    lines = [
        f"Minari dataset {dataset_id!r} is not in the local store at {root / dataset_id} "
        f"(storage root {root}, from {source}); {reason}.",
    ]
    parts = dataset_id.split("/")
    if parts[0] == "itpo" and len(parts) == 3:
        level = parts[2].rsplit("-v", 1)[0]
        lines.append("Our datasets are generated locally, deterministically, from the committed behaviour "
                     f"policies: run `{COLLECT_HINT.format(env=parts[1], level=level)}`.")
    else:
        lines.append("On a machine with network access run `minari download "
                     f"{dataset_id}` (needs `pip install \"minari[hf]\"`), then copy the folder into {root}, "
                     "or point MINARI_DATASETS_PATH at a store that has it. A local dataset folder can also be "
                     "passed as a path.")
    return " ".join(lines)


def _resolve_data_path(id_or_path: str | os.PathLike[str], download: bool) -> tuple[Path, str]:
    """The ``data/`` directory of a dataset given by path or id, downloading only if asked."""
    as_path = Path(id_or_path).expanduser()
    if as_path.is_dir():
        data = as_path / "data" if (as_path / "data").is_dir() else as_path
        if not (data / "metadata.json").exists():
            raise DatasetNotFoundError(
                f"{str(as_path)!r} is a folder but not a Minari dataset (no metadata.json in {data}); "
                "pass a dataset id or the dataset's folder (the one holding data/)"
            )
        return data, str(id_or_path)
    dataset_id = str(id_or_path)
    data = datasets_root() / dataset_id / "data"
    if data.is_dir():
        return data, dataset_id
    if not download:
        raise DatasetNotFoundError(_not_found_message(dataset_id, "download=False"))
    minari = _minari()
    try:
        minari.download_dataset(dataset_id)
    except Exception as err:  # any failure (no network, no minari[hf], unknown id) gets the same guidance
        raise DatasetNotFoundError(
            _not_found_message(dataset_id, f"the download failed ({type(err).__name__}: {err})")
        ) from err
    return data, dataset_id


def _flat_obs(obs: Any, space: Any) -> np.ndarray:
    """Box observations as they are; Dict/Tuple observations flattened in the space's key order."""
    if isinstance(obs, dict):
        keys = list(space.spaces.keys()) if hasattr(space, "spaces") else sorted(obs)
        return np.concatenate([np.asarray(obs[k]).reshape(len(np.asarray(obs[k])), -1) for k in keys], axis=1)
    arr = np.asarray(obs)
    return arr.reshape(len(arr), -1)


def load_dataset(id_or_path: str | os.PathLike[str], *, download: bool = False) -> OfflineDataset:
    """Load a Minari dataset (by id from the local store, or by folder path) as float32 transitions.

    :param id_or_path: a Minari id such as ``"itpo/hopper/medium-replay-v0"`` or
        ``"mujoco/hopper/expert-v0"``, or the path of a dataset folder.
    :param download: try ``minari.download_dataset`` when the id is not local (needs network and
        ``minari[hf]``).
    :return: the flattened dataset with env id, spaces and reference scores (when stored).
    :raises DatasetNotFoundError: the dataset is not local and was not downloaded; the message names the
        id, the storage root and the fix.
    """
    minari = _minari()
    data_path, name = _resolve_data_path(id_or_path, download)
    ds = minari.MinariDataset(str(data_path))
    meta = dict(ds.storage.metadata)
    episodes = []
    for ep in ds.iterate_episodes():
        episodes.append({
            "observations": _flat_obs(ep.observations, ds.observation_space),
            "actions": np.asarray(ep.actions).reshape(len(ep.rewards), -1),
            "rewards": ep.rewards,
            "terminations": ep.terminations,
            "truncations": ep.truncations,
        })
    env_spec = ds.env_spec
    return OfflineDataset.from_episodes(
        episodes,
        dataset_id=meta.get("dataset_id", name),
        env_id=env_spec.id if env_spec is not None else None,
        observation_space=ds.observation_space,
        action_space=ds.action_space,
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
        metadata=meta,
    )


def write_dataset(
    dataset_id: str,
    episodes: Sequence[dict[str, np.ndarray]],
    *,
    env_id: str,
    ref_min_score: float,
    ref_max_score: float,
    algorithm_name: str,
    description: str,
    code_permalink: str = REPO_URL,
    author: str = "itpo-wrap developers",
    author_email: str = "itpo-wrap@users.noreply.github.com",
    requirements: Sequence[str] = ("mujoco>=3.1,<5", "gymnasium>=1.0"),
    overwrite: bool = False,
) -> Path:
    """Write episodes (Minari layout: ``observations`` T+1 rows; ``actions``, ``rewards``,
    ``terminations``, ``truncations`` T rows; optional ``seed``) as a local Minari dataset.

    Every metadata field is filled so Minari emits no warning; both reference scores are passed so
    Minari does not estimate ``ref_min_score`` with 100 random episodes.

    :param dataset_id: e.g. ``"itpo/hopper/medium-v0"``.
    :param episodes: the episodes, in order.
    :param env_id: the Gymnasium id the data came from (also the evaluation env).
    :param ref_min_score: mean return of a random policy.
    :param ref_max_score: mean return of the expert policy.
    :param algorithm_name: how the data was made, e.g. ``"SB3-SAC medium checkpoint (stochastic)"``.
    :param description: a sentence for the dataset card.
    :param overwrite: replace an existing dataset with this id instead of refusing.
    :return: the dataset's folder.
    """
    minari = _minari()
    from minari.data_collector.episode_buffer import EpisodeBuffer

    if not episodes:
        raise ValueError(f"write_dataset({dataset_id!r}) got no episodes")
    target = datasets_root() / dataset_id
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"dataset {dataset_id!r} already exists at {target}; replace it with --overwrite (overwrite=True from Python)")
        shutil.rmtree(target)
    buffers = []
    for i, ep in enumerate(episodes):
        t = len(ep["actions"])
        buffers.append(EpisodeBuffer(
            id=i,
            seed=int(ep["seed"]) if "seed" in ep and ep["seed"] is not None else None,
            observations=np.asarray(ep["observations"], dtype=np.float64),
            actions=np.asarray(ep["actions"], dtype=np.float32),
            rewards=np.asarray(ep["rewards"], dtype=np.float64).reshape(t),
            terminations=np.asarray(ep["terminations"], dtype=bool).reshape(t),
            truncations=np.asarray(ep["truncations"], dtype=bool).reshape(t),
            infos={},
        ))
    with warnings.catch_warnings():
        # HalfCheetah's XML triggers a mujoco deprecation print on make; nothing of ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env_id,
            eval_env=env_id,
            algorithm_name=algorithm_name,
            author=author,
            author_email=author_email,
            code_permalink=code_permalink,
            ref_min_score=float(ref_min_score),
            ref_max_score=float(ref_max_score),
            description=description,
            requirements=list(requirements),
        )
    return target


def normalized_score(returns: float | np.ndarray, ref_min_score: float, ref_max_score: float) -> np.ndarray:
    """D4RL's normalized score on its x100 scale: ``100 * (R - R_random) / (R_expert - R_random)``.

    Minari's ``minari.get_normalized_score`` uses the same formula on a 0-to-1 scale; D4RL tables
    (and the paper) report x100, so do we.

    :param returns: undiscounted episode return(s).
    :param ref_min_score: the random policy's mean return.
    :param ref_max_score: the expert policy's mean return.
    """
    if not ref_max_score > ref_min_score:
        raise ValueError(f"ref_max_score={ref_max_score} must exceed ref_min_score={ref_min_score}")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min_score) / (ref_max_score - ref_min_score)


def dataset_normalized_score(dataset: OfflineDataset, returns: float | np.ndarray) -> np.ndarray:
    """:func:`normalized_score` with the reference scores stored in ``dataset``.

    :raises ValueError: the dataset stores no reference scores.
    """
    if dataset.ref_min_score is None or dataset.ref_max_score is None:
        raise ValueError(
            f"dataset {dataset.dataset_id!r} stores no ref_min_score/ref_max_score; pass them to normalized_score() yourself"
        )
    return normalized_score(returns, dataset.ref_min_score, dataset.ref_max_score)
