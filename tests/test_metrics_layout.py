"""One metrics layout (issue 22): every loop's ``metrics.csv`` read through ``read_metrics``, and the base-policy
trainers' old wide ``train.csv`` / ``eval.csv`` converted to it once, losslessly (``itpo-lab convert-logs``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch

from itpo_lab import cli as lab_cli
from itpo_lab import zoo_write
from itpo_lab.convert_logs import convert_folder
from itpo_lab.offline import TrainLoop
from itpo_lab.zoo_curves import learning_curves
from itpo_wrap import zoo
from itpo_wrap.training.metrics import MetricsLog, read_metrics
from tests.test_zoo_tables import _add

# rows of policies/zoo/hopper-medium-replay's shipped wide logs (before the conversion), plus an empty cell
# (a key logged late) and a row cut short by a kill in the training log
WIDE_EVAL = """update,episodes,seed,eval/return_mean,eval/return_std,eval/score_mean,eval/score_std,eval/length_mean,wall_s
5000,10,1000,202.193,15.6494,6.67362,0.566148,94,361.969
10000,10,1000,389.214,25.8621,13.4395,0.935615,141,692.77
"""
WIDE_TRAIN = """update,wall_s,updates_per_s,critic_loss,q_mean,actor_loss,bc_mse,lmbda
4500,326.879,14.8077,0.757059,26.4585,-0.968127,0.630835,
5000,361.184,14.5748,1.43739,29.1935,-0.966688,0.659575,0.0338535
5500,396.1,14.9
"""


def _wide(text: str, component: str) -> list[dict[str, float]]:
    """The wide rows as read_metrics should give them back: step, wall_s and every non-empty value."""
    rows = [r for r in csv.DictReader(io.StringIO(text)) if None not in r.values()]
    return [{"step": int(r["update"]), "wall_s": float(r["wall_s"]),
             **{k.removeprefix(f"{component}/"): float(v) for k, v in r.items() if k not in ("update", "wall_s") and v}}
            for r in rows]


def _old_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "eval.csv").write_text(WIDE_EVAL)
    (folder / "train.csv").write_text(WIDE_TRAIN)
    return folder


def test_read_metrics_gives_back_what_write_got(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.write("dynamics", 10, 1.0, {"loss": torch.tensor(0.25), "updates_per_s": 123.456789})
    log.write("dynamics", 10, 1.5, {"val_rmse": 0.5})  # the held-out evaluation of the same step, written after
    log.write("eval", 10, 2.0, {"score_mean": 12.5, "episodes": 10, "seed": 123456789})
    log.close()
    assert read_metrics(tmp_path / "metrics.csv", "dynamics") == [
        {"step": 10, "wall_s": 1.5, "loss": 0.25, "updates_per_s": 123.457, "val_rmse": 0.5}]
    assert read_metrics(tmp_path / "metrics.csv", "eval") == [
        {"step": 10, "wall_s": 2.0, "score_mean": 12.5, "episodes": 10, "seed": 123456789}]  # integers exact
    assert read_metrics(tmp_path / "metrics.csv", "train") == []


def test_read_metrics_refuses_another_layout_naming_the_fix(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    with pytest.raises(ValueError, match=f"old wide layout.*itpo-lab convert-logs {run}"):
        read_metrics(run / "eval.csv", "eval")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a metrics log"):
        read_metrics(tmp_path / "other.csv", "eval")


def test_converting_a_wide_run_is_lossless(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    assert convert_folder(run) == [run / "metrics.csv"]
    assert sorted(p.name for p in run.iterdir()) == ["metrics.csv"]  # the wide files are gone
    assert read_metrics(run / "metrics.csv", "eval") == _wide(WIDE_EVAL, "eval")
    assert read_metrics(run / "metrics.csv", "train") == _wide(WIDE_TRAIN, "train")  # the cut row dropped
    text = (run / "metrics.csv").read_text()
    assert "eval,5000,361.969,eval/score_mean,6.67362\n" in text  # digits copied, not re-rounded
    assert "train,4500,326.879,train/lmbda" not in text  # an empty cell is no value
    lines = text.splitlines()[1:]  # at one update: train before eval, as the trainer logged them
    assert lines.index("train,5000,361.184,train/lmbda,0.0338535") < lines.index("eval,5000,361.969,eval/episodes,10")
    assert convert_folder(run) == []  # nothing left to convert


def test_a_conversion_that_would_lose_rows_leaves_the_wide_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    twice = WIDE_EVAL + WIDE_EVAL.splitlines()[-1] + "\n"  # step 10000 logged twice: one row would remain
    (run / "eval.csv").write_text(twice)
    with pytest.raises(ValueError, match="would lose or change 'eval' rows"):
        convert_folder(run)
    assert sorted(p.name for p in run.iterdir()) == ["eval.csv"] and (run / "eval.csv").read_text() == twice


def test_an_old_run_folder_is_refused_until_converted(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    with pytest.raises(ValueError, match=r"train\.csv' is a log of the old wide layout.*itpo-lab convert-logs"):
        TrainLoop(run, total_updates=10, checkpoint_every=5, eval_every=5, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["eval.csv", "train.csv"]  # nothing written beside them
    assert lab_cli.main(["convert-logs", str(run)]) == 0
    loop = TrainLoop(run, total_updates=10, checkpoint_every=5, eval_every=5, progress=False)
    assert loop.resume({}) is None  # no checkpoint: a fresh start, the converted rows untouched
    loop.log(6000, {"critic_loss": 1.0})
    loop.close()
    assert [r["step"] for r in read_metrics(run / "metrics.csv", "train")] == [4500, 5000, 6000]


def test_converting_a_zoo_entry_repoints_its_record_card_and_curve(tmp_path: Path) -> None:
    _add(tmp_path, "hopper-medium-replay", "td3_bc", 13.4, 0.9, 10_000)
    _add(tmp_path, "hopper-medium-replay", "rebrac", 13.0, 1.0, 10_000)
    folder = tmp_path / "hopper-medium-replay"
    (folder / "td3_bc_eval.csv").write_text(WIDE_EVAL)  # td3_bc: both logs; rebrac: its curve only
    (folder / "td3_bc_train.csv").write_text(WIDE_TRAIN)
    (folder / "rebrac_eval.csv").write_text(WIDE_EVAL)
    zoo_write.record_policy_facts("hopper-medium-replay", "td3_bc", {
        "eval_curve": "td3_bc_eval.csv", "train_log": "td3_bc_train.csv", "notes": "kept after the logs"}, tmp_path)
    zoo_write.record_policy_facts("hopper-medium-replay", "rebrac", {"eval_curve": "rebrac_eval.csv"}, tmp_path)
    assert sorted(p.name for p in convert_folder(folder)) == ["rebrac_metrics.csv", "td3_bc_metrics.csv"]
    policies = zoo.read_entry("hopper-medium-replay", tmp_path)["policies"]
    td3 = policies["td3_bc"]
    assert td3["metrics_log"] == "td3_bc_metrics.csv" and td3["metrics_components"] == ["eval", "train"]
    assert "eval_curve" not in td3 and "train_log" not in td3
    assert list(td3)[-3:] == ["metrics_log", "metrics_components", "notes"]  # in the old fields' place
    assert policies["rebrac"]["metrics_components"] == ["eval"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Log: `rebrac_metrics.csv` (the `metrics.csv` layout): component `eval`, every evaluation of the run.\n" \
        in card and "`train`, losses and Q every few hundred updates." in card and "_eval.csv" not in card
    curves = learning_curves(tmp_path, tmp_path / "no-runs", tmp_path / "no-checks")["hopper-medium-replay"]
    assert curves["td3_bc"] == curves["rebrac"] == ([5000, 10000], [6.67362, 13.4395], True)
