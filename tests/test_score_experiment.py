"""benchmarks/run.py and summarize.py end to end on the shipped zoo, with 3-step episodes."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from itpo_wrap import zoo

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    "hopper-medium-replay" not in zoo.list()
    or "meanflow" not in zoo.load("hopper-medium-replay").world_model_kinds,
    reason="needs the zoo's hopper-medium-replay MeanFlow world model")


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _zoo_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the hopper-medium-replay entry (tune_eval writes its tuned settings) and a results path."""
    root = tmp_path / "zoo"
    shutil.copytree(zoo.zoo_path() / "hopper-medium-replay", root / "hopper-medium-replay")
    return root, tmp_path / "episodes.csv"


def test_paired_rows_resume_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "episodes.csv"
    common = ["--entry", "hopper-medium-replay", "--seeds", "7", "8", "--max-steps", "3", "--out", str(out)]
    _run("benchmarks/run.py", "--method", "base", *common)
    _run("benchmarks/run.py", "--method", "itpo", "--kind", "meanflow", "--step-size", "1e-4", "3e-4", *common)
    _run("benchmarks/run.py", "--method", "mppi", "--kind", "meanflow", "--mppi", '{"samples": 16, "iterations": 1}',
         *common)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 + 4 + 2
    assert {r["seed"] for r in rows} == {"7", "8"} and all(r["length"] == "3" for r in rows)
    assert all(float(r["ms_per_step"]) > 0 and r["commit"] is not None for r in rows)
    # same seeds, same start: the first observation is the same, so the 3-step returns are close but paired
    assert {r["seed"] for r in rows if r["method"] == "itpo"} == {r["seed"] for r in rows if r["method"] == "base"}
    # rerunning a finished configuration adds nothing (resume by key)
    assert "all 2 seeds done" in _run("benchmarks/run.py", "--method", "base", *common)
    assert len(list(csv.DictReader(out.open()))) == len(rows)
    # a tagged world-model version is another configuration: its rows are new, not "done"
    _run("benchmarks/run.py", "--method", "itpo", "--kind", "meanflow", "--step-size", "1e-4", "--tag", "v2", *common)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 + 4 + 2 + 2
    # another policy's critic as the terminal value is another configuration too
    _run("benchmarks/run.py", "--method", "itpo", "--kind", "meanflow", "--step-size", "1e-4",
         "--critic-policy", "rebrac", *common)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 + 4 + 2 + 2 + 2 and json.loads(rows[-1]["settings"])["critic"] == "rebrac"
    assert rows[-1]["policy"] == "td3_bc"  # the wrapped policy is unchanged
    md = tmp_path / "results.md"
    _run("benchmarks/summarize.py", "--episodes", str(out), "--out", str(md), "--notes", str(tmp_path / "none.md"),
         "--min-pairs", "2")
    text = md.read_text()
    assert "itpo-meanflow a=0.0001" in text and "itpo-meanflow a=0.0003" in text
    assert "mppi-meanflow N=16+8 it=1" in text and "itpo-meanflow[v2] a=0.0001" in text
    assert "critic=rebrac" in text
    assert len(re.findall(r"\| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\] \| [0-2]/2 \|", text)) == 5  # paired rows
    assert "## Headline" in text and (tmp_path / "pareto.png").is_file()
    # 3-step episodes are smoke tests, never the headline, so there is no gain figure to draw
    assert not (tmp_path / "gain_per_dataset.png").exists()


@pytest.fixture
def benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put ``benchmarks/`` on ``sys.path`` for one test: its scripts import each other by bare name
    (``tune_eval`` imports ``run`` and ``summarize``), so this is how they are imported here too."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))


