"""What ``pip install`` gives: a wheel with the demo zoo entry, ``py.typed`` and the license, whose files
are the full zoo's own; the README's quickstarts run on the packaged entry alone."""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from itpo_lab import zoo_write
from itpo_wrap import zoo

ROOT = Path(__file__).resolve().parents[1]
DEMO = zoo.PACKAGED_ZOO / "hopper-medium"


def _readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _build_wheel(out: Path) -> Path:
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out)], check=True, capture_output=True, timeout=300)
    finally:
        if not had_build:  # setuptools leaves its build folder in the source tree
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    return next(out.glob("itpo_wrap-*.whl"))


def test_packaged_entry_is_an_export_of_the_full_zoo(tmp_path: Path) -> None:
    # the committed package data is exactly what zoo_write.export_entry makes from policies/zoo today
    if not (ROOT / "policies" / "zoo" / "hopper-medium").is_dir():
        pytest.skip("no source checkout zoo")
    made = zoo_write.export_entry("hopper-medium", tmp_path, policies=["td3_bc", "sac_medium"], world_models=["meanflow"],
                            root=ROOT / "policies" / "zoo")
    names = sorted(p.name for p in made.iterdir())
    assert names == sorted(p.name for p in DEMO.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(made, DEMO, names, shallow=False)
    assert not mismatch and not errors, f"refresh itpo_wrap/zoo_demo with zoo_write.export_entry: {mismatch}"


def test_wheel_carries_the_demo_zoo_py_typed_and_license(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for file in DEMO.iterdir():
            member = f"itpo_wrap/zoo_demo/hopper-medium/{file.name}"
            assert member in names, member
            assert hashlib.sha256(zf.read(member)).digest() == hashlib.sha256(file.read_bytes()).digest()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        scripts = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "itpo_wrap/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith("policies/") for n in names)  # the full zoo stays in the checkout
    assert "itpo_lab/cli.py" in names and "itpo-lab = itpo_lab.cli:main" in scripts  # the lab ships beside it
    assert "Project-URL: Paper, https://arxiv.org/abs/2603.22430" in meta and "Classifier: Typing :: Typed" in meta


def test_packaged_entry_loads_and_adapts_without_the_checkout_zoo() -> None:
    entry = zoo.load("hopper-medium", root=zoo.PACKAGED_ZOO)
    assert entry.world_model_kinds == ["meanflow"]
    with pytest.raises(KeyError, match="ITPO_ZOO_PATH or --zoo-dir"):
        entry.load_world_model("diffusion")
    assert zoo.load("hopper-medium", policy="sac_medium", root=zoo.PACKAGED_ZOO).meta["model"] is not None


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_quickstart_runs_on_the_packaged_entry(index: int, tmp_path: Path) -> None:
    # as after `pip install`: the zoo found is the package's one demo entry, the cwd is not the checkout
    env = {**os.environ, "ITPO_ZOO_PATH": str(zoo.PACKAGED_ZOO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", _readme_blocks()[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ITPO" in proc.stdout or "wrapped" in proc.stdout


@pytest.mark.slow
def test_wheel_in_a_clean_venv_runs_the_readme_quickstarts(tmp_path: Path) -> None:
    # the "done when": pip wheel, install into a clean venv with no checkout, run the README's code
    wheel = _build_wheel(tmp_path / "wheel")
    venv.create(tmp_path / "venv", with_pip=True)
    py = tmp_path / "venv" / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("ITPO_ZOO_PATH", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "1"
    for block in _readme_blocks():
        proc = subprocess.run([py, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    found = subprocess.run([py, "-c", "from itpo_wrap import zoo; print(zoo.zoo_path(), zoo.list())"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert "site-packages" in found and "['hopper-medium']" in found
