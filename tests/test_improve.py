"""``itpo improve`` (issue 24): offline first-order improvement through the world model. A toy whose optimum
is known, zero steps, a killed and resumed run, the zoo round trip as ``improved``, the refusal of a loser,
and bad settings refused before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from itpo_lab import cli as lab_cli
from itpo_lab import remake, zoo_write
from itpo_wrap import AdaptConfig, ITPOPolicyWrapper, zoo
from itpo_wrap.cli import main as itpo_main
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.data.minari import write_dataset
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.improve import improve_policy
from itpo_wrap.improve_config import ImproveConfig
from itpo_wrap.networks import TanhActor
from itpo_wrap.provenance import Provenance
from tests.test_adapt_toys import LinearQuadraticWM
from tests.test_offline_minari import _episodes
from tests.test_zoo_world_models import _bundle, _entry


def _toy_data(episodes: int = 10, steps: int = 30) -> OfflineDataset:
    rng = np.random.default_rng(0)
    return OfflineDataset.from_episodes([
        {"observations": rng.normal(size=(steps + 1, 3)).astype(np.float32),
         "actions": rng.uniform(-1, 1, (steps, 2)).astype(np.float32), "rewards": np.zeros(steps),
         "terminations": np.zeros(steps, bool), "truncations": np.r_[np.zeros(steps - 1, bool), True]}
        for _ in range(episodes)])


def _toy(**overrides: object) -> ImproveConfig:
    settings = {"steps": 300, "batch_size": 32, "lr": 1e-2, "bc_target": "none", "max_drift": None, "grad_clip": None,
                "horizon": 1, "particles": 1, "termination": "hard", "holdout_fraction": 0.3, "validation_states": 64,
                "eval_every": 50, "checkpoint_every": 50, "log_every": 10}
    return ImproveConfig(**{**settings, **overrides})  # type: ignore[arg-type]


def _linear() -> nn.Linear:
    policy = nn.Linear(3, 2)
    with torch.no_grad():
        policy.weight.zero_()
        policy.bias.zero_()
    return policy


def _val_rows(folder: Path) -> list[list[str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return [r for r in csv.reader(f)][1:]


def test_ascent_finds_the_known_optimum_and_the_held_out_return_rises(tmp_path: Path) -> None:
    wm, policy = LinearQuadraticWM(), _linear()  # H = 1, no noise: the best action is linear in s, a closed form
    result = improve_policy(policy, wm, _toy_data(), _toy(), run_dir=tmp_path / "run", progress=False)
    assert result.accepted and result.verdict.gain > 5 * result.verdict.gain_se > 0
    s = torch.tensor([[0.5, -1.0, 0.3], [-0.2, 0.4, 1.1]])
    with torch.no_grad():
        got = 2.0 * result.policy(s)  # the Box is [-2, 2]: env action = 2 * output
    want = torch.stack([wm.optimal_first_action(x, 0.99) for x in s])
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)
    assert torch.count_nonzero(policy.weight) == 0 and result.policy is not policy  # the base is never touched
    val_j = [float(r[4]) for r in _val_rows(tmp_path / "run") if r[3] == "improve/val_j"]
    assert len(val_j) == 6 and val_j[-1] > val_j[0]
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["accepted"] and summary["best_step"] == result.best_step > 0


def test_zero_steps_returns_the_base_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    policy = TanhActor(3, 2, [8])
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    result = improve_policy(policy, LinearQuadraticWM(), _toy_data(), _toy(steps=0), progress=False)
    assert result.policy is policy and not result.accepted and result.best_step == 0
    assert "refused" in result.message and result.verdict.gain == 0.0
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
    with pytest.raises(ValueError, match="nothing to save: refused"):
        result.save(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


class _Killable(LinearQuadraticWM):
    """The toy with a kill switch: the ``fail_at``-th reward call raises, as a kill mid-step would stop it."""

    fail_at: int | None = None
    calls = 0

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        return super().reward(s, a)


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    cfg = _toy(steps=12, bc_target="base", max_drift=0.3, lr=3e-2, eval_every=4, checkpoint_every=4, log_every=1,
               particles=2, validation_states=16)
    data = _toy_data()

    def run(folder: Path, fail_at: int | None = None) -> object:
        torch.manual_seed(0)
        wm = _Killable(sigma=0.1)
        wm.fail_at = fail_at
        return improve_policy(TanhActor(3, 2, [8]), wm, data, cfg, run_dir=folder, progress=False)

    whole = run(tmp_path / "whole")
    # reward calls (H = 1): 1 for the base's validation J, 1 per step, 1 per validation (steps 4 and 8): the
    # 13th call falls in step 10, after step 9's rows and step 8's checkpoint
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", fail_at=13)
    rows_at_kill = _val_rows(tmp_path / "killed")
    assert max(int(r[1]) for r in rows_at_kill) == 9
    resumed = run(tmp_path / "killed")
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters(), strict=True):  # type: ignore[attr-defined]
        assert torch.equal(a, b)
    assert whole.verdict == resumed.verdict and whole.best_step == resumed.best_step  # type: ignore[attr-defined]
    drop_wall = [[r[0], r[1], r[3], r[4]] for r in _val_rows(tmp_path / "whole") if not r[3].endswith("updates_per_s")]
    assert drop_wall == [[r[0], r[1], r[3], r[4]] for r in _val_rows(tmp_path / "killed")
                         if not r[3].endswith("updates_per_s")]


def test_bad_settings_fail_before_anything_is_written(tmp_path: Path) -> None:
    for bad, match in (({"steps": -1}, "steps=-1 must be an int >= 0"), ({"lr": 0.0}, "lr=0.0 must be a finite float > 0"),
                       ({"alpha": float("nan")}, "alpha=nan"), ({"bc_target": "expert"}, "bc_target='expert' is unknown"),
                       ({"holdout_fraction": 1.0}, "holdout_fraction=1.0 must be in"),
                       ({"max_drift": -0.1}, "max_drift=-0.1"), ({"validation_states": 1}, "validation_states=1")):
        with pytest.raises(ValueError, match=match):
            ImproveConfig(**bad)  # type: ignore[arg-type]
    folder = tmp_path / "run"
    improve_policy(_linear(), LinearQuadraticWM(), _toy_data(), _toy(steps=4), run_dir=folder, progress=False)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"holds a run with other settings \(lr: 0.01 -> 0.02\)"):
        improve_policy(_linear(), LinearQuadraticWM(), _toy_data(), _toy(steps=4, lr=2e-2), run_dir=folder,
                       progress=False)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError, match="too few to hold out"):
        improve_policy(_linear(), LinearQuadraticWM(), _toy_data(episodes=2), _toy(), run_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit) as exc:
        itpo_main(["improve", "--entry", "hopper-medium", "--lr", "-1", "--out", str(tmp_path / "c")])
    assert exc.value.code == 2 and not (tmp_path / "c").exists()


@pytest.fixture
def pendulum_zoo(tmp_path: Path) -> Path:
    """A Pendulum entry (td3_bc and rebrac, a tiny MeanFlow model) and its Minari dataset."""
    root = tmp_path / "zoo"
    _entry(root, tmp_path)
    zoo_write.add_world_model("pendulum-medium", "meanflow", _bundle(tmp_path / "wm.pt"), root=root)
    write_dataset("itpo/pendulum/medium-v0", _episodes(6), env_id="Pendulum-v1", ref_min_score=-1500.0,
                  ref_max_score=-150.0, algorithm_name="uniform random", description="test data")
    return root


def _cli(root: Path, out: Path, *extra: str) -> list[str]:
    return ["improve", "--entry", "pendulum-medium", "--policy", "td3_bc", "--kind", "meanflow", "--zoo-dir",
            str(root), "--out", str(out), "--batch-size", "16", "--particles", "2", "--holdout-fraction", "0.4",
            "--validation-states", "32", "--eval-every", "10", "--no-progress", *extra]


def test_the_improved_policy_round_trips_through_the_zoo(pendulum_zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = _cli(pendulum_zoo, out, "--steps", "30", "--lr", "1e-2", "--bc-target", "none", "--max-drift", "none",
                "--record", "--no-env-check")
    assert lab_cli.main(argv) == 0
    saved = zoo.load("pendulum-medium", policy="improved", root=pendulum_zoo)
    base = zoo.load("pendulum-medium", policy="td3_bc", root=pendulum_zoo)
    improved_file = torch.load(out / "improved.pt", weights_only=True)["actor"]["state_dict"]
    assert all(torch.equal(saved.actor.state_dict()[k], v) for k, v in improved_file.items())
    assert any(not torch.equal(saved.actor.state_dict()[k], v) for k, v in base.actor.state_dict().items())
    assert all(torch.equal(saved.critic.state_dict()[k], v) for k, v in base.critic.state_dict().items())
    record = json.loads((pendulum_zoo / "pendulum-medium" / "entry.json").read_text())["policies"]["improved"]
    assert record["algorithm"] == "itpo_improve" and record["improve"]["base_policy"] == "td3_bc"
    assert record["improve"]["accepted"] and record["improve"]["world_model"] == "meanflow"
    card = (pendulum_zoo / "pendulum-medium" / "MODEL_CARD.md").read_text()
    assert "`improved` is `td3_bc` improved offline by `itpo improve`" in card and "critic is the base's" in card
    # how it was made, as data: every parsed option; the card's command is rendered from it and remakes it
    made_by = Provenance.from_dict(record["provenance"])
    assert made_by.program == "itpo-lab improve" and made_by.args["steps"] == 30 and made_by.args["max_drift"] is None
    assert made_by.args["record"] is True and made_by.args["kind"] == "meanflow" and "command" not in record
    assert remake.render(made_by) in card and "--max-drift none" in remake.render(made_by)
    assert remake.parse(made_by.program, remake.render_argv(made_by)) == made_by
    assert load_offline_policy(out / "improved.pt")[2]["info"]["provenance"] == record["provenance"]
    wrapped = ITPOPolicyWrapper(saved.policy, saved.load_world_model("meanflow"), AdaptConfig(backend="eager"))
    action, _ = wrapped.predict(np.array([1.0, 0.0, 0.5], dtype=np.float32), deterministic=True)
    assert action.shape == (1,) and np.isfinite(action).all()
    rows = tmp_path / "rows.csv"
    assert itpo_main(["evaluate", "--entry", "pendulum-medium", "--policy", "improved", "--method", "base",
                      "--zoo-dir", str(pendulum_zoo), "--split", "tune", "--seeds", "0", "--max-steps", "5",
                      "--out", str(rows)]) == 0
    assert "improved" in rows.read_text()


def test_a_loser_is_never_written_or_recorded(pendulum_zoo: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert lab_cli.main(_cli(pendulum_zoo, out, "--steps", "0", "--record", "--env-seeds", "0", "1")) == 1
    assert "refused" in capsys.readouterr().out
    assert not (out / "improved.pt").exists() and not json.loads((out / "result.json").read_text())["accepted"]
    assert "improved" not in json.loads((pendulum_zoo / "pendulum-medium" / "entry.json").read_text())["policies"]
    assert itpo_main(_cli(pendulum_zoo, tmp_path / "run2", "--steps", "0")) == 1
    with pytest.raises(SystemExit) as exc:  # recording under the base's own name is refused before the run
        lab_cli.main(_cli(pendulum_zoo, tmp_path / "run3", "--record", "--name", "td3_bc"))
    assert exc.value.code == 2 and not (tmp_path / "run3").exists()