@pytest.mark.usefixtures("benchmarks_on_path")
def test_critic_policy_swaps_only_the_terminal_critic() -> None:
    """--critic-policy: the world model's critic is the other policy's twin Q, the dynamics the same."""
    import run
    import torch

    entry = zoo.load("hopper-medium-replay")
    other = zoo.load("hopper-medium-replay", policy="rebrac")
    own, swapped = run.load_world_model(entry, "meanflow"), run.load_world_model(entry, "meanflow", critic_from=other)
    obs, act = torch.randn(4, entry.actor.obs_dim), torch.rand(4, entry.actor.act_dim) * 2 - 1
    expected = torch.min(*other.critic(obs, act))
    with torch.no_grad():
        assert not torch.allclose(own.critic(obs, act), swapped.critic(obs, act))
        torch.testing.assert_close(swapped.critic(obs, act).reshape(-1), expected.reshape(-1))
    assert all(torch.equal(a, b) for a, b in zip(own.dynamics.state_dict().values(),
                                                  swapped.dynamics.state_dict().values(), strict=True))


@pytest.mark.usefixtures("benchmarks_on_path")
def test_headline_picks_each_entrys_tuned_configuration(tmp_path: Path) -> None:
    import summarize

    def rec(kind: str, gain: float, last_row: int, **settings: Any) -> dict[str, Any]:
        full = {"method": "itpo", "kind": kind, "steps": 5, "particles": 8, "horizon": 5, "step_size": 1e-4,
                "persistence": "persistent", "gate": "off", **settings}
        return {"entry": "e", "policy": "td3_bc", "method": "itpo", "kind": kind, "config": json.dumps(full),
                "settings": full, "last_row": last_row, "gain": gain, "ci_low": gain - 1, "ci_high": gain + 1,
                "pairs": 10, "wins": 7, "ms_per_step": 10.0 if kind == "meanflow" else 40.0, "score_mean": 50 + gain}

    recs = [{"entry": "e", "policy": "td3_bc", "method": "base", "kind": "", "config": "base", "settings": {"method": "base"},
             "last_row": 0, "score_mean": 50.0, "ms_per_step": 0.3},
            rec("diffusion", 20.0, 1),                     # the tuned one (defaults fill what the zoo leaves out)
            rec("diffusion", 30.0, 2, step_size=3e-4),     # better but not what the zoo records
            rec("diffusion", 40.0, 3, max_steps=300),      # truncated: never the headline
            rec("meanflow", 5.0, 4),
            rec("meanflow", 10.0, 5, tag="teacher"),       # the same settings, written later: the current model
            rec("diffusion", -5.0, 6, critic="rebrac"),    # another policy's critic: never the headline
            {**rec("diffusion", 50.0, 7), "policy": "rebrac"}]  # another base policy: not what was tuned
    best = summarize.headline(recs, {"e": {"diffusion": {"step_size": 1e-4}, "meanflow": {"step_size": 1e-4, "steps": 5}}},
                              {"e": "td3_bc"})
    assert best[("e", "diffusion")]["gain"] == 20.0 and best[("e", "meanflow")]["gain"] == 10.0
    table = "\n".join(summarize.headline_table(recs, best))
    assert "| e | 50.0 | +20.0 [+19.0, +21.0], 7/10" in table and "| 50% | 25% |" in table
    assert summarize.plots(recs, tmp_path, best=best) == ["gain_per_dataset.png", "pareto.png"]


def test_tune_eval_records_the_best_configuration(tmp_path: Path) -> None:
    root, out = _zoo_copy(tmp_path)
    _run("benchmarks/tune_eval.py", "--entry", "hopper-medium-replay", "--kind", "meanflow", "--step-size", "1e-4",
         "1e-2", "--persistence", "persistent", "reset_each_step", "--tune-seeds", "3", "4", "--tune-max-steps", "4",
         "--eval-seeds", "5", "--eval-max-steps", "2", "--out", str(out), "--zoo-dir", str(root))
    rows = list(csv.DictReader(out.open()))
    tune = [r for r in rows if r["split"] == "tune"]
    assert len(tune) == 2 * (1 + 2 * 2)  # two seeds x (base + 2 step sizes x 2 persistence modes)
    assert all(json.loads(r["settings"])["max_steps"] == 4 for r in tune)
    # the recorded winner is the grid point with the best mean tuning score (ties: smaller step, persistent)
    means: dict[str, list[float]] = {}
    for r in tune:
        if r["method"] == "itpo":
            means.setdefault(r["settings"], []).append(float(r["score"]))
    best = max(means.items(), key=lambda kv: (sum(kv[1]) / 2, -json.loads(kv[0])["step_size"],
                                              json.loads(kv[0])["persistence"] == "persistent"))[0]
    entry = zoo.load("hopper-medium-replay", root=root)
    cfg = entry.adapt_config("meanflow")
    assert (cfg.step_size, cfg.persistence) == (json.loads(best)["step_size"], json.loads(best)["persistence"])
    assert "tune_eval.py" in json.loads((root / "hopper-medium-replay" / "entry.json").read_text())[
        "world_models"]["meanflow"]["tuned_note"]
    # then base and the winner on the evaluation seed, paired
    ev = [r for r in rows if r["split"] == "eval"]
    assert sorted(r["method"] for r in ev) == ["base", "itpo"] and {r["seed"] for r in ev} == {"5"}
    assert json.loads(next(r for r in ev if r["method"] == "itpo")["settings"])["step_size"] == cfg.step_size


