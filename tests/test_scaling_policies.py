"""Issue 23 item 3, the lab's half: ``python policies/td3_bc.py --datasets A B --backend local|ray`` (and
rebrac.py): one training per dataset through the library's task runner, the same policies and logs on either
backend, a killed training resumed from its newest checkpoint.

The two tiny Pendulum datasets of tests/test_scaling_train.py, 60 updates of 16-unit networks. Ray is the
stand-in module of tests/test_scaling.py always, a real local Ray of 2 CPUs when installed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from itpo_lab.offline import load_offline_policy
from itpo_lab.offline.many import run_script
from itpo_lab.scripts import load_script
from itpo_wrap.training.metrics import read_metrics
from tests.scripts import ROOT
from tests.test_scaling import fake_ray
from tests.test_scaling_train import ENTRIES, write_datasets

SMALL = ["--total-updates", "60", "--batch-size", "32", "--hidden", "16", "--eval-every", "30", "--eval-episodes", "1",
         "--checkpoint-every", "20", "--log-every", "10", "--no-progress"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_datasets(tmp_path_factory.mktemp("minari_policies"))


def _train(algo: str, datasets: list[str], runs: Path, *extra: str) -> None:
    module = load_script(str(ROOT / "policies" / f"{algo}.py"))
    bc = ["--actor-bc-coef", "0.1", "--critic-bc-coef", "0.1"] if algo == "rebrac" else []
    argv = ["--datasets", *datasets, "--run-dir", str(runs / "{entry}"), *SMALL, *bc, *extra]
    assert run_script(str(ROOT / "policies" / f"{algo}.py"), module.Args, module.main, module.ALGORITHM,
                      module.__doc__, argv) == 0


def outputs(runs: Path) -> dict[str, Any]:
    """Per entry: the policy's tensors and config, its logs without wall-clock columns."""
    found = {}
    for entry in ENTRIES:
        actor, critic, meta = load_offline_policy(runs / entry / "policy.pt")
        logs = {component: [{k: v for k, v in r.items() if k not in ("wall_s", "updates_per_s")}
                            for r in read_metrics(runs / entry / "metrics.csv", component)]
                for component in ("train", "eval")}
        found[entry] = {"tensors": {**{f"actor.{k}": v for k, v in actor.state_dict().items()},
                                    **{f"critic.{k}": v for k, v in critic.state_dict().items()}},
                        "config": meta["config"], "updates": meta["updates"], **logs}
    return found


def same(a: dict[str, Any], b: dict[str, Any]) -> None:
    for entry in ENTRIES:
        ta, tb = a[entry].pop("tensors"), b[entry].pop("tensors")
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f"{entry}: other weights"
        for key in ("config",):  # where the run lived differs; everything else is the same
            a[entry][key].pop("run_dir"), b[entry][key].pop("run_dir")
        assert a[entry] == b[entry]


@pytest.fixture(scope="module")
def local(datasets: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("local_runs")
    _train("td3_bc", datasets, runs)
    return runs


def test_each_dataset_is_trained_in_its_own_run_dir(local: Path) -> None:
    found = outputs(local)
    assert [found[e]["config"]["dataset"].rsplit("/", 3)[-3:] for e in ENTRIES] == [
        ["itpo", "pendulum", "medium-v0"], ["itpo", "pendulum", "random-v0"]]
    assert all(found[e]["updates"] == 60 and [r["step"] for r in found[e]["eval"]] == [30, 60]
               for e in ENTRIES)


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_the_ray_driver_trains_what_local_trains(algo: str, datasets: list[str], local: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    here = local if algo == "td3_bc" else tmp_path / "local"
    if algo == "rebrac":
        _train(algo, datasets, here)
    ray = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray)
    _train(algo, datasets, tmp_path / "ray", "--backend", "ray", "--cpus", "2")
    assert ray.state["init"]["num_cpus"] == 2
    same(outputs(tmp_path / "ray"), outputs(here))


def test_real_ray_with_two_cpus_trains_what_local_trains(datasets: list[str], local: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    _train("td3_bc", datasets, tmp_path, "--backend", "ray", "--cpus", "2")
    same(outputs(tmp_path), outputs(local))


def test_a_killed_training_resumes_from_its_newest_checkpoint(datasets: list[str], local: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script(str(ROOT / "policies" / "td3_bc.py"))
    real, calls = module.update, {"n": 0}

    def killed(u: int, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 60 + 50:  # the second dataset, between its checkpoints at 40 and 60
            raise KeyboardInterrupt
        return real(u, *a, **k)

    monkeypatch.setattr(module, "update", killed)
    with pytest.raises(KeyboardInterrupt):
        _train("td3_bc", datasets, tmp_path)
    assert (tmp_path / ENTRIES[0] / "policy.pt").exists() and not (tmp_path / ENTRIES[1] / "policy.pt").exists()
    seen: list[int] = []
    monkeypatch.setattr(module, "update", lambda u, *a, **k: (seen.append(u), real(u, *a, **k))[1])
    _train("td3_bc", datasets, tmp_path)
    assert seen == list(range(41, 61))  # the first dataset was done; the second went on from update 40
    same(outputs(tmp_path), outputs(local))


def test_the_front_refuses_what_cannot_run(datasets: list[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match=r"put \{entry\} in it"):
        _train("td3_bc", datasets, tmp_path, "--run-dir", str(tmp_path / "one"))
    with pytest.raises(SystemExit, match="not both"):
        _train("td3_bc", datasets, tmp_path, "--dataset", datasets[0])
    with pytest.raises(SystemExit, match="need --backend ray"):
        _train("td3_bc", datasets, tmp_path, "--cpus", "2")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit, match=r"pip install 'itpo-wrap\[ray\]'"):
        _train("td3_bc", datasets, tmp_path, "--backend", "ray")
    assert not list(tmp_path.iterdir())


def test_the_lab_adds_each_dataset_s_policy_and_world_model_to_its_zoo_entry(datasets: list[str],
                                                                              tmp_path: Path) -> None:
    """``--zoo-dir`` with ``--datasets``: each policy lands in its entry (written by its task), then each
    world model (added by the driver as its training finishes)."""
    from itpo_lab.cli import main as lab
    from itpo_wrap import zoo
    from tests.test_scaling_train import SMALL as WM_SMALL

    root = tmp_path / "zoo"
    _train("td3_bc", datasets, tmp_path / "runs", "--zoo-dir", str(root))
    assert lab(["train-world-model", "--datasets", *datasets, "--out", str(tmp_path / "wm" / "{entry}.pt"),
                *WM_SMALL, "--zoo-dir", str(root)]) == 0
    for entry in ENTRIES:
        loaded = zoo.load(entry, root=root)
        assert loaded.policy_name == "td3_bc" and "mlp" in loaded.world_model_kinds
