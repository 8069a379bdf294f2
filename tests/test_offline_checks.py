"""itpo_lab.offline.checks: a finished settings check keeps its figures, and its provenance record (the
command its docs render) never writes the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itpo_lab.offline.checkpoint import save_offline_policy
from itpo_lab.offline.checks import check_provenance, read_checks, record_check
from itpo_lab.remake import command_of, from_command
from itpo_wrap import provenance
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.networks import TanhActor, TwinQ

# a finished run's metrics.csv: losses at 500, evaluations at 5000 and 10000
METRICS = ("component,step,wall_s,metric,value\ntrain,500,1.00,train/loss,1\n"
           "eval,5000,9.00,eval/episodes,10\neval,5000,9.00,eval/score_mean,12\neval,5000,9.00,eval/score_std,1\n"
           "eval,10000,19.00,eval/episodes,10\neval,10000,19.00,eval/score_mean,20.5\n"
           "eval,10000,19.00,eval/score_std,2\n")


RUN = "python policies/rebrac.py --dataset itpo/hopper/medium-v0 --zoo-dir policies/zoo --no-progress"


def _finished_run(folder: Path, betas: tuple[float, float] | None = (0.05, 0.01), legacy: bool = False) -> Path:
    """A finished ReBRAC run; ``legacy``: its checkpoint stores a command line, as before issue 22."""
    actor = TanhActor(11, 3, hidden=(8,))
    critic = TwinQ(11, 3, hidden=(8,))
    config = {"seed": 3, "gamma": 0.99, **({"betas_used": list(betas)} if betas else {})}
    save_offline_policy(folder / "policy.pt", actor, critic, algorithm="rebrac", config=config,
                        dataset_id="itpo/hopper/medium-v0", env_id="Hopper-v5", action_low=-np.ones(3),
                        action_high=np.ones(3), updates=10_000,
                        info={**({"command": RUN} if legacy else {"provenance": from_command(RUN).to_dict()}),
                              "eval": {"episodes": 10, "score_mean": 20.5, "score_std": 2.0}})
    (folder / "metrics.csv").write_text(METRICS)
    return folder


# (run's command, betas used, what the string-editing check_command made of them before issue 22)
CHECK_COMMAND_CASES = [
    (RUN, (0.01, 0.01), "python policies/rebrac.py --dataset itpo/hopper/medium-v0 --actor-bc-coef 0.01 "
                        "--critic-bc-coef 0.01 --no-progress"),
    ("python policies/rebrac.py --dataset d --actor-bc-coef 0.05 --zoo-dir=z", (0.05, 0.01),
     "python policies/rebrac.py --dataset d --critic-bc-coef 0.01 --actor-bc-coef 0.05"),
    ("python policies/td3_bc.py --dataset d --zoo-dir z", None, "python policies/td3_bc.py --dataset d"),
]


@pytest.mark.parametrize(("run", "betas", "before"), CHECK_COMMAND_CASES)
def test_a_check_drops_the_zoo_and_states_the_betas_as_before(run: str, betas: tuple[float, float] | None,
                                                              before: str) -> None:
    record = check_provenance(from_command(run), betas)
    assert record == from_command(before)  # the same resolved arguments as the old string edit gave
    assert record.args["zoo_dir"] is None and "--zoo-dir" not in command_of({"provenance": record.to_dict()})


def test_a_beta_given_explicitly_stays() -> None:
    record = check_provenance(from_command("python policies/rebrac.py --dataset d --actor-bc-coef 0.2"), (0.05, 0.01))
    assert (record.args["actor_bc_coef"], record.args["critic_bc_coef"]) == (0.2, 0.01)


@pytest.mark.parametrize("legacy", [False, True], ids=["record", "older checkpoint's command"])
def test_record_check_keeps_logs_figures_and_calibration(tmp_path: Path, legacy: bool) -> None:
    from itpo_lab.zoo_tables import checks_markdown, learning_curves

    run = _finished_run(tmp_path / "run", legacy=legacy)
    (tmp_path / "run" / "checkpoints").mkdir()  # training states are never copied
    checks = tmp_path / "checks"
    folder = record_check(run, checks, note="CORL's pair", episodes=1)
    assert folder.name == "rebrac-hopper-medium-betas-0.05-0.01-seed3"
    assert sorted(p.name for p in folder.iterdir()) == ["check.json", "metrics.csv"]
    assert (folder / "metrics.csv").read_text() == METRICS
    record = json.loads((folder / "check.json").read_text())
    assert record["entry"] == "hopper-medium" and record["betas"] == [0.05, 0.01] and record["updates"] == 10_000
    assert "command" not in record and record["provenance"]["args"]["zoo_dir"] is None
    command = command_of(record)
    assert command is not None and "--zoo-dir" not in command and "--actor-bc-coef 0.05" in command
    cal = record["critic_calibration"]
    assert cal["episodes"] == 1 and cal["states"] > 0 and np.isfinite(cal["ratio"])

    [read] = read_checks(checks)
    assert read["folder"] == folder and read["note"] == "CORL's pair"
    table = checks_markdown(checks)
    assert "| hopper-medium | rebrac | betas-0.05-0.01 | 0.05 / 0.01 | 10000 | 20.5 ± 2.0 |" in "\n".join(table)
    assert any(command in line for line in table)
    curves = learning_curves(tmp_path / "zoo", tmp_path / "resume", checks)
    assert curves["hopper-medium"]["rebrac betas-0.05-0.01"] == ([5000, 10000], [12.0, 20.5], True)


def test_record_check_refuses_unfinished_runs_and_unnamed_settings(tmp_path: Path) -> None:
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "metrics.csv").write_text(METRICS)
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        record_check(tmp_path / "running", tmp_path / "checks")
    run = _finished_run((tmp_path / "alpha"), betas=None)
    with pytest.raises(ValueError, match="pass variant="):
        record_check(run, tmp_path / "checks", calibrate=False)
    with pytest.raises(ValueError, match="variant='a b'"):
        record_check(run, tmp_path / "checks", variant="a b", calibrate=False)
    assert record_check(run, tmp_path / "checks", variant="alpha-5", calibrate=False).name == \
        "rebrac-hopper-medium-alpha-5-seed3"
    silent = _finished_run(tmp_path / "silent")
    actor, critic, meta = load_offline_policy(silent / "policy.pt")
    del meta["info"][provenance.KEY]
    save_offline_policy(silent / "policy.pt", actor, critic, algorithm="rebrac", config=meta["config"],
                        dataset_id=meta["dataset_id"], env_id=meta["env_id"], action_low=-np.ones(3),
                        action_high=np.ones(3), updates=10_000, info=meta["info"])
    with pytest.raises(ValueError, match="neither a provenance record nor a command"):
        record_check(silent, tmp_path / "checks", calibrate=False)


def test_read_checks_refuses_foreign_records(tmp_path: Path) -> None:
    assert read_checks(tmp_path / "none") == []
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "check.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="itpo-lab record-check"):
        read_checks(tmp_path)
