"""The trainer scripts' arguments (``itpo_lab.offline.parse_args``, on tyro since issue 22): every command
the zoo stored parses to the ``Args`` the old dataclass -> argparse converter gave, ``--help`` works, and the
converter's conventions hold (``--flag/--no-flag``, ``bool | None`` defaulting to ``None``, ``none``)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

import pytest

from itpo_lab.offline import parse_args
from itpo_lab.remake import render_argv
from itpo_wrap import provenance
from tests.scripts import ROOT, policy_script

SCRIPTS = ("td3_bc", "rebrac", "sb3_base")  # the policies/ scripts whose Args go through parse_args

# What the old converter (argparse, before tyro) made of each command the zoo stored then: the fields that
# differ from Args() (captured by running it on these commands before it was replaced).
OLD_PARSE: dict[str, dict[str, Any]] = {
    'python policies/rebrac.py --dataset itpo/halfcheetah/medium-expert-v0 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-expert-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/halfcheetah/medium-replay-v0 --total-updates 100000 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-replay-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/halfcheetah/medium-v0 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/hopper/medium-expert-v0 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-expert-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/hopper/medium-replay-v0 --total-updates 100000 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-replay-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/hopper/medium-v0 --actor-bc-coef 0.05 --critic-bc-coef 0.01 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-v0', 'actor_bc_coef': 0.05, 'critic_bc_coef': 0.01, 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/walker2d/medium-expert-v0 --actor-bc-coef 0.05 --critic-bc-coef 0.01 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-expert-v0', 'actor_bc_coef': 0.05, 'critic_bc_coef': 0.01, 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/walker2d/medium-replay-v0 --total-updates 100000 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-replay-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/rebrac.py --dataset itpo/walker2d/medium-v0 --no-bf16 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-v0', 'bf16': False, 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/sb3_base.py --model policies/behavior/halfcheetah/medium.zip --dataset itpo/halfcheetah/medium-v0 --name sac_medium --no-copy':
        {'model': 'policies/behavior/halfcheetah/medium.zip', 'dataset': 'itpo/halfcheetah/medium-v0', 'name': 'sac_medium', 'copy': False},
    'python policies/sb3_base.py --model policies/behavior/hopper/medium.zip --dataset itpo/hopper/medium-v0 --name sac_medium --no-copy':
        {'model': 'policies/behavior/hopper/medium.zip', 'dataset': 'itpo/hopper/medium-v0', 'name': 'sac_medium', 'copy': False},
    'python policies/sb3_base.py --model policies/behavior/walker2d/medium.zip --dataset itpo/walker2d/medium-v0 --name sac_medium --no-copy':
        {'model': 'policies/behavior/walker2d/medium.zip', 'dataset': 'itpo/walker2d/medium-v0', 'name': 'sac_medium', 'copy': False},
    'python policies/td3_bc.py --dataset itpo/halfcheetah/medium-expert-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-expert-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/halfcheetah/medium-replay-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-replay-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/halfcheetah/medium-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/medium-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/halfcheetah/random-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/halfcheetah/random-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/hopper/medium-expert-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-expert-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/hopper/medium-replay-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-replay-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/hopper/medium-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/medium-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/hopper/random-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/hopper/random-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/walker2d/medium-expert-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-expert-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/walker2d/medium-replay-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-replay-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/walker2d/medium-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/medium-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
    'python policies/td3_bc.py --dataset itpo/walker2d/random-v0 --no-progress --zoo-dir policies/zoo':
        {'dataset': 'itpo/walker2d/random-v0', 'progress': False, 'zoo_dir': 'policies/zoo'},
}


def stored_commands() -> list[str]:
    """The ``python policies/<script>.py ...`` commands ``policies/zoo/*/entry.json`` stored before they became
    provenance records (``tests/legacy_commands.json``), for the scripts above."""
    legacy = json.loads((ROOT / "tests" / "legacy_commands.json").read_text())
    found = {command for path, commands in legacy.items() if path.startswith("policies/zoo/")
             for command in commands.values()}
    return sorted(c for c in found if shlex.split(c)[1] in {f"policies/{s}.py" for s in SCRIPTS})


def _parse(command: str) -> tuple[str, Any]:
    words = shlex.split(command)
    script = words[1].removeprefix("policies/").removesuffix(".py")
    return script, parse_args(policy_script(script).Args, words[2:])


def test_the_zoo_stored_the_commands_of_the_table() -> None:
    assert set(stored_commands()) == set(OLD_PARSE), "a legacy zoo command was added or removed: update OLD_PARSE"


@pytest.mark.parametrize("command", sorted(set(stored_commands()) | set(OLD_PARSE)))
def test_stored_commands_parse_as_before(command: str) -> None:
    script, args = _parse(command)
    Args = policy_script(script).Args
    if command in OLD_PARSE:
        assert args == dataclasses.replace(Args(), **OLD_PARSE[command])
    # the command a card renders from the record of these Args parses back to the same Args
    record = provenance.from_dataclass(f"policies/{script}.py", args)
    assert parse_args(Args, render_argv(record)) == args


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = policy_script(script)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(module.Args, ["--help"], description=module.__doc__)
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--dataset" in out and "--zoo-dir" in out and "--eval-episodes INT" in out
    assert "--no-progress" in out if script != "sb3_base" else "--no-copy" in out
    if script == "rebrac":
        assert "--bf16, --no-bf16" in out and "--actor-bc-coef FLOAT" in out


def test_run_script_help_lists_the_front_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from itpo_lab.offline.many import run_script

    module = policy_script("td3_bc")
    with pytest.raises(SystemExit) as exit_info:
        run_script(str(ROOT / "policies" / "td3_bc.py"), module.Args, module.main, module.ALGORITHM,
                   module.__doc__, argv=["--help"])
    assert exit_info.value.code == 0 and "--datasets" in capsys.readouterr().out


def test_flag_conventions() -> None:
    Args = policy_script("rebrac").Args
    assert parse_args(Args, []) == Args()
    assert parse_args(Args, ["--bf16"]).bf16 is True and parse_args(Args, ["--no-bf16"]).bf16 is False
    assert parse_args(Args, []).bf16 is None
    args = parse_args(Args, ["--actor-bc-coef", "NONE", "--critic-bc-coef=0.25", "--tensorboard", "none",
                             "--run-dir", "None", "--no-normalize-q", "--actor-layernorm", "--seed", "-3"])
    assert args.actor_bc_coef is None and args.critic_bc_coef == 0.25 and args.tensorboard is None
    assert args.run_dir is None and args.normalize_q is False and args.actor_layernorm is True and args.seed == -3
    for bad in (["--bf16", "False"], ["--total-updates", "1.5"], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(Args, bad)
        assert exit_info.value.code == 2
