"""What ``itpo improve`` returns (:class:`ImproveResult`, with the offline :class:`Verdict` and the real-env
:class:`~itpo_wrap.improve_field.FieldCheck`) and how it is saved as a zoo policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itpo_wrap.formats.offline_policy import save_offline_policy
from itpo_wrap.improve_config import ImproveConfig
from itpo_wrap.improve_field import FieldCheck
from itpo_wrap.improve_run import Setup
from itpo_wrap.networks import TanhActor, TwinQ


@dataclass(frozen=True)
class Verdict:
    """The paired comparison on the verdict states (held-out episodes, noise no step saw).

    :ivar j_base: mean J of the base policy.
    :ivar j_improved: mean J of the improved policy (its best validated step).
    :ivar gain: mean paired gain ``J_improved(s) - J_base(s)`` over the states.
    :ivar gain_se: its standard error over the states.
    :ivar worse_share: share of the states where the improved policy's J is below the base's.
    :ivar states: verdict states; :ivar particles: particles per state.
    :ivar accepted: ``gain > verdict_z * gain_se``.
    """

    j_base: float
    j_improved: float
    gain: float
    gain_se: float
    worse_share: float
    states: int
    particles: int
    accepted: bool


@dataclass
class ImproveResult:
    """What :func:`improve_policy` did.

    :ivar policy: the improved policy (a copy; the base is never modified), or the base itself when refused.
    :ivar accepted: the verdict kept the improved policy.
    :ivar verdict: the held-out paired comparison.
    :ivar best_step: the step whose parameters were kept (``0``: the base).
    :ivar steps: optimiser steps run in all (over every resume).
    :ivar wall_s: this call's wall time; :ivar train_wall_s: the loop's, summed over resumes.
    :ivar config: the settings.
    :ivar run_dir: the run folder (``None``: none was kept).
    :ivar message: one sentence on the outcome.
    :ivar source: the zoo entry it started from, if any (what :meth:`save` needs).
    :ivar field: the real-env check on tuning seeds, when an env was given (it then made the choice).
    """

    policy: Any
    accepted: bool
    verdict: Verdict
    best_step: int
    steps: int
    wall_s: float
    train_wall_s: float
    config: ImproveConfig
    run_dir: Path | None
    message: str
    source: Any = None
    field: FieldCheck | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts (``result.json``, the checkpoint's and the zoo's record)."""
        return {"accepted": self.accepted, "verdict": self.verdict.__dict__, "best_step": self.best_step,
                "steps": self.steps, "wall_s": round(self.wall_s, 1), "train_wall_s": round(self.train_wall_s, 1),
                "config": self.config.to_dict(), "message": self.message,
                "field": self.field.summary() if self.field is not None else None}

    def save(self, path: str | Path, info: dict[str, Any] | None = None) -> Path:
        """Write the improved policy as an offline-policy checkpoint (a zoo policy like ``td3_bc.pt``) with the
        base's critic as its terminal critic; a refused result is never saved.

        :param path: the ``.pt`` file.
        :param info: further facts for the checkpoint's ``info`` (the world model used, the provenance record).
        """
        if not self.accepted:
            raise ValueError(f"nothing to save: {self.message}")
        src = self.source
        if src is None or not isinstance(self.policy, TanhActor) or not isinstance(getattr(src, "critic", None), TwinQ):
            raise TypeError("save() writes zoo offline policies (a TanhActor from an entry's td3_bc or rebrac); save "
                            "another improved policy with its own library (e.g. an SB3 model's .save())")
        return save_offline_policy(path, self.policy, src.critic, algorithm="itpo_improve", config=self.config.to_dict(),
                                   dataset_id=src.dataset_id, env_id=src.env_id,
                                   action_low=src.meta["action_low"], action_high=src.meta["action_high"],
                                   updates=self.best_step,
                                   info={"base_policy": src.policy_name, "base_algorithm": src.algorithm,
                                         "improve": self.summary(), **(info or {})})



def make_result(setup: Setup, base: Any, source: Any, verdict: Verdict, best_step: int, fit: dict[str, float],
            cfg: ImproveConfig, run_dir: str | Path | None, start: float, field: FieldCheck | None) -> ImproveResult:
    """The outcome in one object: the kept step (the real-env check's choice when it ran, else the best
    validated step if the offline verdict accepts it), the policy to use and the sentence that says why."""
    v = verdict
    step = best_step if field is None else field.chosen
    accepted = step > 0 and (field is not None or v.accepted)  # with an env, the env's choice decides
    offline = (f"held-out imagined return {v.j_base:.2f} -> {v.j_improved:.2f} (paired gain {v.gain:+.3f} +- "
               f"{v.gain_se:.3f} over {v.states} states)")
    if field is not None:
        gain, se = field.gain(step)
        message = (f"improved: in the real env, step {step} of {int(fit['steps'])} beat the base by {gain:+.1f} +- "
                   f"{se:.1f} return over seeds {list(field.seeds)}; offline, {offline}" if accepted else
                   f"refused: no validated step beat the base in the real env by {cfg.verdict_z:g} standard errors "
                   f"over seeds {list(field.seeds)}; the base policy is returned and nothing is saved")
    elif accepted:
        message = f"improved: {offline}, step {step} of {int(fit['steps'])}"
    elif step == 0:
        message = ("refused: no validated step beat the base's held-out imagined return; the base policy is "
                   "returned and nothing is saved")
    else:
        message = (f"refused: the improved policy's held-out imagined return does not beat the base's by "
                   f"{cfg.verdict_z:g} standard errors (paired gain {v.gain:+.3f} +- {v.gain_se:.3f} over "
                   f"{v.states} states); the base policy is returned and nothing is saved")
    return ImproveResult(setup.improved if accepted else base, accepted, v, step if accepted else 0,
                         int(fit["steps"]), time.perf_counter() - start, float(fit["wall_s"]), cfg,
                         Path(run_dir) if run_dir is not None else None, message, source, field)
