"""The library's import picture, checked from the source (issue 22): the product (``itpo_wrap``) never
imports the lab (``itpo_lab``), its modules form no import cycle, and no import goes up a layer.

Every import counts, including those inside functions (a lazy import is still an arrow) and string
imports through ``importlib.import_module`` / ``importlib.util.find_spec``; only imports under
``if TYPE_CHECKING:`` are left out (they never run, so they cannot close a cycle at import time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The layers of itpo_wrap, bottom first: a module may import its own layer and the ones before it, never a
# later one. Each name is a module or a package prefix (longest match wins); ``itpo_wrap`` alone is the
# package root's ``__init__``, not everything below it.
LAYERS: list[tuple[str, ...]] = [
    ("itpo_wrap._version", "itpo_wrap.utils", "itpo_wrap.config", "itpo_wrap.integrity", "itpo_wrap.pairing",
     "itpo_wrap.networks", "itpo_wrap.tensorboard", "itpo_wrap.provenance"),                  # foundations: no itpo_wrap imports above
    ("itpo_wrap.data",),                                              # datasets, buffers, normalisation
    ("itpo_wrap.world_model",),                                       # dynamics, heads, the WorldModel bundle
    ("itpo_wrap.formats", "itpo_wrap.zoo_files"),                     # checkpoint formats the zoo reads
    ("itpo_wrap.adapters",),                                          # policy adapters
    ("itpo_wrap.objective", "itpo_wrap.backends", "itpo_wrap.adapt", "itpo_wrap.reality",  # the algorithm step
     "itpo_wrap.step"),
    ("itpo_wrap.wrapper",),                                           # the SB3 contract around it
    ("itpo_wrap",),                                                   # the public API (package root)
    ("itpo_wrap.zoo", "itpo_wrap.zoo_root", "itpo_wrap.zoo_entry", "itpo_wrap.zoo_listing"),  # the read-only zoo
    ("itpo_wrap.parallel", "itpo_wrap.episodes"),                     # tasks here or on Ray; the episode table
    ("itpo_wrap.training", "itpo_wrap.rollout", "itpo_wrap.tune",     # user tooling: training, tuning,
     "itpo_wrap.tune_search", "itpo_wrap.evaluate", "itpo_wrap.improve",  # evaluation, offline
     "itpo_wrap.improve_config", "itpo_wrap.improve_run", "itpo_wrap.improve_field",
     "itpo_wrap.improve_result"),            # improvement
    ("itpo_wrap.cli", "itpo_wrap.demo", "itpo_wrap.tune_command", "itpo_wrap.evaluate_command",
     "itpo_wrap.improve_command", "itpo_wrap.__main__"),                                           # the user CLI
]
_IMPORTERS = {"import_module", "find_spec", "__import__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module ``name`` imports (absolute names; ``from pkg import sub`` names ``pkg.sub`` when
    ``pkg.sub`` is a module in ``known``)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
            yield from subs
            if len(subs) < len(node.names):
                yield module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in _IMPORTERS and isinstance(node.args[0].value, str):
                yield node.args[0].value


def _graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    known = set(modules)
    return {name: set(imports_of(name, path, known)) for name, path in modules.items()}


def _layer(module: str) -> int | None:
    best, index = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            below = "." in prefix and module.startswith(prefix + ".")  # the package root names itself only
            if (module == prefix or below) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the graph's own modules, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_library_never_imports_the_lab() -> None:
    upward = sorted(f"{m} imports {i}" for m, deps in _graph("itpo_wrap").items() for i in deps
                    if i == "itpo_lab" or i.startswith("itpo_lab."))
    assert not upward, "itpo_wrap must run without itpo_lab:\n" + "\n".join(upward)


@pytest.mark.parametrize("package", ["itpo_wrap", "itpo_lab"])
def test_no_import_cycle(package: str) -> None:
    if not (ROOT / package).is_dir():
        pytest.skip(f"no {package}/")
    cycle = _cycle(_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_library_module_has_a_layer_and_imports_none_above_it() -> None:
    graph = _graph("itpo_wrap")
    unplaced = sorted(m for m in graph if _layer(m) is None)
    assert not unplaced, f"add these modules to LAYERS in tests/test_layers.py: {unplaced}"
    upward = []
    for module, deps in sorted(graph.items()):
        own = _layer(module)
        for dep in sorted(deps):
            if dep in graph and (theirs := _layer(dep)) is not None and own is not None and theirs > own:
                upward.append(f"{module} (layer {own}) imports {dep} (layer {theirs})")
    assert not upward, "imports going up a layer:\n" + "\n".join(upward)


def test_the_lab_is_importable_beside_the_library() -> None:
    graph = _graph("itpo_lab")
    outside = sorted(f"{m} imports {i}" for m, deps in graph.items() for i in deps
                     if i.split(".")[0] in ("policies", "benchmarks", "tests", "examples"))
    assert not outside, "the lab imports scripts or tests:\n" + "\n".join(outside)


def test_every_library_module_imports_with_the_lab_absent() -> None:
    """The same promise at run time: with ``itpo_lab`` unimportable, every ``itpo_wrap`` module imports."""
    names = sorted(m for m in _modules("itpo_wrap") if not m.endswith("__main__"))
    code = ("import importlib, sys; sys.modules['itpo_lab'] = None\n"
            f"for name in {names!r}: importlib.import_module(name)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
