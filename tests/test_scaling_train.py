"""Issue 23 item 3: ``itpo train-world-model --datasets A B --backend local|ray``: one training per dataset,
each with its own run dir, the same bundles and metrics on either backend, a killed training resumed from
its checkpoints.

Two tiny Pendulum Minari datasets (4 episodes of 50 steps), the MLP kind, a few dozen updates. Ray is a
stand-in module (tests/test_scaling.py: tasks and results through pickle, in reverse order) always, and a
real local Ray of 2 CPUs when installed.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from itpo_wrap.cli import main
from itpo_wrap.data import write_dataset
from itpo_wrap.world_model import WorldModel
from tests.test_offline_minari import _episodes
from tests.test_scaling import fake_ray

ENTRIES = ("pendulum-medium", "pendulum-random")
SMALL = ["--dynamics", "mlp", "--steps", "40", "--reward-steps", "20", "--termination-steps", "10", "--hidden", "16",
         "--blocks", "1", "--batch-size", "32", "--workers", "1", "--threads", "1", "--no-progress"]


def write_datasets(root: Path) -> list[str]:
    """Two Pendulum Minari datasets under ``root``, as folder paths (a Ray worker reads them without this
    test's Minari root)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        for i, level in enumerate(("medium", "random")):
            write_dataset(f"itpo/pendulum/{level}-v0", _episodes(4 + i), env_id="Pendulum-v1", ref_min_score=-1500.0,
                          ref_max_score=-150.0, algorithm_name="uniform random", description="test data")
    return [str(root / "itpo" / "pendulum" / f"{level}-v0") for level in ("medium", "random")]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_datasets(tmp_path_factory.mktemp("minari_many"))


def _train(datasets: list[str], out: Path, *extra: str) -> None:
    assert main(["train-world-model", "--datasets", *datasets, "--out", str(out / "{entry}" / "wm_mlp.pt"), *SMALL,
                 *extra]) == 0


def outputs(out: Path) -> dict[str, Any]:
    """Per entry: the bundle's tensors, ``metrics.csv`` without its timing columns, ``eval.json``."""
    found = {}
    for entry in ENTRIES:
        wm = WorldModel.load(out / entry / "wm_mlp.pt")
        tensors = dict(wm.state_dict())  # dynamics, MLP baseline, reward and termination heads
        run = out / entry / "wm_mlp.pt.run"
        with open(run / "metrics.csv") as f:
            metrics = [(r["component"], r["step"], r["metric"], r["value"]) for r in csv.DictReader(f)
                       if not r["metric"].endswith("updates_per_s")]
        found[entry] = {"tensors": tensors, "metrics": metrics, "eval": json.loads((run / "eval.json").read_text()),
                        "dataset_id": wm.info["dataset_id"], "holdout": wm.info["holdout_episode_ids"]}
    return found


def same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for entry in a:
        ta, tb = a[entry].pop("tensors"), b[entry].pop("tensors")
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f"{entry}: other weights"
        assert a[entry] == b[entry]


@pytest.fixture(scope="module")
def local(datasets: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    _train(datasets, out)
    return out


def test_local_trains_each_dataset_into_its_own_folder(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = outputs(local)
    assert [found[e]["dataset_id"] for e in ENTRIES] == ["itpo/pendulum/medium-v0", "itpo/pendulum/random-v0"]
    assert all(found[e]["metrics"] and found[e]["eval"]["rows"] > 0 for e in ENTRIES)


def test_the_ray_driver_writes_what_local_writes(datasets: list[str], local: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ray = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray)
    _train(datasets, tmp_path, "--backend", "ray", "--cpus", "2")
    assert ray.state["init"]["num_cpus"] == 2 and not ray.state["up"]
    same(outputs(tmp_path), outputs(local))


def test_real_ray_with_two_cpus_writes_what_local_writes(datasets: list[str], local: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    _train(datasets, tmp_path, "--backend", "ray", "--cpus", "2")
    same(outputs(tmp_path), outputs(local))


def test_a_killed_training_resumes_from_its_checkpoints(datasets: list[str], local: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the second dataset's dynamics and baseline finished (their checkpoints written), in its
    reward head: the rerun trains only what was left and ends with the uninterrupted run's bundles."""
    import itpo_wrap.training.world_model as W

    real, ran = W.fit_component, []

    def killed_in_reward(comp: Any, cfg: Any, run_dir: Path, *a: Any, **k: Any) -> Any:
        if comp.name == "reward" and ENTRIES[1] in str(run_dir):
            raise KeyboardInterrupt  # the process dies here
        return real(comp, cfg, run_dir, *a, **k)

    monkeypatch.setattr(W, "fit_component", killed_in_reward)
    with pytest.raises(KeyboardInterrupt):
        _train(datasets, tmp_path)
    assert (tmp_path / ENTRIES[0] / "wm_mlp.pt").exists() and not (tmp_path / ENTRIES[1] / "wm_mlp.pt").exists()
    assert (tmp_path / ENTRIES[1] / "wm_mlp.pt.run" / "dynamics.ckpt.pt").exists()

    def counted(comp: Any, cfg: Any, run_dir: Path, *a: Any, **k: Any) -> Any:
        calls = {"n": 0}
        loss = comp.loss
        comp.loss = lambda gen: (calls.__setitem__("n", calls["n"] + 1), loss(gen))[1]
        out = real(comp, cfg, run_dir, *a, **k)
        ran.append((Path(run_dir).parent.name, comp.name, calls["n"]))
        return out

    monkeypatch.setattr(W, "fit_component", counted)
    _train(datasets, tmp_path)
    trained = {(entry, name) for entry, name, n in ran if n}
    assert trained == {(ENTRIES[1], "reward")}  # nothing else was retrained (Pendulum never terminates: no head)
    same(outputs(tmp_path), outputs(local))


def test_what_cannot_run_is_refused_before_any_work(datasets: list[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*argv: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["train-world-model", *argv, *SMALL])
        assert exc.value.code == 2
        return capsys.readouterr().err

    out = str(tmp_path / "wm.pt")
    assert "put {entry} in it" in refused("--datasets", *datasets, "--out", out)
    assert "more than once" in refused("--datasets", datasets[0], datasets[0], "--out", str(tmp_path / "{entry}.pt"))
    assert "pass --datasets instead of --dataset" in refused("--dataset", datasets[0], "--out", out, "--backend", "ray")
    assert "need --backend ray" in refused("--datasets", *datasets, "--out", str(tmp_path / "{entry}.pt"), "--cpus", "2")
    monkeypatch.setitem(sys.modules, "ray", None)
    err = refused("--datasets", *datasets, "--out", str(tmp_path / "{entry}.pt"), "--backend", "ray")
    assert "pip install 'itpo-wrap[ray]'" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
