"""Which execution backend runs the adaptation step (``AdaptConfig.backend``: eager, or compiled with
``torch.compile``, a CUDA graph on GPU), and compiling a step safely: a compiled function falls back to
eager, with one warning, when the compiler cannot build it. The step itself is :mod:`itpo_wrap.step`'s.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch

Backend = Literal["eager", "compile"]


def resolve_backend(backend: str, device: torch.device) -> Backend:
    """The backend ``AdaptConfig.backend`` names, with ``"auto"`` resolved for ``device``: the environment
    variable ``ITPO_BACKEND`` (``eager`` or ``compile``) when set, e.g. to keep a CI job or a short script
    free of compile time; else ``"compile"`` where inductor can build kernels (a C++ compiler for CPU,
    Triton for CUDA), else ``"eager"``."""
    choices: dict[str, Backend] = {"eager": "eager", "compile": "compile"}
    if backend in choices:
        return choices[backend]
    forced = os.environ.get("ITPO_BACKEND", "").strip()
    if forced in choices:
        return choices[forced]
    if forced:
        raise ValueError(f"ITPO_BACKEND={forced!r} is not a backend; set it to 'eager' or 'compile', or unset it")
    return "compile" if compiler_available(device) else "eager"


def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile``'s default backend can build kernels for ``device`` here."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    if device.type != "cpu":
        return False
    from torch._inductor import config as inductor_config

    cxx = inductor_config.cpp.cxx
    names = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c]
    return any(shutil.which(c) for c in names)


class FirstCallFallback:
    """A compiled function whose first call runs ``eager`` (a world model's own lazy caches then fill with
    plain tensors, not with the compiler's tracing tensors) and whose second call compiles; if that fails
    (a graph break in a user's world model, a missing toolchain) it warns once and stays eager. Errors after
    a successful compiled call are the caller's and propagate."""

    def __init__(self, compiled: Callable[..., Any], eager: Callable[..., Any], what: str) -> None:
        self.compiled, self.eager, self.what = compiled, eager, what
        self.calls, self.verified = 0, False

    def __call__(self, *args: Any) -> Any:
        if self.verified:
            return self.compiled(*args)
        self.calls += 1
        if self.calls == 1:
            return self.eager(*args)
        try:
            out = self.compiled(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure; eager re-raises a genuine input error
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().endswith("raised:")]
            why = lines[0] if lines else type(err).__name__
            warnings.warn(f"backend='compile': the {self.what} could not be compiled ({type(err).__name__}: "
                          f"{why[:300]}); running it eagerly. Pass AdaptConfig(backend='eager') to skip the "
                          "attempt.", RuntimeWarning, stacklevel=4)
            self.compiled = self.eager
            out = self.eager(*args)
        self.verified = True
        return out


def compile_static(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile`` with static shapes (one graph per batch shape, the shapes a wrapper keeps) and no
    graph breaks allowed: a break would silently fall back to slow eager pieces, so it is an error."""
    return torch.compile(fn, dynamic=False, fullgraph=True, mode=mode)
