"""The wrapper on the real WorldModel bundle (tiny, untrained): the two halves fit together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itpo_wrap import AdaptConfig, ITPOPolicyWrapper
from itpo_wrap.adapters import to_env_numpy
from itpo_wrap.networks import TanhActor
from tests.test_world_model_bundle import ACT, OBS, make_wm


def _sb3_mapped(actor: TanhActor, obs: np.ndarray) -> np.ndarray:
    """The actor's action mapped to the Box bounds ([-1, 1] here) bit for bit as SB3's predict does."""
    with torch.no_grad():
        a = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    return to_env_numpy(a, -np.ones(ACT, np.float32), np.ones(ACT, np.float32), squashed=True)


@pytest.mark.parametrize("kind", ["diffusion", "meanflow"])
def test_wrapper_adapts_through_real_world_model(kind: str) -> None:
    torch.manual_seed(0)
    actor = TanhActor(OBS, ACT, hidden=(16, 16))
    pretrained = [p.detach().clone() for p in actor.parameters()]
    wm = make_wm(kind)
    obs = np.random.default_rng(0).normal(size=(2, OBS))
    base = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=0, horizon=3, particles=4, device="cpu"))
    base_action, _ = base.predict(obs, deterministic=True)
    np.testing.assert_array_equal(base_action, _sb3_mapped(actor, obs))
    wrapped = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=3, horizon=3, particles=4, step_size=0.5, device="cpu"))
    action, _ = wrapped.predict(obs, deterministic=True)
    assert action.shape == (2, ACT) and np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1)
    assert not np.allclose(action, base_action), "adaptation through the world model changed nothing"
    assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), pretrained, strict=True))
    assert wm.validate_inputs, "the wrapper must give the world model its validation back"


def test_world_model_nan_falls_back_instead_of_raising() -> None:
    actor = TanhActor(OBS, ACT, hidden=(16, 16))
    wm = make_wm("meanflow")
    with torch.no_grad():
        wm.obs_std.fill_(float("nan"))  # every imagined state becomes NaN
    wrapped = ITPOPolicyWrapper(actor, wm, AdaptConfig(steps=2, horizon=2, particles=2, device="cpu"))
    obs = np.zeros((1, OBS))
    action, _ = wrapped.predict(obs, deterministic=True)
    np.testing.assert_array_equal(action, _sb3_mapped(actor, obs))
    assert wrapped.last_info[0]["fallback"]
