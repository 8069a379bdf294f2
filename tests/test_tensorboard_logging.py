"""``--tensorboard DIR`` on ``itpo train-world-model`` and the offline trainers: event files with the CSV's
scalars through SB3's logger, one run folder kept across a resume, nothing without the flag, and a clear
error before any training state when tensorboard is missing."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pytest
import torch

from itpo_lab.offline import load_offline_policy, parse_args
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.tensorboard import INSTALL_HINT, MARKER, TensorBoardUnavailable, check_tensorboard
from itpo_wrap.training import commands, train_world_model
from itpo_wrap.training.metrics import read_metrics
from tests.scripts import policy_script
from tests.test_offline_trainers import _args as offline_args
from tests.test_offline_trainers import pendulum  # noqa: F401 - the module-scoped dataset fixture
from tests.test_training_world_model import toy_config, toy_dataset

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
torch.set_num_threads(1)
SMALL_WM = ["--steps", "40", "--reward-steps", "20", "--termination-steps", "10", "--hidden", "16", "--blocks", "1",
            "--train-timesteps", "20", "--sampling-steps", "4", "--workers", "2", "--no-progress", "--no-baseline"]


def _events(root: Path) -> list[Path]:
    return sorted(root.rglob("events.out.tfevents.*"))


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard run folder as ``(step, value)`` pairs, as TensorBoard shows them."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _wm_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="itpo")
    commands.register(parser.add_subparsers(dest="command"))
    return parser


def test_world_model_cli_writes_the_metrics_csv_as_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_dataset(n_episodes=6, length=12)
    monkeypatch.setattr(commands, "_load_dataset", lambda _: data)
    tb, out = tmp_path / "tb", tmp_path / "wm.pt"
    argv = ["train-world-model", "--dataset", "toy", "--out", str(out), "--tensorboard", str(tb), *SMALL_WM]
    args = _wm_parser().parse_args(argv)
    assert args.func(args) == 0
    run = tb / "wm_diffusion_1"  # SB3's <name>_<n>; the toy data has no dataset id to name the entry
    assert _events(tmp_path) == _events(run) and len(_events(run)) == 1
    assert Path(f"{out}.run", MARKER).read_text().strip() == str(run.resolve())
    scalars = _scalars(run)
    with Path(f"{out}.run", "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    expected = {"dynamics/lr", "dynamics/updates_per_s", "dynamics/val_rmse_state_std", "reward/val_rmse"}
    assert expected <= set(scalars) == {r["metric"] for r in rows}
    for r in rows:  # the CSV keeps 6 significant digits, TensorBoard float32
        assert dict(scalars[r["metric"]])[int(r["step"])] == pytest.approx(float(r["value"]), rel=1e-5, abs=1e-6)

    # rerunning resumes (all parts are done): same TensorBoard run; --no-resume starts the next one
    args = _wm_parser().parse_args(argv)
    assert args.func(args) == 0
    assert sorted(p.name for p in tb.iterdir()) == ["wm_diffusion_1"]
    args = _wm_parser().parse_args([*argv, "--no-resume"])
    assert args.func(args) == 0
    assert sorted(p.name for p in tb.iterdir()) == ["wm_diffusion_1", "wm_diffusion_2"]
    assert Path(f"{out}.run", MARKER).read_text().strip() == str((tb / "wm_diffusion_2").resolve())


def test_world_model_without_the_flag_writes_no_tensorboard(tmp_path: Path) -> None:
    train_world_model(toy_dataset(n_episodes=6, length=12), toy_config("mlp", 20, reward_steps=10, termination_steps=5,
                                                                         log_every=5), run_dir=tmp_path / "run",
                      progress=False)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert _events(tmp_path) == [] and not (tmp_path / "run" / MARKER).exists() and not (tmp_path / "run" / "tb").exists()


@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_offline_trainer_writes_train_and_eval_scalars(algo: str, pendulum: OfflineDataset, tmp_path: Path) -> None:  # noqa: F811
    assert parse_args(policy_script(algo).Args, ["--tensorboard", "runs/tb"]).tensorboard == "runs/tb"
    run_dir, tb = tmp_path / "run", tmp_path / "tb"
    policy_script(algo).main(offline_args(algo, run_dir, tensorboard=str(tb)), dataset=pendulum)
    run = tb / f"{algo}-run_1"
    assert _events(tmp_path) == _events(run) and len(_events(run)) == 1
    scalars = _scalars(run)
    for tag in ("train/critic_loss", "train/actor_loss", "train/q_mean", "time/updates_per_s", "eval/return_mean",
                "eval/score_mean"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    train = read_metrics(run_dir / "metrics.csv", "train")
    assert [s for s, _ in scalars["train/critic_loss"]] == [r["step"] for r in train] == list(range(25, 201, 25))
    for (_, value), r in zip(scalars["train/critic_loss"], train, strict=True):
        assert value == pytest.approx(r["critic_loss"], rel=1e-5)
    assert [s for s, _ in scalars["eval/return_mean"]] == [100, 200]
    # the provenance record (the model card's command) is how to remake the policy: where it logged is not
    assert load_offline_policy(run_dir / "policy.pt")[2]["info"]["provenance"]["args"]["tensorboard"] is None


def test_offline_resume_continues_the_run_and_hides_the_redone_steps(pendulum: OfflineDataset, tmp_path: Path,  # noqa: F811
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = policy_script("td3_bc")
    run_dir, tb = tmp_path / "run", tmp_path / "tb"
    args = offline_args("td3_bc", run_dir, eval_every=0, tensorboard=str(tb))
    real_update, calls = module.update, {"n": 0}

    def crashing_update(*a, **k):
        calls["n"] += 1
        if calls["n"] > 130:
            raise KeyboardInterrupt  # after the checkpoint at 100 and the rows at 125
        return real_update(*a, **k)

    monkeypatch.setattr(module, "update", crashing_update)
    with pytest.raises(KeyboardInterrupt):
        module.main(args, dataset=pendulum)
    monkeypatch.setattr(module, "update", real_update)
    assert [s for s, _ in _scalars(tb / "td3_bc-run_1")["train/critic_loss"]] == [25, 50, 75, 100, 125]
    module.main(args, dataset=pendulum)
    assert sorted(p.name for p in tb.iterdir()) == ["td3_bc-run_1"]  # the same TensorBoard run, a second event file
    assert len(_events(tb)) == 2
    train = read_metrics(run_dir / "metrics.csv", "train")
    shown = _scalars(tb / "td3_bc-run_1")["train/critic_loss"]
    assert [s for s, _ in shown] == [r["step"] for r in train] == list(range(25, 201, 25))  # 125 once
    for (_, value), r in zip(shown, train, strict=True):  # the crashed segment's row at 125 is the hidden one
        assert value == pytest.approx(r["critic_loss"], rel=1e-5)


def test_offline_trainer_without_the_flag_writes_no_tensorboard(pendulum: OfflineDataset, tmp_path: Path) -> None:  # noqa: F811
    policy_script("td3_bc").main(offline_args("td3_bc", tmp_path / "run", total_updates=50, eval_every=0),
                                 dataset=pendulum)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert _events(tmp_path) == [] and not (tmp_path / "run" / MARKER).exists()


def test_missing_tensorboard_fails_before_any_training_state(pendulum: OfflineDataset, tmp_path: Path,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import stable_baselines3.common.logger  # noqa: F401 - imported with tensorboard present, as it is in a real session

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    tb = tmp_path / "tb"
    with pytest.raises(ImportError, match=r"--tensorboard needs the tensorboard package: pip install 'itpo-wrap\[tensorboard\]'"):
        check_tensorboard(tb)
    for algo in ("td3_bc", "rebrac"):
        with pytest.raises(TensorBoardUnavailable, match="--tensorboard needs the tensorboard package"):
            policy_script(algo).main(offline_args(algo, tmp_path / algo, tensorboard=str(tb)), dataset=pendulum)
        assert not (tmp_path / algo).exists()
    with pytest.raises(TensorBoardUnavailable, match="--tensorboard needs the tensorboard package"):
        train_world_model(toy_dataset(n_episodes=6, length=12), toy_config("mlp", 20), run_dir=tmp_path / "wm",
                          progress=False, tensorboard=tb)
    assert not (tmp_path / "wm").exists() and not tb.exists()

    # the `itpo` CLI: one line, before the dataset is even read
    from itpo_wrap import cli

    monkeypatch.setattr(commands, "_load_dataset", lambda _: pytest.fail("the dataset was read before the check"))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")  # cli.main sets it; restore it afterwards
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train-world-model", "--dataset", "toy", "--out", str(tmp_path / "wm.pt"), "--tensorboard", str(tb)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert INSTALL_HINT in err and "Traceback" not in err
    assert not (tmp_path / "wm.pt.run").exists() and not tb.exists()
    with pytest.raises(ValueError, match="--tensorboard needs a folder"):
        check_tensorboard("")
