"""tests/scripts.py: the shared loader returns one module per script and never a same-named stand-in."""

from __future__ import annotations

import pytest

from tests.scripts import load_script, policy_script


def test_loader_caches_and_refuses_a_same_named_script_from_another_folder() -> None:
    rebrac = policy_script("rebrac")
    assert load_script("policies", "rebrac") is rebrac and hasattr(rebrac, "BETAS")
    with pytest.raises(ImportError, match="rebrac"):
        load_script("benchmarks", "rebrac")  # cached under the bare name from policies/: refused, not returned
