"""Import the repository's stand-alone scripts (``policies/*.py``, ``benchmarks/*.py``) in tests.

The scripts are not a package, so each test file used to carry its own ``importlib`` loader; this is the
one loader they share.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str) -> ModuleType:
    """Import ``<repo>/<folder>/<name>.py`` as module ``name``, once per test session.

    :param folder: folder under the repository root, e.g. ``"policies"``
    :param name: file name without ``.py``
    :return: the executed module (the same object on later calls)
    """
    path = ROOT / folder / f"{name}.py"
    if name in sys.modules:
        cached = sys.modules[name]
        # modules are cached by bare name: a same-named script from another folder must not stand in
        if Path(getattr(cached, "__file__", "") or "").resolve() != path.resolve():
            raise ImportError(f"module {name!r} is already {getattr(cached, '__file__', cached)!r}, not {path}")
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"no script {folder}/{name}.py under {ROOT}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a failed import must not leave a half-built module for the next test
        raise
    return module


def policy_script(name: str) -> ModuleType:
    """:func:`load_script` for a trainer in ``policies/`` (``"td3_bc"``, ``"rebrac"``, ``"sb3_base"``)."""
    return load_script("policies", name)
