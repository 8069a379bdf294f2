"""Shared fixtures: every test runs against a private, temporary Minari store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def minari_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``MINARI_DATASETS_PATH`` at a fresh folder so no test reads or writes ``~/.minari``."""
    root = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(autouse=True)
def _eager_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """``AdaptConfig(backend="auto")`` resolves to eager in tests: a compile costs seconds to minutes per
    shape. Tests of the compiled step ask for ``backend="compile"`` explicitly (tests/test_step_backends.py)."""
    monkeypatch.setenv("ITPO_BACKEND", "eager")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Two threads on two busy cores can be far slower than one; tests are tiny anyway.
    torch.set_num_threads(1)
