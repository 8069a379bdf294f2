"""Latency probe for ITPOPolicyWrapper.predict (issue 5 target), one torch thread.

Setting: obs 17 / act 6, H = 5, M = 8, E = 5, a 3x256 TanhActor; two toy world models with the real
sizes: a diffusion-like one (10 sampling steps, each a 3x256 epsilon-MLP call plus the DDPM update of
METHOD.md section 2) and a one-step MeanFlow-like one (METHOD.md section 5), each with a 3x256 reward
head and 3x256 twin critics. Every variant is timed in the same interleaved rounds, so background load
hits them alike; compare the ratios more than the absolute numbers.

Variants: the base policy's own predict (numpy in/out, as SB3 does), the wrapper at E = 0, a
straightforward eager ITPO step (copy of the actor, torch.optim.SGD, loss.backward(); no termination
masks, no diagnostics), the wrapper (defaults: compiled step where available, J after adaptation tracked), the wrapper
with ``track_j_after=False`` ("-j_after", the same work as the naive loop), with ``backend="eager"``, and one call
for 4 envs (per env step = call / 4); the world model's parameters trainable (requires_grad, as a fresh
nn.Module has them) or frozen (as ``WorldModel`` ships).
Wall time and process CPU time are both printed: under background load the CPU time is the steadier one.
Then a torch.profiler summary of the wrapper: time per phase and the top operators.

    .venv/bin/python benchmarks/latency_probe.py [--rounds 30] [--no-profile]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from itpo_wrap.adapters import actor_predict
from itpo_wrap.config import AdaptConfig
from itpo_wrap.networks import TanhActor, mlp
from itpo_wrap.wrapper import ITPOPolicyWrapper

OBS, ACT, HID = 17, 6, (256, 256, 256)
N_VEC = 4


def labelled(name: str) -> Callable[[Callable], Callable]:
    """Name a method's forward ops in the profile (a no-op unless the profiler is running)."""

    def deco(fn: Callable) -> Callable:
        def inner(*a: object, **k: object) -> object:
            if not torch.autograd._profiler_enabled():
                return fn(*a, **k)
            with record_function(name):
                return fn(*a, **k)

        return inner

    return deco


class Actor(TanhActor):
    @labelled("fwd/actor")
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return super().forward(obs)


@dataclass
class Args:
    rounds: int = 30
    warmup: int = 3
    horizon: int = 5
    particles: int = 8
    steps: int = 5
    k_diffusion: int = 10
    profile: bool = True


