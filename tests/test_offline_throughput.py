"""Update throughput of policies/td3_bc.py and policies/rebrac.py (slow; not in CI).

    .venv/bin/pytest -m slow -s tests/test_offline_throughput.py          # ~3 min
    ITPO_BENCH_SECONDS=30 .venv/bin/pytest -m slow -s tests/test_offline_throughput.py -k "rebrac and 1t"

Walker2d-sized synthetic data (obs 17, act 6, 200k rows), default hyperparameters of each script,
evaluation off. Prints updates per wall second and per CPU second of this process: on a machine
shared with other jobs the second is the better estimate of the unloaded single-thread rate.
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import pytest
import torch

from itpo_lab.offline import TransitionTensors, keep_output_layer_fp32
from itpo_wrap.data.buffer import OfflineDataset
from itpo_wrap.networks import TanhActor, TwinQ
from tests.scripts import policy_script

SECONDS = float(os.environ.get("ITPO_BENCH_SECONDS", "15"))



@pytest.fixture(scope="module")
def data() -> TransitionTensors:
    rng, t = np.random.default_rng(0), 1000
    episodes = [{"observations": rng.normal(size=(t + 1, 17)), "actions": rng.uniform(-1, 1, (t, 6)),
                 "rewards": rng.normal(size=t), "terminations": np.zeros(t, bool),
                 "truncations": np.r_[np.zeros(t - 1, bool), True]} for _ in range(200)]
    return TransitionTensors(OfflineDataset.from_episodes(episodes, dataset_id="itpo/walker2d/medium-v0"))


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2], ids=["1t", "2t"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("algo", ["td3_bc", "rebrac"])
def test_update_throughput(algo: str, bf16: bool, threads: int, data: TransitionTensors) -> None:
    module = policy_script(algo)
    args = module.Args(dataset="itpo/walker2d/medium-v0", bf16=bf16)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if algo == "td3_bc":
        hidden = [args.hidden] * args.n_hidden
        actor, critic = TanhActor(17, 6, hidden), TwinQ(17, 6, hidden)
        extra: tuple = ()
    else:
        actor = TanhActor(17, 6, [args.hidden] * args.actor_n_hidden)
        critic = TwinQ(17, 6, [args.hidden] * args.critic_n_hidden, layernorm=args.critic_layernorm)
        extra = (args.betas(),)
    if bf16:
        for net in (actor.net, critic.q1, critic.q2):
            keep_output_layer_fp32(net)
    nets = {"actor": actor, "critic": critic, "actor_target": copy.deepcopy(actor).requires_grad_(False),
            "critic_target": copy.deepcopy(critic).requires_grad_(False)}
    opts = {"actor": torch.optim.Adam(actor.parameters(), lr=args.actor_lr),
            "critic": torch.optim.Adam(critic.parameters(), lr=args.critic_lr)}
    g = torch.Generator().manual_seed(0)

    def step(u: int) -> dict:
        return module.update(u, data.sample(args.batch_size, g), nets, opts, args, *extra, g)

    for u in range(1, 21):  # warm-up
        step(u)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < SECONDS:
        metrics = step(21 + n)
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"\n{algo} batch={args.batch_size} threads={threads} {'bf16' if bf16 else 'fp32'}: "
          f"{n / wall:.1f} updates/s wall, {n / cpu:.1f} updates per CPU-second ({n} updates, {wall:.1f} s)")
    assert n > 0 and torch.isfinite(metrics["critic_loss"])
