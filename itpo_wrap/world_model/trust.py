"""Is a world model fit to plan with? Its held-out accuracy, recorded when it was trained (issue 20).

Planning through a model that is wrong makes the optimiser exploit its errors: on an env nobody tuned
for, a bundle with a one-step error of 0.85 state std (half of its dimensions worse than predicting the
mean) and a termination head that caught 23% of real falls turned a good policy into a much worse one,
while the model's own imagined return rose. Our nine bundles measure 0.03-0.19 state std. The limits
below sit well between the two, so a model like the bad one is flagged and none of ours is.

Sources, in order: ``info["fitness"]`` (the full held-out evaluation that ``itpo train-world-model``
stores in the bundle: per-dimension one-step error, reward error, termination recall), else
``info["summaries"]`` (the held-out numbers every bundle of this library records during training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: one-step RMSE over all dimensions, in units of the per-dimension state std
MAX_ONE_STEP_RMSE = 0.5
#: a dimension whose one-step RMSE is above 1 state std is predicted worse than by its mean
MAX_DIM_RMSE = 1.0
#: share of real terminations the termination head must catch, judged on at least MIN_TERMINAL_ROWS
MIN_TERMINATION_RECALL = 0.5
MIN_TERMINAL_ROWS = 20
#: reward RMSE in units of the reward's std
MAX_REWARD_RMSE = 0.5


@dataclass(frozen=True)
class Fitness:
    """A bundle's held-out accuracy (``None``: not recorded).

    :ivar one_step_rmse: one-step RMSE in state-std units, all dimensions.
    :ivar per_dim: one-step RMSE per dimension, in state-std units.
    :ivar reward_rmse: reward RMSE in reward-std units.
    :ivar termination_recall: share of held-out terminal transitions predicted terminal.
    :ivar terminal_rows: how many held-out terminal transitions the recall is measured on.
    :ivar source: which record the numbers come from.
    """

    one_step_rmse: float | None
    per_dim: tuple[float, ...] | None
    reward_rmse: float | None
    termination_recall: float | None
    terminal_rows: int | None
    source: str

    def problems(self) -> list[str]:
        """Why the model is not fit to plan with, one phrase per failed limit naming the numbers."""
        out = []
        if self.one_step_rmse is not None and self.one_step_rmse > MAX_ONE_STEP_RMSE:
            out.append(f"held-out one-step error {self.one_step_rmse:.2f} state std (limit {MAX_ONE_STEP_RMSE})")
        if self.per_dim:
            bad = [i for i, e in enumerate(self.per_dim) if e > MAX_DIM_RMSE]
            if bad:
                out.append(f"{len(bad)} of {len(self.per_dim)} state dimensions predicted worse than their mean "
                           f"(error above {MAX_DIM_RMSE} state std: dims {bad[:8]}{'...' if len(bad) > 8 else ''})")
        if self.reward_rmse is not None and self.reward_rmse > MAX_REWARD_RMSE:
            out.append(f"held-out reward error {self.reward_rmse:.2f} reward std (limit {MAX_REWARD_RMSE})")
        if (self.termination_recall is not None and not math.isnan(self.termination_recall)
                and (self.terminal_rows is None or self.terminal_rows >= MIN_TERMINAL_ROWS)
                and self.termination_recall < MIN_TERMINATION_RECALL):
            rows = f" of {self.terminal_rows}" if self.terminal_rows is not None else ""
            out.append(f"its termination head caught {100 * self.termination_recall:.0f}%{rows} real terminations "
                       f"(limit {100 * MIN_TERMINATION_RECALL:.0f}%)")
        return out


def fitness_record(result: dict[str, Any]) -> dict[str, Any]:
    """What ``info["fitness"]`` stores, from :func:`itpo_wrap.training.evaluate.evaluate_world_model`'s result."""
    dyn = result["dynamics"]
    return {"one_step_rmse_state_std": dyn["one_step_rmse_state_std"],
            "one_step_rmse_state_std_per_dim": list(dyn["one_step_rmse_state_std_per_dim"]),
            "reward_rmse_reward_std": result["reward_rmse_reward_std"],
            "termination_recall": result["termination_recall"], "terminal_rows": result["terminal_rows"],
            "episodes": result["episodes"], "rows": result["rows"]}


def fitness_of(world_model: object) -> Fitness | None:
    """The recorded held-out accuracy of ``world_model``, or ``None`` when it records none (a user's own
    ``WorldModelLike`` without ``info``)."""
    info = getattr(world_model, "info", None)
    if not isinstance(info, dict):
        return None
    fit = info.get("fitness")
    if isinstance(fit, dict):
        return Fitness(_num(fit.get("one_step_rmse_state_std")),
                       tuple(float(x) for x in fit.get("one_step_rmse_state_std_per_dim") or ()) or None,
                       _num(fit.get("reward_rmse_reward_std")), _num(fit.get("termination_recall")),
                       _int(fit.get("terminal_rows")), "held-out evaluation stored in the bundle")
    summaries = info.get("summaries")
    if isinstance(summaries, dict):
        dyn, term = summaries.get("dynamics") or {}, summaries.get("termination") or {}
        return Fitness(_num(dyn.get("val_rmse_state_std")), None, None, _num(term.get("val_recall")), None,
                       "held-out numbers recorded during training")
    return None


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
