"""The registry of dynamics kinds: one record per kind names its config class, its dynamics class and
what training needs from it. Every list of kinds in the library reads from here: bundle loading, the
training config, ``itpo train-world-model --dynamics`` and the ``--kind`` choices of the other commands,
the zoo writer's slots.

A new kind is one file that defines a config dataclass and a :class:`~itpo_wrap.world_model.dynamics.Dynamics`
subclass, plus one call::

    register_kind("toy", ToyConfig, ToyDynamics, "one line for --help")

The config is a frozen dataclass whose fields are plain values (it is stored with ``dataclasses.asdict``
and rebuilt from that dict); a ``net: NetConfig`` field lets ``--hidden``, ``--blocks``, ``--max-frequency``
and ``--x-gate`` reach it, and the CLI's other per-kind flags set the fields they name
(:data:`itpo_wrap.training.arguments.KIND_FLAGS`). The dynamics class is built as
``dynamics(obs_dim, act_dim, config)`` and implements ``num_noise``, ``sample`` and ``loss``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.world_model.config import DiffusionConfig, MeanFlowConfig, MLPDynamicsConfig
from itpo_wrap.world_model.diffusion import DiffusionDynamics
from itpo_wrap.world_model.dynamics import Dynamics, MLPDynamics
from itpo_wrap.world_model.meanflow import MeanFlowDynamics, check_teacher, teacher_inputs

CheckRun = Callable[[Any, object | None], None]
LossInputs = Callable[[Any, Any, dict[str, StateNormalizer], torch.device], dict[str, Any]]


def no_teacher(cfg: Any, teacher: object | None) -> None:
    """The default training check: a kind that does not distil takes no teacher."""
    if teacher is not None:
        raise ValueError(f"a teacher was given, but {type(cfg).__name__} does not train from one; drop --teacher")


def no_inputs(cfg: Any, teacher: Any, norms: dict[str, StateNormalizer], device: torch.device) -> dict[str, Any]:
    """The default extra ``loss`` inputs: none (after :func:`no_teacher`)."""
    no_teacher(cfg, teacher)
    return {}


@dataclasses.dataclass(frozen=True)
class DynamicsKind:
    """One dynamics kind.

    :param name: the name stored in bundles and run configs and given on the command line.
    :param config: the settings' frozen dataclass (stored in bundles as ``dataclasses.asdict``).
    :param dynamics: the ``Dynamics`` subclass, built as ``dynamics(obs_dim, act_dim, config)``.
    :param help: one line for the CLI's ``--help``.
    :param check_run: ``(config, teacher or None)``: raise when a training run lacks what the config asks
        for; called before the (slow) dataset load.
    :param loss_inputs: ``(config, teacher, normalizers, device) -> kwargs`` handed to every training
        ``loss`` call of the dynamics (MeanFlow's teacher map).
    :param retired: fields older bundles store that the config no longer has, each with a test of the
        stored value: a value the test accepts did nothing and is dropped on load; any other is refused.
    :param former_defaults: fields whose default changed, with the old default: a stored config that lacks
        one was written when that was the default.
    """

    name: str
    config: type
    dynamics: type[Dynamics]
    help: str
    check_run: CheckRun = no_teacher
    loss_inputs: LossInputs = no_inputs
    retired: Mapping[str, Callable[[Any], bool]] = dataclasses.field(default_factory=dict)
    former_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, obs_dim: int, act_dim: int, config: Any = None) -> Dynamics:
        """A fresh (untrained) dynamics model of this kind.

        :param obs_dim: state width.
        :param act_dim: action width.
        :param config: its settings (``None``: the kind's defaults).
        """
        cfg = self.config() if config is None else config
        return self.dynamics(obs_dim, act_dim, cfg)  # type: ignore[call-arg]  # every kind takes its config

    def config_from_dict(self, values: dict[str, Any]) -> Any:
        """Rebuild this kind's config from its ``asdict`` form (as stored in a bundle or run config).

        :param values: the dict.
        """
        if not isinstance(values, dict):
            raise ValueError(f"a {self.name} dynamics config must be a dict of fields, got {type(values).__name__}")
        fields = {f.name for f in dataclasses.fields(self.config)}
        values = {**self.former_defaults, **values}
        for name, was_no_op in self.retired.items():
            if name in values and name not in fields:
                if not was_no_op(values[name]):
                    raise ValueError(f"this {self.name} config sets {name}={values[name]!r}, an option this itpo-wrap "
                                     "no longer has; load it with the version that wrote it")
                del values[name]  # a removed option at its no-op value: the model is the same without it
        foreign = sorted(set(values) - fields)
        if foreign:  # a kind label that disagrees with its settings: say so, not "unexpected keyword argument"
            owners = [k.name for k in KINDS.values()
                      if set(values) <= {f.name for f in dataclasses.fields(k.config)} | set(k.retired)]
            owner = f" (they are {owners[0]} settings)" if owners else ""
            raise ValueError(f"the dynamics is labelled {self.name!r} but its config has fields {foreign} that a "
                             f"{self.name} config does not have{owner}: the kind was edited or the file is corrupt")
        return self.config(**values)


KINDS: dict[str, DynamicsKind] = {}


def register_kind(name: str, config: type, dynamics: type[Dynamics], help: str, **hooks: Any) -> DynamicsKind:
    """Add a dynamics kind (or replace one of the same name) and return its record.

    :param name: the kind's name (``dynamics.kind`` must equal it: bundles store that attribute).
    :param config: its settings dataclass.
    :param dynamics: its ``Dynamics`` subclass.
    :param help: one line for ``--help``.
    :param hooks: ``check_run``, ``loss_inputs``, ``retired``, ``former_defaults`` (see :class:`DynamicsKind`).
    """
    if getattr(dynamics, "kind", None) != name:
        raise ValueError(f"{dynamics.__name__}.kind is {getattr(dynamics, 'kind', None)!r}; set kind = {name!r} "
                         "(bundles store it and the loader looks the kind up by it)")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"the {name} config {config!r} must be a dataclass (bundles store it as a dict of fields)")
    KINDS[name] = DynamicsKind(name, config, dynamics, help, **hooks)
    return KINDS[name]


def get_kind(name: str) -> DynamicsKind:
    """The record of kind ``name``, or a ``ValueError`` listing the known kinds.

    :param name: e.g. ``"meanflow"``.
    """
    if name not in KINDS:
        raise ValueError(f"dynamics kind {name!r} is unknown; choose one of {kind_names()}")
    return KINDS[name]


def kind_names() -> tuple[str, ...]:
    """The registered kinds' names, in registration order (the CLI's choices)."""
    return tuple(KINDS)


def config_from_dict(kind: str, values: dict[str, Any]) -> Any:
    """Rebuild a dynamics config from its ``asdict`` form (:meth:`DynamicsKind.config_from_dict`).

    :param kind: a registered kind.
    :param values: the dict.
    """
    return get_kind(kind).config_from_dict(values)


def _always(value: Any) -> bool:
    return True


register_kind("diffusion", DiffusionConfig, DiffusionDynamics, "DDPM/DDIM chain, K network calls per sample")
register_kind("meanflow", MeanFlowConfig, MeanFlowDynamics, "one network call per sample; distils from a "
              "diffusion --teacher by default", check_run=check_teacher, loss_inputs=teacher_inputs,
              # removed in issue 22: every shipped bundle stores the no-op value tested here (the ablation rows
              # of benchmarks/results/meanflow_variants_* that set them come from that script's own subclass)
              retired={"boundary_ratio": lambda v: v == 0, "prediction": lambda v: v == "x",
                       "tilt_eta": lambda v: v == 0, "tilt_sigma": _always},
              former_defaults={"teacher_ratio": 0.0})  # plain MeanFlow was the default until issue 22
register_kind("mlp", MLPDynamicsConfig, MLPDynamics, "deterministic regression (the same-budget baseline)")
