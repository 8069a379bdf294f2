"""``itpo demo`` runs exactly what it reports: the episodes and steps asked, counted independently."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from itpo_wrap import zoo
from itpo_wrap.demo import DEFAULT_ENTRY, DEFAULT_KIND, run_demo
from itpo_wrap.wrapper import ITPOPolicyWrapper


class _Count:
    """Counts calls of the real ``predict`` functions, outside the demo's own bookkeeping."""

    def __init__(self) -> None:
        self.base = 0
        self.wrapped = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> _Count:
    count = _Count()
    real_predict = ITPOPolicyWrapper.predict
    real_base = zoo.ZooEntry.base_predict

    def wrapped_predict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        count.wrapped += 1
        return real_predict(self, *args, **kwargs)

    def base_predict(self):  # type: ignore[no-untyped-def]
        inner = real_base(self)

        def predict(*args, **kwargs):  # type: ignore[no-untyped-def]
            count.base += 1
            return inner(*args, **kwargs)

        return predict

    monkeypatch.setattr(ITPOPolicyWrapper, "predict", wrapped_predict)
    monkeypatch.setattr(zoo.ZooEntry, "base_predict", base_predict)
    return count


@pytest.mark.parametrize(("episodes", "max_steps"), [(1, 2), (2, 3)])
def test_demo_runs_the_episodes_and_steps_it_was_asked_for(counted: _Count, tmp_path: Path, episodes: int,
                                                           max_steps: int) -> None:
    # Hopper does not fall within 3 steps, so every episode lasts exactly max_steps; SB3's default of 10
    # episodes (the old demo's swallowed argument) would give 10x the calls
    console = Console(record=True, width=200)
    report = run_demo(episodes=episodes, max_steps=max_steps, out_dir=tmp_path, console=console)
    assert counted.base == counted.wrapped == episodes * max_steps
    assert [len(r.returns) for r in report.runs] == [episodes, episodes]
    assert [r.steps for r in report.runs] == [episodes * max_steps] * 2
    assert [r.predict_calls for r in report.runs] == [episodes * max_steps] * 2
    # the printed table states the same counts
    text = console.export_text()
    for name in ("base", "ITPO (meanflow)"):
        row = next(line for line in text.splitlines() if name in line and "│" in line)
        cells = [c.strip() for c in row.split("│") if c.strip()]
        assert cells[1:3] == [str(episodes), str(episodes * max_steps)], row
    assert f"{episodes} episode(s) per policy capped at {max_steps} steps" in re.sub(r"\s+", " ", text)
    assert report.plot is not None and report.plot.is_file()


def test_demo_defaults_are_in_the_shipped_and_the_packaged_zoo() -> None:
    # `make demo` runs the defaults; a wheel install must find them too
    for root in (None, zoo.PACKAGED_ZOO):
        entry = zoo.load(DEFAULT_ENTRY, root=root)
        assert DEFAULT_KIND in entry.world_model_kinds
        assert DEFAULT_KIND in entry.tuned_settings  # --tuned runs them


@pytest.mark.parametrize(("kwargs", "flag"), [({"episodes": 0}, "--episodes 0"), ({"max_steps": 0}, "--max-steps 0")])
def test_demo_refuses_bad_counts_before_loading(kwargs: dict[str, int], flag: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=flag):
        run_demo(out_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_demo_scores_are_normalized_by_the_entry(counted: _Count, tmp_path: Path) -> None:
    with open(tmp_path / "out.txt", "w") as sink:
        report = run_demo(episodes=1, max_steps=2, out_dir=tmp_path, console=Console(file=sink))
    entry = zoo.load(DEFAULT_ENTRY)
    for run in report.runs:
        np.testing.assert_allclose(run.scores, entry.normalized_score(run.returns))


def test_progress_bar_has_a_total_and_ends_full_when_episodes_end_early(capsys: pytest.CaptureFixture[str]) -> None:
    from itpo_wrap.demo import _Progress

    def step(progress: _Progress, length: int, done: bool) -> None:
        progress({"done": done, "i": 0, "current_lengths": np.array([length])}, {})

    live = _Progress("base", episodes=2, step_cap=10, live=True)
    assert live.bar.total == 20
    for t in range(1, 4):  # a fall after 3 steps: the bar skips to the second episode's slot
        step(live, t, t == 3)
    assert live.bar.n == 10
    for t in range(1, 11):
        step(live, t, t == 10)
    assert live.bar.n == live.bar.total == 20
    live.close()
    piped = _Progress("base", episodes=2, step_cap=10, live=False)  # piped: a plain line per episode, no \r
    step(piped, 3, True)
    out = capsys.readouterr().out
    assert out == "base: episode 1/2 ended after 3 steps\n"