def test_tune_eval_grids_the_action_trust_region(tmp_path: Path) -> None:
    root, out = _zoo_copy(tmp_path)
    _run("benchmarks/tune_eval.py", "--entry", "hopper-medium-replay", "--kind", "meanflow", "--step-size", "1e-2",
         "--max-action-change", "none", "0", "--tune-seeds", "3", "--tune-max-steps", "6", "--skip-eval",
         "--out", str(out), "--zoo-dir", str(root))
    rows = {(r["method"], json.loads(r["settings"]).get("max_action_change", "absent")): r
            for r in csv.DictReader(out.open())}
    assert set(rows) == {("base", "absent"), ("itpo", "absent"), ("itpo", 0.0)}  # 'none' keeps the old row key
    # a zero trust region executes the base action at every step: the very same episode
    assert rows[("itpo", 0.0)]["episode_return"] == rows[("base", "absent")]["episode_return"]
    tuned = zoo.load("hopper-medium-replay", root=root).tuned_settings["meanflow"]
    winner = max((k for k in rows if k[0] == "itpo"), key=lambda k: (float(rows[k]["score"]), k[1] == "absent"))
    assert tuned.get("max_action_change", "absent") == winner[1]


def test_tune_eval_grids_the_adaptation_steps(tmp_path: Path) -> None:
    root, out = _zoo_copy(tmp_path)
    _run("benchmarks/tune_eval.py", "--entry", "hopper-medium-replay", "--kind", "meanflow", "--step-size", "1e-2",
         "--adapt-steps", "0", "2", "--tune-seeds", "3", "--tune-max-steps", "6", "--skip-eval",
         "--out", str(out), "--zoo-dir", str(root))
    rows = {(r["method"], r["steps"]): r for r in csv.DictReader(out.open())}
    assert set(rows) == {("base", ""), ("itpo", "0"), ("itpo", "2")}
    # E = 0 adapts nothing: the very same episode as the base
    assert rows[("itpo", "0")]["episode_return"] == rows[("base", "")]["episode_return"]
    # the recorded E is the winner's, and a tie goes to fewer steps (less latency)
    winner = max(("0", "2"), key=lambda e: (float(rows[("itpo", e)]["score"]), -int(e)))
    assert zoo.load("hopper-medium-replay", root=root).adapt_config("meanflow").steps == int(winner)


