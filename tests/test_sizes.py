"""The library's shape, measured from the source (issue 22): small modules and short functions.

A module of ``itpo_wrap`` or ``itpo_lab`` has at most :data:`MAX_MODULE_LINES` lines, and a function's body
(its docstring left out: signatures and docstrings are documentation, not logic) at most
:data:`MAX_FUNCTION_LINES`. The allow-lists name what is over today and why; an entry that is back under
its limit must be removed, so the lists only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("itpo_wrap", "itpo_lab")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50

# path -> why it is still over; being reworked by others when this test was added
LONG_MODULES: dict[str, str] = {}
# "path::function" -> why it is still over
LONG_FUNCTIONS: dict[str, str] = {}


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's end."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{rel}::{node.name}"
                lengths[key] = max(lengths.get(key, 0), _body_lines(node))
    return lengths


def test_no_module_over_the_limit() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _sources()}
    over = sorted(f"{path}: {n} lines" for path, n in sizes.items()
                  if n > MAX_MODULE_LINES and path not in LONG_MODULES)
    assert not over, (f"modules over {MAX_MODULE_LINES} lines; split them along their jobs (one job per module, "
                      "named in its docstring; re-export public names from the old module):\n" + "\n".join(over))
    stale = sorted(path for path in LONG_MODULES if sizes.get(path, 0) <= MAX_MODULE_LINES)
    assert not stale, f"remove from LONG_MODULES in tests/test_sizes.py (now within the limit or gone): {stale}"


def test_no_function_over_the_limit() -> None:
    lengths = _function_lengths()
    over = sorted(f"{key}: {n} lines" for key, n in lengths.items()
                  if n > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS)
    assert not over, (f"function bodies over {MAX_FUNCTION_LINES} lines (docstring excluded); split them into "
                      "well-named helpers:\n" + "\n".join(over))
    stale = sorted(key for key in LONG_FUNCTIONS if lengths.get(key, 0) <= MAX_FUNCTION_LINES)
    assert not stale, f"remove from LONG_FUNCTIONS in tests/test_sizes.py (now within the limit or gone): {stale}"
