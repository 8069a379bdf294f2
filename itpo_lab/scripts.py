"""The checkout's stand-alone scripts (``policies/td3_bc.py``, ``policies/rebrac.py``, ...) as modules: the
trainers that run as Ray tasks (:mod:`itpo_lab.offline.many`) and the programs whose ``Args`` a provenance
record names (:mod:`itpo_lab.remake`). They are files, not a package, so they are loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(script: str) -> ModuleType:
    """The script as a module, loaded from its path once per process (as ``itpo_trainer_<stem>``).

    :param script: the script's path.
    """
    path = Path(script).resolve()
    name = f"itpo_trainer_{path.stem}"
    module = sys.modules.get(name)
    if module is not None and Path(module.__file__ or "").resolve() == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no script at {path}; on a cluster every node needs the checkout there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
