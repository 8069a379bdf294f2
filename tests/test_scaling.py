"""Issue 23: ``itpo evaluate`` and ``itpo tune`` with ``--backend local|ray`` write the same rows, one
writer, resumable after a kill; Ray is optional and its absence is said in one line.

Runs a tiny evaluation (hopper-medium, 2 seeds, 20-step episodes, base and ITPO with E = 2 on MeanFlow,
eager step). Against a real Ray when it is installed (2 CPUs), and always against a stand-in ``ray`` module
that ships every task and result through pickle and finishes them in reverse order, so the driver's
bookkeeping (order, resume, one writer) is checked without Ray.
"""

from __future__ import annotations

import csv
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from itpo_wrap import zoo
from itpo_wrap.cli import main
from itpo_wrap.episodes import FIELDS, TIMING_FIELDS, RowWriter, done_keys, read_rows

pytestmark = pytest.mark.skipif("hopper-medium" not in zoo.list()
                                or "meanflow" not in zoo.load("hopper-medium").world_model_kinds,
                                reason="needs the zoo's hopper-medium MeanFlow world model")

COMMON = ["--entry", "hopper-medium", "--seeds", "1000", "1001", "--max-steps", "20", "--step-backend", "eager"]
ITPO = ["--method", "itpo", "--kind", "meanflow", "--steps", "2", "--step-size", "1e-4", "3e-4"]
# the row keys benchmarks/run.py wrote before issue 23 for these commands: existing rows stay "done"
BASE_KEY = '{"kind": "", "max_steps": 20, "method": "base"}'
ITPO_KEY = ('{"discount": 0.99, "gate": "off", "horizon": 5, "kind": "meanflow", "max_steps": 20, "method": "itpo", '
            '"optimizer": "sgd", "particles": 8, "persistence": "persistent", "step_size": 0.0001, "steps": 2}')


def _evaluate(out: Path, *extra: str) -> None:
    assert main(["evaluate", "--method", "base", *COMMON, "--out", str(out), *extra]) == 0
    assert main(["evaluate", *ITPO, *COMMON, "--out", str(out), *extra]) == 0


