"""Data-layer timings: writing and reading a Minari dataset of 20k HalfCheetah transitions.

Run with ``make bench`` (JSON in ``benchmarks/results/latency.json``).
"""

from __future__ import annotations

from typing import Any

import torch

from itpo_lab.data.collect import random_episodes
from itpo_wrap.data import load_dataset, write_dataset

EPISODES = random_episodes("HalfCheetah-v5", transitions=20_000, seed=0)


def _write(did: str) -> None:
    write_dataset(did, EPISODES, env_id="HalfCheetah-v5", ref_min_score=-280.0, ref_max_score=6000.0,
                  algorithm_name="uniform random actions", description="benchmark data", overwrite=True)


def test_write_dataset(benchmark: Any) -> None:
    benchmark.group = "data"
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["transitions"] = 20_000
    benchmark.pedantic(_write, args=("itpo/halfcheetah/bench-write-v0",), rounds=3, iterations=1)


def test_load_dataset(benchmark: Any) -> None:
    _write("itpo/halfcheetah/bench-read-v0")
    benchmark.group = "data"
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["transitions"] = 20_000
    data = benchmark.pedantic(load_dataset, args=("itpo/halfcheetah/bench-read-v0",), rounds=5, iterations=1)
    assert len(data) == 20_000