class ToyWM(nn.Module):
    """Sizes of the real bundle: K-step chain (K = 1: MeanFlow-like one call) of a 3x256 MLP."""

    def __init__(self, k_steps: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.k = OBS, ACT, k_steps
        self.eps_net = mlp(2 * OBS + ACT + 16, OBS, HID)
        self.reward_net = mlp(OBS + ACT, 1, HID)
        self.q1, self.q2 = mlp(OBS + ACT, 1, HID), mlp(OBS + ACT, 1, HID)
        betas = torch.linspace(1e-4, 0.02, max(k_steps, 2))[:k_steps]
        alphas, abar = 1 - betas, torch.cumprod(1 - betas, 0)
        self.register_buffer("c1", 1 / alphas.sqrt())
        self.register_buffer("c2", betas / (1 - abar).sqrt())
        self.register_buffer("sig", betas.sqrt())
        self.register_buffer("temb", torch.randn(k_steps, 16))
        self.register_buffer("mean", torch.zeros(OBS))
        self.register_buffer("std", torch.ones(OBS))
        self.register_buffer("_low", -torch.ones(ACT))
        self.register_buffer("_high", torch.ones(ACT))

    @property
    def action_low(self) -> torch.Tensor:
        return self._low

    @property
    def action_high(self) -> torch.Tensor:
        return self._high

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(horizon, self.k + 1, batch, OBS, generator=generator)

    @labelled("fwd/wm.next")
    def next(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        noise = torch.randn(self.k + 1, s.shape[0], OBS) if noise is None else noise
        cond = torch.cat([(s - self.mean) / self.std, a], -1)
        x = noise[0]
        for k in reversed(range(self.k)):  # DDPM reverse step (METHOD.md section 2); K = 1 reads as x = z - u
            eps = self.eps_net(torch.cat([x, cond, self.temb[k].expand(s.shape[0], -1)], -1))
            x = self.c1[k] * (x - self.c2[k] * eps) + self.sig[k] * noise[k + 1]
        return s + x * self.std

    @labelled("fwd/wm.reward")
    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.reward_net(torch.cat([(s - self.mean) / self.std, a], -1)).squeeze(-1)

    def terminated(self, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros(s.shape[0], dtype=torch.bool)

    @labelled("fwd/wm.value")
    def value(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(s - self.mean) / self.std, a], -1)
        return torch.min(self.q1(x), self.q2(x)).squeeze(-1)


def naive_step_fn(actor: nn.Module, wm: ToyWM, args: Args) -> Callable[[np.ndarray], np.ndarray]:
    """The straightforward eager version: an actor copy, torch.optim.SGD (maximize), loss.backward()."""
    policy = copy.deepcopy(actor)
    opt = torch.optim.SGD(policy.parameters(), lr=1e-3, maximize=True)
    gen = torch.Generator().manual_seed(0)

    def step(obs: np.ndarray) -> np.ndarray:
        s_t = torch.as_tensor(obs, dtype=torch.float32)[None]
        noise = wm.draw_noise(args.particles, args.horizon, gen)
        for _ in range(args.steps):
            s, ret = s_t.repeat(args.particles, 1), 0.0
            for j in range(args.horizon):
                a = policy(s)
                ret = ret + 0.99**j * wm.reward(s, a)
                s = wm.next(s, a, noise[j])
            ret = ret + 0.99**args.horizon * wm.value(s, policy(s))
            opt.zero_grad()
            ret.mean().backward()
            opt.step()
        with torch.no_grad():
            return policy(s_t).numpy()[0]

    return step


def base_predict_fn(actor: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """What SB3's predict does for a deterministic actor: numpy -> tensor, no_grad forward, rescale."""

    predict = actor_predict(actor, -np.ones(ACT, np.float32), np.ones(ACT, np.float32))  # the Box [-1, 1]
    return lambda obs: predict(obs[None])[0]


def variants(args: Args) -> dict[str, Callable[[np.ndarray], object]]:
    torch.manual_seed(0)
    actor = Actor(OBS, ACT, HID)
    cfg = AdaptConfig(horizon=args.horizon, particles=args.particles, steps=args.steps)
    out: dict[str, Callable[[np.ndarray], object]] = {
        "base predict": base_predict_fn(actor),
        "wrapper E=0": ITPOPolicyWrapper(actor, ToyWM(1), AdaptConfig(steps=0)).predict,
    }
    for name, k in (("diffusion K=10", args.k_diffusion), ("meanflow K=1", 1)):
        for frozen in (False, True):
            wm = ToyWM(k).requires_grad_(not frozen)
            tag = f"{name}, wm {'frozen' if frozen else 'trainable'}"
            out[f"naive   {tag}"] = naive_step_fn(actor, wm, args)
            out[f"wrapper {tag}"] = ITPOPolicyWrapper(actor, wm, cfg).predict
        lean = AdaptConfig(**{**cfg.to_dict(), "track_j_after": False})
        out[f"-j_after {name}, wm frozen"] = ITPOPolicyWrapper(actor, ToyWM(k).requires_grad_(False), lean).predict
        eager = AdaptConfig(**{**cfg.to_dict(), "backend": "eager"})
        out[f"eager   {name}, wm frozen"] = ITPOPolicyWrapper(actor, ToyWM(k).requires_grad_(False), eager).predict
        vec = ITPOPolicyWrapper(actor, ToyWM(k).requires_grad_(False), cfg)
        out[f"x{N_VEC} envs  {name}, wm frozen"] = lambda obs, vec=vec: vec.predict(np.tile(obs, (N_VEC, 1)))
    return out


def time_all(fns: dict[str, Callable[[np.ndarray], object]], args: Args) -> tuple[dict[str, list[float]], ...]:
    """Interleaved rounds (every variant once per round, same observation): ms wall and ms process CPU."""
    rng = np.random.default_rng(0)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(args.warmup + args.rounds):
        obs = rng.standard_normal(OBS)
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(obs)
            if r >= args.warmup:
                wall[name].append(1e3 * (time.perf_counter() - t0))
                cpu[name].append(1e3 * (time.process_time() - c0))
    return wall, cpu


def profile_wrapper(k: int, args: Args) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    wrapper = ITPOPolicyWrapper(Actor(OBS, ACT, HID), ToyWM(k).requires_grad_(False),
                                AdaptConfig(horizon=args.horizon, particles=args.particles, steps=args.steps))
    obs = np.zeros(OBS)
    for _ in range(3):
        wrapper.predict(obs)
    n = 5
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            wrapper.predict(obs)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    phases = {e.key: e.cpu_time_total / n / 1e3 for e in events if e.key.startswith(("itpo/", "fwd/"))}
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    n_ops = sum(e.count for e in events if e.key.startswith("aten::")) / n
    mm = sum(e.self_cpu_time_total for e in ops if e.key in ("aten::addmm", "aten::mm", "aten::bmm")) / n / 1e3
    print(f"\nprofile, wrapper K={k} (profiler on, which inflates per-op costs; per predict): {total:.1f} ms, "
          f"{n_ops:.0f} aten ops")
    print("  phases (inclusive; itpo/imagine holds the E + 1 forwards, fwd/* split them):")
    for key, ms in sorted(phases.items()):
        print(f"    {key:<16} {ms:8.2f} ms  {100 * ms / total:5.1f}%")
    print(f"  matmuls (addmm/mm/bmm) {mm:.2f} ms = {100 * mm / total:.0f}% of self CPU; the rest is elementwise ops,")
    print("  dispatch and autograd bookkeeping. Top operators by self CPU:")
    for e in ops[:8]:
        print(f"    {e.key:<28} {e.self_cpu_time_total / n / 1e3:6.2f} ms  {e.count / n:6.0f} calls")


def main(args: Args) -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, H={args.horizon} M={args.particles} "
          f"E={args.steps}, obs {OBS} act {ACT}, actor 3x256, {args.rounds} rounds")
    wall, cpu = time_all(variants(args), args)
    print(f"\n{'variant':<42} {'wall ms':>8} {'p10':>7} {'p90':>7} {'cpu ms':>8}")
    for name, ts in wall.items():
        q = statistics.quantiles(ts, n=10)
        print(f"{name:<42} {statistics.median(ts):8.2f} {q[0]:7.2f} {q[-1]:7.2f} {statistics.median(cpu[name]):8.2f}")
    print("\nspeed-up over the naive loop (median wall / median cpu):")
    for name in ("diffusion K=10", "meanflow K=1"):
        rows = [(f"wrapper {name}, wm {st}", f"naive   {name}, wm {st}") for st in ("trainable", "frozen")]
        rows.append((f"-j_after {name}, wm frozen", f"naive   {name}, wm frozen"))
        rows.append((f"eager   {name}, wm frozen", f"naive   {name}, wm frozen"))
        rows.append((f"x{N_VEC} envs  {name}, wm frozen", f"naive   {name}, wm frozen"))
        for ours, naive in rows:
            per_env = N_VEC if ours.startswith("x") else 1  # one vectorised call serves N_VEC env steps
            ratio = [per_env * statistics.median(t[naive]) / statistics.median(t[ours]) for t in (wall, cpu)]
            print(f"  {ours:<40} {ratio[0]:5.2f}x / {ratio[1]:5.2f}x{'  (per env step)' if per_env > 1 else ''}")
    if args.profile:
        profile_wrapper(args.k_diffusion, args)
        profile_wrapper(1, args)
    assert math.isfinite(statistics.median(wall["base predict"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=Args.rounds)
    parser.add_argument("--no-profile", action="store_true")
    ns = parser.parse_args()
    main(Args(rounds=ns.rounds, profile=not ns.no_profile))
