"""itpo_wrap.training.loop and .metrics: the one resumable loop under world-model parts, ``itpo improve`` and the
base-policy trainers (cadence, atomic checkpoints, generator state, wall time, logs cut back on resume)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from itpo_wrap.training.loop import Checkpoints, Component, Loop, collect_state, fit_component, restore_state
from itpo_wrap.training.metrics import MetricsLog, read_metrics
from tests.test_training_world_model import toy_config


def test_loop_counts_from_the_checkpoint_and_keeps_the_wall_clock() -> None:
    loop = Loop(10, log_every=4, eval_every=0, checkpoint_every=3, desc="t", progress=False)
    loop.resume_at(6, 100.0)
    steps = list(loop)
    assert steps == [7, 8, 9, 10] and loop.elapsed() >= 100.0
    assert [s for s in steps if loop.due_log(s)] == [8, 10]  # and always at the end
    assert [s for s in steps if loop.due_checkpoint(s)] == [9, 10]
    assert not any(loop.due_eval(s) for s in steps)  # 0 disables, even at the end
    assert loop.rate(10) > 0


def test_checkpoints_are_atomic_numbered_or_one_file(tmp_path: Path) -> None:
    numbered = Checkpoints(tmp_path / "checkpoints", "update", keep=2)
    for step in (3, 6, 9):
        numbered.save(step, float(step), {"x": torch.tensor([step])})
    assert [p.name for p in numbered.paths()] == ["update_000000006.pt", "update_000000009.pt"]
    numbered.paths()[-1].write_bytes(b"truncated")  # a disk error: fall back to the one before
    with pytest.warns(UserWarning, match="unreadable"):
        state = numbered.load()
    assert state is not None and state["step"] == 6 and state["wall_s"] == 6.0 and state["x"].item() == 6
    one = Checkpoints(tmp_path, "dynamics")
    assert one.load() is None
    one.save(5, 1.5, {"y": torch.ones(2)})
    one.save(10, 3.0, {"y": torch.zeros(2)})
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["dynamics.ckpt.pt"]
    assert one.load()["step"] == 10  # type: ignore[index]
    with pytest.raises(ValueError, match="keep=0"):
        Checkpoints(tmp_path, "x", keep=0)


def test_state_round_trips_modules_optimizers_and_generators() -> None:
    net, gen = torch.nn.Linear(2, 1), torch.Generator().manual_seed(4)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    saved = collect_state(net=net, opt=opt, gen=gen)
    want = torch.rand(3, generator=gen)
    other, gen2 = torch.nn.Linear(2, 1), torch.Generator()
    opt2 = torch.optim.Adam(other.parameters())
    restore_state(saved, net=other, opt=opt2, gen=gen2)
    assert torch.equal(torch.rand(3, generator=gen2), want) and torch.equal(other.weight, net.weight)
    assert opt2.state_dict()["state"][0]["step"] == 1
    with pytest.raises(KeyError, match="'critic'"):
        restore_state(saved, critic=other)


def test_logs_drop_the_rows_after_a_checkpoint(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for step in (5, 10, 15):
        log.write("dynamics", step, 1.0, {"loss": 0.5})
        log.write("reward", step, 1.0, {"loss": 0.25})
    log.truncate_after(10, "dynamics")  # only this part resumes from 10; the other part's rows stay
    log.write("dynamics", 15, 2.0, {"loss": 0.4})
    log.close()
    with (tmp_path / "metrics.csv").open() as fh:
        rows = [(r["component"], r["step"], r["value"]) for r in csv.DictReader(fh)]
    assert rows == [("dynamics", "5", "0.5"), ("reward", "5", "0.25"), ("dynamics", "10", "0.5"),
                    ("reward", "10", "0.25"), ("reward", "15", "0.25"), ("dynamics", "15", "0.4")]
    # a base-policy trainer's components: tensors and ints as written, a row cut short by a kill goes too
    (tmp_path / "trainer").mkdir()
    trainer = MetricsLog(tmp_path / "trainer")
    for step in (1, 2, 3):
        trainer.write("train", step, 0.5 * step, {"loss": torch.tensor(step / 3)})
        trainer.write("eval", step, 0.5 * step, {"score_mean": 10.0 * step, "seed": 123456789})
    trainer.close()
    with (tmp_path / "trainer" / "metrics.csv").open("a") as fh:
        fh.write("train,4,2.00,train/lo")  # killed mid-row
    assert [r["step"] for r in read_metrics(tmp_path / "trainer" / "metrics.csv", "train")] == [1, 2, 3]
    trainer = MetricsLog(tmp_path / "trainer")
    trainer.truncate_after(2, "train")
    trainer.truncate_after(2, "eval")
    trainer.close()
    assert read_metrics(tmp_path / "trainer" / "metrics.csv", "train") == [
        {"step": 1, "wall_s": 0.5, "loss": 0.333333}, {"step": 2, "wall_s": 1.0, "loss": 0.666667}]
    assert [r["seed"] for r in read_metrics(tmp_path / "trainer" / "metrics.csv", "eval")] == [123456789] * 2


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_fit_component_killed_and_resumed_ends_bit_identical(tmp_path: Path, ema_decay: float) -> None:
    """Killed after the checkpoint at 20 and the rows at 25: the rerun ends with the uninterrupted run's weights
    exactly, and its ``metrics.csv`` holds the same rows once each (timing columns aside)."""
    cfg = toy_config("mlp", log_every=5, eval_every=10, checkpoint_every=10, ema_decay=ema_decay)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))

    def make(crash_at: int | None) -> Component:
        torch.manual_seed(0)
        net, calls = torch.nn.Linear(4, 1), {"n": 0}

        def loss(gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt
            out = net(x[torch.randint(0, 64, (8,), generator=gen)]).pow(2).mean()
            return out, {"mse": out.detach()}

        return Component("part", net, loss, 30, evaluate=lambda: {"w": float(net.weight.sum())})

    def run(comp: Component, run_dir: Path) -> list[tuple[str, str, str]]:
        run_dir.mkdir(exist_ok=True)
        log = MetricsLog(run_dir)
        try:
            fit_component(comp, cfg, run_dir, log, seed=3, progress=False)
        finally:
            log.close()
        with (run_dir / "metrics.csv").open() as fh:
            return [(r["step"], r["metric"], r["value"]) for r in csv.DictReader(fh)
                    if not r["metric"].endswith("updates_per_s")]

    clean = make(None)
    want = run(clean, tmp_path / "clean")
    with pytest.raises(KeyboardInterrupt):
        run(make(28), tmp_path / "crash")
    resumed = make(None)
    assert run(resumed, tmp_path / "crash") == want
    for p, q in zip(clean.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(p, q)
