"""Benchmarks time CPU work with one torch thread (two threads on two busy cores can be 50x slower)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(Path(tmp_path_factory.mktemp("minari"))))
