"""The ``itpo`` command line as a newcomer meets it, and the lab's ``itpo-lab`` beside it: defaults shown,
user and lab commands apart, one-line errors that name flags and list the known zoo entries,
``itpo zoo list/show``."""

from __future__ import annotations

import argparse

import pytest

from itpo_lab import cli as lab_cli
from itpo_wrap import zoo
from itpo_wrap.cli import USER_COMMANDS, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand parser, keyed by its command path (``"zoo list"``)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sub
                out.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return out


@pytest.mark.parametrize("build", [build_parser, lab_cli.build_parser], ids=["itpo", "itpo-lab"])
def test_every_option_has_help_and_shows_its_default(build) -> None:  # type: ignore[no-untyped-def]
    for path, sub in _subparsers(build()).items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"itpo {path}: {action.option_strings or action.dest} has no help text"
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()), (path, action.dest)


def test_user_commands_in_itpo_and_the_lab_commands_in_itpo_lab() -> None:
    text = build_parser().format_help()
    for name in USER_COMMANDS:
        assert f"\n    {name}" in text, name
    assert "itpo-lab -h" in text
    lab_only = set(lab_cli.LAB_COMMANDS) - set(USER_COMMANDS)
    assert not lab_only & set(_subparsers(build_parser())), "lab commands do not belong in itpo"
    lab = _subparsers(lab_cli.build_parser())
    assert set(lab) >= set(lab_cli.LAB_COMMANDS)
    assert "--zoo-dir" in lab["train-world-model"].format_help()  # the zoo-writing halves are the lab's
    assert "--record" in lab["tune"].format_help()
    user = _subparsers(build_parser())
    assert "--zoo-dir" not in user["train-world-model"].format_help() and "--record" not in user["tune"].format_help()


@pytest.mark.parametrize("argv", [
    ["demo", "--entry", "no-such-entry"],
    ["zoo", "show", "no-such-entry"],
    ["eval-world-model", "--entry", "no-such-entry", "--dataset", "itpo/hopper/medium-v0"],
])
def test_unknown_entry_is_one_line_listing_the_known_ones(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no zoo entry named 'no-such-entry'" in err
    assert all(name in err for name in zoo.list())


def test_lab_only_commands_fail_in_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        lab_cli.main(["critic-calibration", "--entry", "no-such-entry"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("itpo-lab critic-calibration: error:") and "no zoo entry named 'no-such-entry'" in err


def test_errors_name_the_flag_not_the_python_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        lab_cli.main(["collect", "--env", "hopper", "--transitions", "0"])
    err = capsys.readouterr().err
    assert "--transitions 0" in err and "transitions=0" not in err


def test_zoo_list_shows_policies_world_models_and_tuned_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list():
        assert name in out
    assert "td3_bc*" in out and "meanflow" in out and "a=0.0003" in out


def test_zoo_list_and_show_on_the_packaged_demo_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list", "--zoo-dir", str(zoo.PACKAGED_ZOO)]) == 0
    out = capsys.readouterr().out
    assert "hopper-medium" in out and "hopper-medium-replay" not in out and "sac_medium" in out
    assert main(["zoo", "show", "hopper-medium", "--zoo-dir", str(zoo.PACKAGED_ZOO)]) == 0
    card = capsys.readouterr().out
    assert card.count("# hopper-medium") == 1 and "wm_meanflow.pt" in card


@pytest.mark.parametrize("script", ["run.py", "meanflow_share.py"])
def test_benchmark_scripts_take_zoo_dir_and_refuse_unknown_entries_in_one_line(script: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    args = [sys.executable, str(path), "--entry", "no-such-entry", "--zoo-dir", str(zoo.PACKAGED_ZOO)]
    if script == "run.py":
        args += ["--method", "base", "--out", str(tmp_path / "rows.csv")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "known entries: hopper-medium" in proc.stderr
