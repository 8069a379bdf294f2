"""SB3 SAC / TD3 / DDPG models as weights-only files: a state dict plus a JSON architecture, no pickle.

An SB3 ``.zip`` is a pickle: its ``data`` record stores classes and objects serialized with
cloudpickle, and ``SAC.load`` runs them, so a zip is code and must be trusted like code. The zoo
therefore ships SB3 bases in this format instead, which ``torch.load(weights_only=True)`` reads
without running anything (one ``.pt`` file)::

    format          "itpo-sb3-weights"    format_version  1
    architecture    JSON text: algorithm, policy_kwargs (classes by name, from an allow list),
                    observation and action spaces (Box), use_sde, env_id, sb3_version
    state_dict      the policy's tensors (actor, critics, target critics)
    digest          SHA-256 of the above (itpo_wrap.integrity)

``itpo_lab.offline.sb3_weights.convert_sb3_zip`` turns a zip you trust into this format (loading it once,
as code); :func:`load_sb3_weights` rebuilds the same model from the file: the same policy class and kwargs,
the same tensors, hence bit for bit the same ``predict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from itpo_wrap.integrity import load_checked

FORMAT = "itpo-sb3-weights"
FORMAT_VERSION = 1
_WRITER = "itpo_lab.offline.sb3_weights.save_sb3_weights"
# classes a policy_kwargs may name; anything else is custom code, which this format cannot carry
ALLOWED_CLASSES: dict[str, type] = {f"torch.nn.{c.__name__}": c for c in (
    nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Mish, nn.Sigmoid, nn.Softplus)}
ALLOWED_CLASSES.update({f"torch.optim.{c.__name__}": c for c in (
    torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop)})
_WARNED = {"zip": False}


def warn_sb3_pickle(path: str | Path) -> None:
    """Say once per process that SB3 zips are pickles, to be trusted like code (every zip loader calls it).

    :param path: the zip about to be loaded, named in the warning.
    """
    if _WARNED["zip"]:
        return
    _WARNED["zip"] = True
    warnings.warn(f"loading {str(path)!r}: an SB3 .zip is a pickle and runs the code it carries when loaded; load "
                  "only zips you trust like code. The zoo ships SB3 bases as weights-only files "
                  "(itpo_lab.offline.sb3_weights.convert_sb3_zip makes one from a zip you trust). Said once per process.",
                  UserWarning, stacklevel=3)


def load_sb3_weights(path: str | Path) -> Any:
    """Rebuild the SB3 model of a weights-only file on the CPU, in eval mode; nothing in the file is executed.

    :param path: a file written by :func:`save_sb3_weights`.
    :return: the ``SAC``/``TD3``/``DDPG`` model; ``model.itpo_sb3_architecture`` holds the parsed architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SB3 weights file at {str(path)!r}; make one from a zip you trust with "
                                "itpo_lab.offline.sb3_weights.convert_sb3_zip")
    payload = load_checked(path, "cpu", what="SB3 weights file", writer=_WRITER)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an {FORMAT} file; write one with {_WRITER} or convert_sb3_zip")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} has format_version {payload['format_version']}, newer than this library's "
                         f"{FORMAT_VERSION}; upgrade itpo-wrap")
    try:
        arch = json.loads(payload["architecture"])
        model = _build(arch)
        model.policy.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{str(path)!r} does not describe a loadable SB3 model ({type(err).__name__}: {err}); "
                         f"re-convert it with convert_sb3_zip") from err
    model.policy.set_training_mode(False)
    model.itpo_sb3_architecture = arch
    return model


def _build(arch: dict[str, Any]) -> Any:
    from stable_baselines3 import DDPG, SAC, TD3

    classes = {"sac": SAC, "td3": TD3, "ddpg": DDPG}
    if arch.get("algorithm") not in classes:
        raise ValueError(f"algorithm {arch.get('algorithm')!r} is not one of {sorted(classes)}")
    # SB3's own load does the same: construct without setup, set the saved attributes, then set up
    model = classes[arch["algorithm"]]("MlpPolicy", env=None, device="cpu", _init_setup_model=False)
    model.observation_space = _box(arch["observation_space"])
    model.action_space = _box(arch["action_space"])
    model.policy_kwargs = _decode(arch["policy_kwargs"])
    model.use_sde = bool(arch.get("use_sde", False))
    model.n_envs, model.buffer_size = 1, 1  # a model for acting: no replay memory
    if arch["algorithm"] == "sac":  # "auto" would read self.env, which a rebuilt model does not have
        model.target_entropy = float(-np.prod(model.action_space.shape))
    model._setup_model()
    model.num_timesteps = int(arch.get("num_timesteps", 0))
    return model


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"class"}:
        if value["class"] == "FlattenExtractor":
            from stable_baselines3.common.torch_layers import FlattenExtractor

            return FlattenExtractor
        if value["class"] not in ALLOWED_CLASSES:
            raise ValueError(f"class {value['class']!r} is not allowed; allowed: {sorted(ALLOWED_CLASSES)}")
        return ALLOWED_CLASSES[value["class"]]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _box(spec: dict[str, Any]) -> Any:
    from gymnasium import spaces

    shape, dtype = tuple(int(d) for d in spec["shape"]), np.dtype(spec["dtype"])
    low = np.array([float(x) for x in spec["low"]], dtype=dtype).reshape(shape)
    high = np.array([float(x) for x in spec["high"]], dtype=dtype).reshape(shape)
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)

