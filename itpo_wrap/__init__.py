"""itpo-wrap: inference-time policy optimization through differentiable world models.

Wrap a pretrained offline policy (SB3 or plain torch) with a learned world model and let it
take a few gradient steps on its own parameters at every env step (Deb, Wright, Banerjee 2026).
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
