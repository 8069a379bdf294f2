"""Provenance as data (issue 22): every record the repository stores renders to a command that parses back to
the same resolved arguments, the one-time migration from command lines lost nothing, and the record format
itself (``itpo_wrap.provenance``) renders every kind of argparse option it meets."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from itpo_lab import argv, remake
from itpo_lab.migrate import migrate_file
from itpo_wrap import provenance
from itpo_wrap.provenance import Provenance
from tests.scripts import ROOT, policy_script
from tests.test_script_args import OLD_PARSE

# the command lines these files stored before `itpo-lab migrate-provenance` (commit 8e04100), by file and by
# the record's place in it ("policies/<key>", "world_models/<kind>", "" for the file's top level)
LEGACY: dict[str, dict[str, str]] = json.loads((ROOT / "tests" / "legacy_commands.json").read_text())
STORED = ("policies/zoo/*/entry.json", "itpo_wrap/zoo_demo/*/entry.json", "policies/checks/*/check.json",
          "policies/behavior/*/card.json")


def _places(data: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    if name != "entry.json":
        return {"": data}
    return {f"{section}/{key}": spec for section in ("policies", "world_models")
            for key, spec in data.get(section, {}).items()}


def stored_records() -> dict[str, Provenance | None]:
    """Every record the repository stores, by ``<file>:<place>``."""
    out: dict[str, Provenance | None] = {}
    for pattern in STORED:
        for path in sorted(ROOT.glob(pattern)):
            for place, spec in _places(json.loads(path.read_text()), path.name).items():
                out[f"{path.relative_to(ROOT).as_posix()}:{place}"] = provenance.of(spec)
    return out


RECORDS = stored_records()


def test_every_stored_spec_has_a_record_and_no_command_line() -> None:
    missing = sorted(k for k, r in RECORDS.items() if r is None)
    assert not missing, f"no provenance record (run itpo-lab migrate-provenance): {missing}"
    for pattern in STORED:
        for path in ROOT.glob(pattern):
            assert '"command"' not in path.read_text(), f"{path} still stores a command line"


@pytest.mark.parametrize("place", sorted(RECORDS))
def test_stored_record_renders_to_a_command_that_remakes_it(place: str) -> None:
    record = RECORDS[place]
    assert record is not None
    command = remake.render(record)
    words = shlex.split(command)
    head = ["python", record.program] if record.program.endswith(".py") else record.program.split()
    assert words[:len(head)] == head
    assert remake.parse(record.program, words[len(head):]) == record, command


@pytest.mark.parametrize("place", sorted(f"{f}:{p}" for f, places in LEGACY.items() for p in places))
def test_migration_kept_every_resolved_argument_of_the_old_command(place: str) -> None:
    """The stored record is what the program's own parser makes of the command line stored before. (Should a
    default change later, this fails for the records that left it out: they keep the value the run used; then
    write that value into the old command here.)"""
    file, _, where = place.partition(":")
    old = LEGACY[file][where]
    assert RECORDS[place] == remake.from_command(old), old
    if old in OLD_PARSE:  # cross-check with what the pre-tyro converter made of it, field by field
        script = shlex.split(old)[1].removeprefix("policies/").removesuffix(".py")
        Args = policy_script(script).Args
        expected = provenance.from_dataclass(f"policies/{script}.py", dataclasses.replace(Args(), **OLD_PARSE[old]))
        assert RECORDS[place] == expected


def test_world_models_trained_through_the_lab_are_recorded_as_itpo_lab() -> None:
    # old strings said `itpo train-world-model ... --zoo-dir`, which itpo has not taken since the lab split
    programs = {r.program for k, r in RECORDS.items() if r is not None and "world_models/" in k}
    assert programs == {"itpo-lab train-world-model"}
    with pytest.raises(ValueError, match="itpo train-world-model refuses"):
        remake.parse("itpo train-world-model", ["--dataset", "d", "--out", "x.pt", "--zoo-dir", "z"])


def test_migration_rewrites_a_file_in_place_and_its_card(tmp_path: Path) -> None:
    entry = tmp_path / "zoo" / "hopper-medium"
    entry.mkdir(parents=True)
    old = "python policies/td3_bc.py --dataset itpo/hopper/medium-v0 --total-updates 500 --no-progress"
    data = {"format": "itpo-zoo-entry", "format_version": 1, "name": "hopper-medium", "dataset_id": "itpo/hopper/medium-v0",
            "env_id": "Hopper-v5", "default_policy": "td3_bc", "world_model": None,
            "policies": {"td3_bc": {"file": "td3_bc.pt", "kind": "offline", "command": old, "eval": {}}}}
    (entry / "entry.json").write_text(json.dumps(data))
    assert migrate_file(entry / "entry.json") == 1
    spec = json.loads((entry / "entry.json").read_text())["policies"]["td3_bc"]
    assert list(spec) == ["file", "kind", "provenance", "eval"]  # the record takes the command's place
    assert spec["provenance"]["args"]["total_updates"] == 500 and spec["provenance"]["args"]["batch_size"] == 256
    card = (entry / "MODEL_CARD.md").read_text()
    assert "python policies/td3_bc.py --dataset itpo/hopper/medium-v0 --total-updates 500 --no-progress" in card
    assert migrate_file(entry / "entry.json") == 0  # nothing left to migrate
    (entry / "entry.json").write_text(json.dumps({**data, "policies": {"td3_bc": {"command": "make all"}}}))
    with pytest.raises(ValueError, match="names no program"):
        migrate_file(entry / "entry.json")


def test_a_legacy_command_is_shown_as_stored_and_read_through_its_parser() -> None:
    old = "python policies/rebrac.py --dataset itpo/hopper/medium-v0 --no-bf16"
    assert remake.command_of({"command": old}) == old  # an older file's card does not change by itself
    record = remake.record_of({"command": old})
    assert record is not None and record.args["bf16"] is False and record.args["actor_bc_coef"] is None
    assert remake.record_of({}) is None and remake.command_of({}) is None


def test_rendering_shows_what_differs_from_todays_defaults() -> None:
    Args = remake.script_args("policies/td3_bc.py")
    args = dataclasses.asdict(Args())
    assert remake.render(Provenance("policies/td3_bc.py", args)) == \
        "python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0"  # the dataset is always shown
    # a record holds the value the run used: were the default changed, the command would now show it
    changed = {**args, "total_updates": 7, "seed": -3, "progress": False, "tensorboard": None}
    assert remake.render(Provenance("policies/td3_bc.py", changed)) == (
        "python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0 --total-updates 7 --seed=-3 --no-progress")
    older = {k: v for k, v in args.items() if k != "alpha"}  # a record older than a field: the field's default
    assert remake.parse("policies/td3_bc.py", remake.render_argv(Provenance("policies/td3_bc.py", older))).args == args
    with pytest.raises(ValueError, match="no arguments .'gone'."):
        remake.render(Provenance("policies/td3_bc.py", {**args, "gone": 1}))


def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    p.add_argument("--dataset", default="d0")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--drift", type=lambda s: None if s == "none" else float(s), default=0.05)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--fast", action="store_true")
    p.add_argument("--no-check", dest="check", action="store_false")
    p.add_argument("--gate", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--tag", action="append", default=None)
    return p


@pytest.mark.parametrize("values", [
    {},
    {"steps": 3, "lr": 4.0, "drift": None, "seeds": [7], "fast": True, "check": False, "gate": False},
    {"steps": -2, "gate": True, "tag": ["a", "b c"], "dataset": "-odd"},
])
def test_argparse_records_round_trip(values: dict[str, Any]) -> None:
    parser = _toy_parser()
    args = {**vars(parser.parse_args([])), **values}
    words = argv.argparse_argv(parser, args)
    assert vars(parser.parse_args(words)) == args, words
    if not values:
        assert words == [] and argv.argparse_argv(parser, args, always=("dataset", "fast")) == ["--dataset", "d0"]
    if "lr" in values:
        assert "--lr" in words and words[words.index("--lr") + 1] == "4"  # 4.0 reads as 4


def test_argparse_refuses_what_it_cannot_render() -> None:
    parser = _toy_parser()
    base = vars(parser.parse_args([]))
    with pytest.raises(ValueError, match=r"no options \['zoo_dir'\]"):
        argv.argparse_argv(parser, {**base, "zoo_dir": "z"})
    with pytest.raises(ValueError, match="can only set"):
        argv.argparse_argv(parser, {**base, "check": True, "fast": "yes"})
    assert argv.argparse_argv(parser, {"steps": 4}) == ["--steps", "4"]  # missing: their defaults


def test_record_data() -> None:
    ns = argparse.Namespace(command="improve", func=print, out=Path("runs/x"), seeds=(1, 2), kind="meanflow")
    record = provenance.from_namespace("itpo improve", ns)
    assert record.to_dict() == {"program": "itpo improve", "args": {"out": "runs/x", "seeds": [1, 2], "kind": "meanflow"}}
    assert Provenance.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert provenance.of({"provenance": record.to_dict(), "wall_s": 1.0}) == record
    assert provenance.of({"command": "itpo improve"}) is None
    assert provenance.legacy_command({"command": "itpo improve"}) == "itpo improve"
    for bad in ({"program": "x"}, {"program": "", "args": {}}, {"program": "x", "args": [], "more": 1}):
        with pytest.raises(ValueError):
            Provenance.from_dict(bad)
    with pytest.raises(TypeError, match="no JSON form"):
        provenance.jsonable(object())
    with pytest.raises(TypeError, match="not a dataclass"):
        provenance.from_dataclass("policies/x.py", {"a": 1})


def test_the_lab_records_the_world_model_command_it_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``itpo-lab train-world-model --zoo-dir`` stores the record of what it parsed, not ``sys.argv``."""
    from itpo_lab import cli as lab_cli
    from itpo_lab import zoo_write
    from itpo_wrap.training import commands

    class Trained:
        info = {"train_wall_s": 61.0}

    result = {"dynamics": {"one_step_rmse": 0.1, "one_step_rmse_state_std": 0.2, "open_loop_rmse_state_std": [0.3]},
              "reward_rmse": 0.4, "termination_accuracy": 1.0, "episodes": 2, "rows": 9}
    dataset = argparse.Namespace(dataset_id="itpo/hopper/medium-v0")
    monkeypatch.setattr(commands, "train_and_evaluate", lambda args: (Trained(), result, dataset))
    recorded: dict[str, Any] = {}
    monkeypatch.setattr(zoo_write, "add_world_model", lambda name, kind, out, info, root: recorded.update(info))
    argv = ["--dataset", "itpo/hopper/medium-v0", "--dynamics", "meanflow", "--out", "x.pt", "--steps", "20",
            "--x-gate", "--zoo-dir", "zoo"]
    assert lab_cli.main(["train-world-model", *argv]) == 0
    made_by = Provenance.from_dict(recorded["provenance"])
    assert made_by == remake.parse("itpo-lab train-world-model", argv)
    assert made_by.args["x_gate"] is True and made_by.args["steps"] == 20 and made_by.args["zoo_dir"] == "zoo"
    assert remake.render(made_by) == ("itpo-lab train-world-model --dataset itpo/hopper/medium-v0 --dynamics meanflow "
                                      "--out x.pt --steps 20 --x-gate --zoo-dir zoo")
