"""Every example runs end to end (tiny budgets), and ``itpo demo`` runs on the shipped zoo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from itpo_wrap import zoo

ROOT = Path(__file__).resolve().parents[1]
needs_meanflow = pytest.mark.skipif(
    "hopper-medium-replay" not in zoo.list()
    or "meanflow" not in zoo.load("hopper-medium-replay").world_model_kinds,
    reason="the zoo's hopper-medium-replay MeanFlow world model is not trained yet")


def _run(args: list[str], cwd: Path, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@needs_meanflow
def test_quickstart_sb3(tmp_path: Path) -> None:
    out = _run([str(ROOT / "examples" / "quickstart_sb3.py"), "--episodes", "1", "--max-steps", "5"], tmp_path)
    assert "SAC + ITPO" in out and "last adaptation step" in out
    assert (tmp_path / "runs" / "examples" / "sac_hopper_expert_unchanged.zip").is_file()


@needs_meanflow
def test_quickstart_torch(tmp_path: Path) -> None:
    out = _run([str(ROOT / "examples" / "quickstart_torch.py"), "--max-steps", "5"], tmp_path)
    assert "return" in out and "over 5 steps" in out and "fallback False" in out


def test_train_world_model_example(tmp_path: Path) -> None:
    # a small private dataset, so the test neither needs nor touches the user's own Minari store
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "PYTHONWARNINGS": "ignore"}
    code = ("from itpo_lab.data.collect import CollectConfig, collect; "
            "collect(CollectConfig(env='hopper', levels=('medium',), transitions=3000), log=lambda s: None)")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path, timeout=300)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "train_world_model.py"), "--dataset",
                           "itpo/hopper/medium-v0", "--steps", "40"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "one-step RMSE" in proc.stdout and "adapted actions" in proc.stdout
    assert (tmp_path / "runs" / "examples" / "world_model.pt").is_file()


@needs_meanflow
def test_demo_on_the_zoo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from itpo_wrap.cli import main

    # `make demo` runs the same command with the default episodes and no step cap
    assert main(["demo", "--kind", "meanflow", "--episodes", "1", "--max-steps", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "ITPO (meanflow)" in out and "ms / step" in out
    assert (tmp_path / "demo.png").is_file()
