"""Issue 21 soak tests (``make test-slow``): 50,000 calls on one wrapper and 40 rebuilt wrappers keep a flat
memory footprint, the policy module stays pretrained throughout, and restore is bit exact at the end.

``ITPO_SOAK_CALLS`` / ``ITPO_SOAK_REBUILDS`` shrink them for a quick local run."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from itpo_wrap import zoo
from itpo_wrap.config import AdaptConfig
from itpo_wrap.wrapper import ITPOPolicyWrapper

pytestmark = pytest.mark.slow
NAME = "hopper-medium-replay"
CFG = AdaptConfig(horizon=1, particles=2, steps=1, persistence="persistent", backend="eager")
CALLS = int(os.environ.get("ITPO_SOAK_CALLS", 50_000))
REBUILDS = int(os.environ.get("ITPO_SOAK_REBUILDS", 40))


def _rss_mb() -> float:
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        pytest.skip("needs /proc (Linux) to read the resident set size")
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture(autouse=True)
def _needs_zoo() -> None:
    if NAME not in zoo.list():
        pytest.skip("needs the checkout zoo")


def test_many_calls_on_one_wrapper_keep_memory_flat_and_the_module_pretrained() -> None:
    entry = zoo.load(NAME, policy="td3_bc")
    pretrained = {k: v.clone() for k, v in entry.actor.state_dict().items()}
    w = ITPOPolicyWrapper(entry.policy, entry.load_world_model("meanflow"), CFG)
    rng = np.random.default_rng(0)
    obs = rng.normal(scale=0.1, size=(CALLS, 11)).astype(np.float32)
    warm = min(1_000, CALLS // 10)
    for i in range(CALLS):
        if i == warm:
            gc.collect()
            start = _rss_mb()
        actions, _ = w.predict(obs[i], episode_start=np.array([i % 200 == 0]), deterministic=True)
        assert np.isfinite(actions).all()
    gc.collect()
    assert _rss_mb() - start < 64, "memory grew over the calls"
    assert all(torch.equal(entry.actor.state_dict()[k], v) for k, v in pretrained.items())
    assert w.last_info[0]["param_drift"] > 0
    w.reset()
    restored = w.adapted_parameters(0)  # bit exact, by name
    assert restored.keys() <= pretrained.keys() and all(torch.equal(v, pretrained[k]) for k, v in restored.items())


def test_rebuilt_wrappers_over_fresh_entries_keep_memory_flat() -> None:
    obs = np.zeros(11, np.float32)
    readings = []
    for _ in range(REBUILDS):
        entry = zoo.load(NAME, policy="td3_bc")
        w = ITPOPolicyWrapper(entry.policy, entry.load_world_model("meanflow"), CFG)
        for _ in range(20):
            w.predict(obs, deterministic=True)
        del entry, w
        gc.collect()
        readings.append(_rss_mb())
    settled = readings[min(4, len(readings) - 1)]
    assert readings[-1] - settled < 100, f"resident memory after each rebuild (MB): {readings}"