def _by_key(rows: list[dict[str, str]]) -> dict[tuple[str, ...], dict[str, str]]:
    """Rows keyed by their row key, without the columns that differ by nature (wall time, end time)."""
    keyed = {(r["entry"], r["policy"], r["split"], r["settings"], r["seed"]):
             {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows}
    assert len(keyed) == len(rows), "duplicate rows"
    return keyed


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("local") / "episodes.csv"
    _evaluate(out)
    return read_rows(out)


def test_local_rows_keep_the_row_keys_of_before(local_rows: list[dict[str, str]]) -> None:
    assert len(local_rows) == 2 + 4 and list(local_rows[0]) == FIELDS
    keys = {r["settings"] for r in local_rows}
    assert BASE_KEY in keys and ITPO_KEY in keys and len(keys) == 3


class _Ref:
    def __init__(self, run: Any) -> None:
        self.run, self.done, self.value, self.error = run, False, None, None

    def resolve(self) -> None:
        if not self.done:
            try:
                self.value = pickle.loads(pickle.dumps(self.run()))  # the result crosses a process boundary
            except Exception as err:
                self.error = err
            self.done = True


def fake_ray() -> types.ModuleType:
    """A stand-in for ``ray``: tasks and results go through pickle, tasks finish last-submitted first."""
    ray = types.ModuleType("ray")
    state: dict[str, Any] = {"up": False, "init": None}

    def remote(**options: Any) -> Any:
        def wrap(fn: Any) -> Any:
            def submit(*args: Any) -> _Ref:
                shipped = pickle.loads(pickle.dumps([a.value if isinstance(a, _Ref) else a for a in args]))
                return _Ref(lambda: fn(*shipped))
            return types.SimpleNamespace(remote=submit, options=options)
        return wrap

    def put(obj: Any) -> _Ref:
        ref = _Ref(lambda: obj)
        ref.resolve()
        return ref

    def wait(refs: list[_Ref], num_returns: int = 1) -> tuple[list[_Ref], list[_Ref]]:
        refs[-1].resolve()
        return refs[-1:], refs[:-1]

    def get(ref: _Ref) -> Any:
        ref.resolve()
        if ref.error is not None:
            raise ref.error
        return ref.value

    ray.is_initialized = lambda: state["up"]  # type: ignore[attr-defined]
    ray.init = lambda **kw: state.update(up=True, init=kw)  # type: ignore[attr-defined]
    ray.shutdown = lambda: state.update(up=False)  # type: ignore[attr-defined]
    ray.remote, ray.put, ray.wait, ray.get = remote, put, wait, get  # type: ignore[attr-defined]
    ray.cancel = lambda ref, force=False: None  # type: ignore[attr-defined]
    ray.state = state  # type: ignore[attr-defined]
    return ray


def test_the_ray_driver_writes_the_local_rows(local_rows: list[dict[str, str]], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ray = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray)
    out = tmp_path / "episodes.csv"
    _evaluate(out, "--backend", "ray", "--workers", "2")
    assert ray.state["init"]["num_cpus"] == 2 and not ray.state["up"]  # started and shut down again
    rows = read_rows(out)
    assert [r["seed"] for r in rows[:2]] == ["1001", "1000"]  # finished in another order than submitted
    assert _by_key(rows) == _by_key(local_rows)


def test_real_ray_with_two_workers_writes_the_local_rows(local_rows: list[dict[str, str]], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "episodes.csv"
    _evaluate(out, "--backend", "ray", "--workers", "2")
    assert _by_key(read_rows(out)) == _by_key(local_rows)


def test_a_killed_run_resumes_without_duplicates(local_rows: list[dict[str, str]], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.csv"
    with open(full, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(local_rows)
    text = full.read_bytes()
    lines = text.splitlines(keepends=True)
    killed = tmp_path / "episodes.csv"  # header, two rows, and half of the third: killed mid-write
    killed.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    assert len(done_keys(killed)) == 2  # the cut line is not a row
    _evaluate(killed)
    rows = read_rows(killed)
    assert _by_key(rows) == _by_key(local_rows)
    assert killed.read_bytes().count(b"\n") == 1 + len(local_rows)  # no glued or half line left
    _evaluate(killed)  # all done: nothing added
    assert "all 2 seeds done" in capsys.readouterr().out and len(read_rows(killed)) == len(local_rows)


def test_one_header_however_many_writers_open_the_file(tmp_path: Path) -> None:
    out = tmp_path / "new" / "episodes.csv"
    a, b = RowWriter(out), RowWriter(out)
    a.write({f: "1" for f in FIELDS})
    b.write({f: "2" for f in FIELDS})
    assert out.read_text().count("entry,policy") == 1 and len(read_rows(out)) == 2
    cut = tmp_path / "cut.csv"
    cut.write_text("entry,pol")  # killed while writing the header
    RowWriter(cut)
    assert cut.read_text().startswith(",".join(FIELDS)) and read_rows(cut) == []


def test_ray_missing_is_one_line_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    out = tmp_path / "episodes.csv"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--method", "base", *COMMON, "--out", str(out), "--backend", "ray"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "pip install 'itpo-wrap[ray]'" in err and "Traceback" not in err and not out.exists()
    with pytest.raises(SystemExit):
        main(["tune", "--entry", "hopper-medium", "--kind", "meanflow", "--seeds", "0", "--backend", "ray"])
    assert "pip install 'itpo-wrap[ray]'" in capsys.readouterr().err


def test_tune_on_the_ray_driver_chooses_as_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from itpo_wrap.config import AdaptConfig
    from itpo_wrap.tune import tune
    from itpo_wrap.tune_command import ZooSetup

    entry = zoo.load("hopper-medium")
    cands = [AdaptConfig(step_size=a, steps=2, backend="eager") for a in (1e-4, 3e-4)]
    score = lambda r: float(entry.normalized_score(r))  # noqa: E731
    here = tune(entry.policy, entry.load_world_model("meanflow"), entry.make_env, cands, [0, 1], max_steps=10,
                score=score)
    monkeypatch.setitem(sys.modules, "ray", fake_ray())
    setup = ZooSetup("hopper-medium", entry.policy_name, None, "meanflow")
    there = tune(None, None, None, cands, [0, 1], max_steps=10, score=score, backend="ray", workers=2, setup=setup)
    assert there.scores == here.scores and there.chosen == here.chosen and there.capped == here.capped
    assert "base (E=0)" in there.scores  # E = 0 is always a candidate


def test_a_failed_task_does_not_lose_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from itpo_wrap.parallel import run_tasks

    monkeypatch.setitem(sys.modules, "ray", fake_ray())
    got = []
    with pytest.raises(RuntimeError, match="1 of 3 task"):
        for i, value in run_tasks(_half, [2, 0, 4], backend="ray", workers=2):
            got.append((i, value))
    assert sorted(got) == [(0, 1.0), (2, 2.0)]


def _half(_shared: Any, x: int) -> float:
    if x == 0:
        raise ValueError("zero")
    return x / 2


def test_several_entries_in_one_run(tmp_path: Path) -> None:
    if "hopper-medium-replay" not in zoo.list():
        pytest.skip("needs the zoo's hopper-medium-replay")
    out = tmp_path / "episodes.csv"
    assert main(["evaluate", "--method", "base", *COMMON[:1], "hopper-medium", "hopper-medium-replay", *COMMON[2:],
                 "--out", str(out)]) == 0
    assert sorted((r["entry"], r["seed"]) for r in read_rows(out)) == [
        ("hopper-medium", "1000"), ("hopper-medium", "1001"),
        ("hopper-medium-replay", "1000"), ("hopper-medium-replay", "1001")]


def test_a_table_with_an_older_header_keeps_its_rows_and_a_cut_line_is_not_a_row(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"  # fewer columns than FIELDS (an older run.py): its rows still count as done
    old.write_text("entry,policy,split,settings,seed\r\nhopper-medium,td3_bc,eval,{},1000\r\nhopper-medium,td3_b")
    assert done_keys(old) == {("hopper-medium", "td3_bc", "eval", "{}", "1000")}


def test_backend_names_old_and_new() -> None:
    import argparse

    from itpo_wrap.evaluate_command import add_backend_arguments, backends

    p = argparse.ArgumentParser()
    add_backend_arguments(p)
    assert backends(p.parse_args([])) == ("local", "auto")
    assert backends(p.parse_args(["--backend", "ray", "--step-backend", "eager"])) == ("ray", "eager")
    assert backends(p.parse_args(["--backend", "eager"])) == ("local", "eager")  # the flag's meaning before Ray
