"""itpo_lab.zoo_tables: the base-policy comparison is counted from the entries, never written by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from itpo_lab import convert_logs, zoo_write
from itpo_lab.offline import save_offline_policy
from itpo_lab.zoo_tables import base_policies_markdown, comparison_markdown
from itpo_wrap.networks import TanhActor, TwinQ


def _add(root: Path, name: str, policy: str, score: float, std: float, updates: int) -> None:
    env, _, level = name.partition("-")
    # a real (tiny) checkpoint: add_policy loads what it adds (issue 21); the tables never read it
    file = save_offline_policy(root / f"{name}-{policy}.pt", TanhActor(3, 1, [4]), TwinQ(3, 1, [4]), algorithm=policy,
                               config={}, dataset_id=f"itpo/{env}/{level}-v0", env_id=f"{env.capitalize()}-v5",
                               action_low=-np.ones(1), action_high=np.ones(1), updates=updates)
    zoo_write.add_policy(name, policy, file, kind="offline", dataset_id=f"itpo/{env}/{level}-v0",
                   env_id=f"{env.capitalize()}-v5", root=root,
                   info={"algorithm": policy, "updates": updates,
                         "eval": {"episodes": 10, "score_mean": score, "score_std": std}})


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    # hopper-medium-replay's behaviour score is 9.3 and hopper-medium's 34.6 (policies/behavior/hopper)
    _add(tmp_path, "hopper-medium-replay", "td3_bc", 33.6, 7.5, 100_000)
    _add(tmp_path, "hopper-medium-replay", "rebrac", 36.0, 5.0, 100_000)
    _add(tmp_path, "hopper-medium", "td3_bc", 51.4, 2.3, 100_000)
    _add(tmp_path, "hopper-medium", "rebrac", 50.0, 2.0, 100_000)
    _add(tmp_path, "walker2d-medium-replay", "td3_bc", 5.0, 1.0, 100_000)  # below its data (9.6), no rebrac
    return tmp_path


def test_comparison_counts_and_standard_error(root: Path) -> None:
    text = "\n".join(comparison_markdown(root))
    se = (7.5 ** 2 / 10 + 5.0 ** 2 / 10) ** 0.5
    assert f"| hopper-medium-replay | 9.3 | 33.6 (100000 updates) | 36.0 (100000 updates) | +2.4 ± {se:.1f} |" in text
    assert "| hopper-medium | 34.6 | 51.4 (100000 updates) | 50.0 (100000 updates) | -1.4 ± " in text
    assert "| walker2d-medium-replay | 9.6 | 5.0 (100000 updates) | - | - |" in text
    assert "rebrac at least td3_bc: 1 of 2 datasets with both." in text
    assert "td3_bc on 1 of 2 trained, rebrac on 1 of 1 trained." in text


def test_base_policy_page_holds_the_comparison(root: Path) -> None:
    page = base_policies_markdown(root)
    assert "## td3_bc against rebrac" in page and "Not trained yet:" in page


def test_calibration_table_lists_recorded_policies(root: Path) -> None:
    from itpo_lab.zoo_tables import calibration_markdown

    assert calibration_markdown(root)[-1] == "No policy has been measured yet."
    zoo_write.record_policy_facts("hopper-medium", "rebrac", {"critic_calibration": {
        "states": 900, "episodes": 10, "q_mean": 150.0, "return_mean": 200.0, "ratio": 0.75, "correlation": 0.9}}, root)
    assert calibration_markdown(root)[-1] == "| hopper-medium | rebrac | 900 | 150.0 | 200.0 | 0.75 | 0.90 |"
    with pytest.raises(ValueError, match="cannot change 'file'"):
        zoo_write.record_policy_facts("hopper-medium", "rebrac", {"file": "x.pt"}, root)
    with pytest.raises(KeyError, match="has no policy 'sac'"):
        zoo_write.record_policy_facts("hopper-medium", "sac", {}, root)


def test_learning_curves_prefer_running_resume_logs(root: Path, tmp_path: Path) -> None:
    from itpo_lab.zoo_tables import learning_curves, plot_learning_curves

    def scores(folder: Path, name: str, *points: tuple[int, float]) -> None:  # a log of evaluations only
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("component,step,wall_s,metric,value\n" + "".join(
            f"train,{step},1.0,train/loss,0.5\neval,{step},1.0,eval/score_mean,{score}\n" for step, score in points))

    scores(root / "hopper-medium", "td3_bc_metrics.csv", (5000, 20.0), (10000, 30.0))
    convert_logs.set_policy_log("hopper-medium", "td3_bc", "td3_bc_metrics.csv", ["eval", "train"], root)
    resume = tmp_path / "runs"  # the trainers' default layout: runs/<algorithm>/<entry>-seed<k>/
    rebrac = resume / "rebrac"
    scores(rebrac / "hopper-medium-seed0", "metrics.csv", (5000, 12.5))
    scores(rebrac / "ant-medium-seed0", "metrics.csv", (5000, 1.0))  # not a zoo entry: ignored
    scores(rebrac / "hopper-medium-beta2-0.1-seed0", "metrics.csv", (5000, 14.0))  # a settings check: its own label
    # finished (policy.pt written): the zoo's curve stands
    scores(rebrac / "hopper-medium-replay-seed3", "metrics.csv", (5000, 99.0))
    (rebrac / "hopper-medium-replay-seed3" / "policy.pt").write_bytes(b"")
    curves = learning_curves(root, resume)
    assert curves["hopper-medium"]["rebrac beta2-0.1"] == ([5000], [14.0], False)
    assert curves["hopper-medium"]["td3_bc"] == ([5000, 10000], [20.0, 30.0], True)
    assert curves["hopper-medium"]["rebrac"] == ([5000], [12.5], False)  # the running run wins over the zoo's
    assert curves["hopper-medium-replay"]["rebrac"] == ([100_000], [36.0], True)  # no log kept: final only
    assert "ant-medium" not in curves
    pytest.importorskip("matplotlib")
    out = plot_learning_curves(tmp_path / "curves.png", root, resume)
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