def test_tune_eval_grids_rollouts_and_horizon_and_records_the_winner(tmp_path: Path) -> None:
    root, out = _zoo_copy(tmp_path)
    _run("benchmarks/tune_eval.py", "--entry", "hopper-medium-replay", "--kind", "meanflow", "--step-size", "1e-2",
         "--particles", "2", "4", "--horizon", "1", "3", "--tune-seeds", "3", "--tune-max-steps", "5",
         "--eval-seeds", "5", "--eval-max-steps", "3", "--out", str(out), "--zoo-dir", str(root))
    rows = list(csv.DictReader(out.open()))
    tune = {(r["particles"], r["horizon"]): float(r["score"]) for r in rows if r["split"] == "tune" and r["method"] == "itpo"}
    assert set(tune) == {("2", "1"), ("2", "3"), ("4", "1"), ("4", "3")}
    cfg = zoo.load("hopper-medium-replay", root=root).adapt_config("meanflow")
    best = max(tune.values())
    cheapest = min((int(m), int(h)) for (m, h), v in tune.items() if v == best)  # ties: fewer M, then shorter H
    assert (cfg.particles, cfg.horizon) == cheapest
    # the evaluation runs the recorded M and H
    ev = [r for r in rows if r["split"] == "eval" and r["method"] == "itpo"]
    assert [(int(r["particles"]), int(r["horizon"])) for r in ev] == [cheapest]


def test_tune_eval_falls_back_to_the_base_when_nothing_beats_it(tmp_path: Path) -> None:
    root, out = _zoo_copy(tmp_path)
    # a zero trust region executes the base action: the only configuration ties the base, and a tie falls back
    _run("benchmarks/tune_eval.py", "--entry", "hopper-medium-replay", "--kind", "meanflow", "--step-size", "1e-2",
         "--max-action-change", "0", "--fallback", "--tune-seeds", "3", "--tune-max-steps", "5",
         "--eval-seeds", "5", "--eval-max-steps", "4", "--out", str(out), "--zoo-dir", str(root))
    entry = zoo.load("hopper-medium-replay", root=root)
    assert entry.adapt_config("meanflow").steps == 0
    assert "fallback" in json.loads((root / "hopper-medium-replay" / "entry.json").read_text())[
        "world_models"]["meanflow"]["tuned_note"]
    ev = {r["method"]: r for r in csv.DictReader(out.open()) if r["split"] == "eval"}
    assert ev["itpo"]["steps"] == "0" and ev["itpo"]["episode_return"] == ev["base"]["episode_return"]


@pytest.mark.usefixtures("benchmarks_on_path")
def test_choose_prefers_fewer_steps_and_falls_back_only_when_the_base_wins() -> None:
    import tune_eval as te

    def key(steps: int, alpha: float) -> str:
        return json.dumps({"method": "itpo", "kind": "diffusion", "steps": steps, "step_size": alpha,
                           "persistence": "persistent", "gate": "off"})

    scores = {key(5, 1e-4): [10.0, 12.0], key(3, 1e-4): [11.0, 11.0], key(5, 3e-5): [9.0, 9.0]}
    best, mean = te.choose(scores, "diffusion")
    assert (best["steps"], best["step_size"], mean) == (3, 1e-4, 11.0)  # tie at 11.0: fewer steps
    assert te.choose(scores, "diffusion", base_mean=10.9)[0]["steps"] == 3  # beats the base: kept
    fell, at = te.choose(scores, "diffusion", base_mean=11.0)  # ties the base: the base action
    assert fell["steps"] == 0 and at == 11.0

    # at equal E a tie goes to fewer rollouts M, then to a shorter horizon H
    def mh(particles: int, horizon: int) -> str:
        return json.dumps({"method": "itpo", "kind": "meanflow", "steps": 5, "step_size": 1e-4, "particles": particles,
                           "horizon": horizon, "persistence": "persistent", "gate": "off"})

    picked, _ = te.choose({mh(8, 3): [7.0], mh(4, 5): [7.0], mh(8, 5): [7.0], mh(4, 3): [6.0]}, "meanflow")
    assert (picked["particles"], picked["horizon"]) == (4, 5)


def test_meanflow_share_times_both_models_in_one_table() -> None:
    text = _run("benchmarks/meanflow_share.py", "--entry", "hopper-medium-replay", "--meanflow-steps", "1",
                "--rounds", "2", "--warmup", "1")
    rows = re.findall(r"\| (diffusion|meanflow) E=(\d) M=\d+ H=\d+ \| ([\d.]+) \| ([\d.]+) \| (\d+)% \|", text)
    assert [r[0] for r in rows] == ["diffusion", "meanflow"] and rows[0][4] == "100"
    assert all(float(r[2]) > 0 for r in rows)
