"""``MODEL_CARD.md`` of a zoo entry, rendered from its ``entry.json`` (how each policy was made, scores,
the commands to remake it, its world models and tuned settings)."""

from __future__ import annotations

from typing import Any

from itpo_lab.remake import command_of
from itpo_wrap.zoo import tuned_settings_of


def model_card(entry: dict[str, Any]) -> str:
    """Render ``MODEL_CARD.md`` from an entry dict (so card and JSON never disagree).

    :param entry: a parsed ``entry.json`` (:func:`itpo_wrap.zoo.read_entry`).
    """
    lines = [f"# {entry['name']}", "",
             f"- dataset: `{entry['dataset_id']}`", f"- env: `{entry['env_id']}`",
             f"- default policy: `{entry.get('default_policy')}`",
             f"- world model: {('`' + entry['world_model'] + '`') if entry.get('world_model') else 'none yet'}", "",
             *_policy_table(entry)]
    lines += ["", "Scores: deterministic actions, `100 * (R - R_min) / (R_max - R_min)` with our own fixed reference "
              "returns: 100 = our own SAC expert, not D4RL's (do not compare with D4RL tables; both sets of "
              "references are in docs/datasets.md).", "", "## Load", "", "```python", "from itpo_wrap import zoo", "",
              f"entry = zoo.load({entry['name']!r})  # or policy='<name>' from the table", "env = entry.make_env()",
              "```", "", "## Remake", ""]
    for key, p in entry["policies"].items():
        lines += _remake_policy(entry["name"], key, p)
    if entry.get("world_models", {}):
        lines += _world_models_section(entry["world_models"])
    return "\n".join(lines)


def _policy_table(entry: dict[str, Any]) -> list[str]:
    """One row per policy: how it was trained and what it scores."""
    lines = ["| policy | algorithm | updates | wall time | return (10 eps) | normalized score |",
             "|---|---|---|---|---|---|"]
    for key, p in entry["policies"].items():
        ev = p.get("eval", {})
        ret = f"{ev['return_mean']:.1f} ± {ev['return_std']:.1f}" if "return_mean" in ev else "-"
        score = f"{ev['score_mean']:.1f} ± {ev['score_std']:.1f}" if "score_mean" in ev else "-"
        wall = f"{p['wall_s'] / 60:.1f} min" if "wall_s" in p else "-"
        lines.append(f"| `{key}` (`{p['file']}`) | {p.get('algorithm', '-')} | {p.get('updates', '-')} | {wall} "
                     f"| {ret} | {score} |")
    return lines


# what each component of a base policy's metrics log holds (MODEL_CARD.md's "Log:" line)
_LOGGED = {"eval": "every evaluation of the run", "train": "losses and Q every few hundred updates"}


def _remake_policy(name: str, key: str, p: dict[str, Any]) -> list[str]:
    """A policy's part of "Remake": its command, its logs, notes, critic calibration and, for a policy made by
    ``itpo improve``, how it was improved.

    :param name: the entry's name.
    :param key: the policy's name in the entry.
    :param p: the policy's record.
    """
    lines = [f"`{key}`:", "", "```bash", command_of(p) or "# command not recorded", "```", ""]
    if p.get("metrics_log"):
        parts = [f"`{c}`, {_LOGGED.get(c, 'its metrics')}" for c in p.get("metrics_components", [])]
        lines += [f"Log: `{p['metrics_log']}` (the `metrics.csv` layout)"
                  + (": component " + "; ".join(parts) if parts else "") + ".", ""]
    if p.get("notes"):
        lines += [str(p["notes"]), ""]
    cal = p.get("critic_calibration")
    if cal:
        lines += [f"Critic calibration (`itpo-lab critic-calibration --entry {name} --policy {key}`): "
                  f"mean min-Q {cal['q_mean']:.1f} against the discounted return collected afterwards "
                  f"{cal['return_mean']:.1f} (ratio {cal['ratio']:.2f}, correlation {cal['correlation']:.2f}) "
                  f"over {cal['states']} states of {cal['episodes']} episodes.", ""]
    if p.get("improve"):
        lines += improved_section(key, p["improve"], p.get("wall_s"))
    return lines


def _world_models_section(wms: dict[str, Any]) -> list[str]:
    """The world models: a table of their files and accuracy, then each one's command and tuned settings.

    :param wms: the entry's ``world_models`` records by kind.
    """
    lines = ["## World models", "",
             "Stored without a critic; `entry.load_world_model(kind)` attaches the loaded policy's own twin "
             "critic.", "",
             "| kind | file | size | training wall time | one-step RMSE (state std, held-out) |",
             "|---|---|---|---|---|"]
    for kind, w in wms.items():
        ev = w.get("eval", {})
        rmse = f"{ev['one_step_rmse_state_std']:.3f}" if "one_step_rmse_state_std" in ev else "-"
        wall = f"{w['wall_s'] / 60:.1f} min" if "wall_s" in w else "-"
        lines.append(f"| {kind} | `{w['file']}` | {w.get('size_mb', '-')} MB | {wall} | {rmse} |")
    lines += [""]
    for kind, w in wms.items():
        lines += [f"`{kind}` world model:", "", "```bash", command_of(w) or "# command not recorded", "```", ""]
        tuned = tuned_settings_of(w)
        if tuned:
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in tuned.items())
            lines += [f"Tuned ITPO settings: {shown}. {w.get('tuned_note', '')}".strip(), ""]
    return lines


def improved_section(key: str, rec: dict[str, Any], wall_s: float | None) -> list[str]:
    """The card's lines for a policy made by ``itpo improve`` (its ``improve`` record in ``entry.json``).

    :param key: the policy's name in the entry.
    :param rec: the record: ``base_policy``, ``world_model`` and :meth:`itpo_wrap.improve.ImproveResult.summary`.
    :param wall_s: the recorded wall time.
    """
    v, cfg = rec.get("verdict", {}), rec.get("config", {})
    shown = ", ".join(f"{k}={cfg[k]}" for k in ("steps", "batch_size", "lr", "alpha", "bc_target", "max_drift",
                                                 "grad_clip", "horizon", "particles", "seed") if k in cfg)
    wall = f"{wall_s / 60:.1f} min" if wall_s is not None else "not recorded"
    return [f"`{key}` is `{rec.get('base_policy')}` improved offline by `itpo improve` (first-order ascent on the "
            f"imagined return through the `{rec.get('world_model')}` world model, docs/improve.md); its terminal "
            f"critic is the base's, unchanged. Held-out imagined return (verdict states of held-out episodes, noise "
            f"no step saw): base {v.get('j_base', float('nan')):.2f} -> {v.get('j_improved', float('nan')):.2f}, "
            f"paired gain {v.get('gain', float('nan')):+.3f} ± {v.get('gain_se', float('nan')):.3f} over "
            f"{v.get('states', '-')} states ({v.get('particles', '-')} particles each); kept step "
            f"{rec.get('best_step', '-')} of {rec.get('steps', '-')}; wall time {wall} on one core. "
            f"Settings: {shown}.{_field_sentence(rec.get('field'))}", ""]


def _field_sentence(field: dict[str, Any] | None) -> str:
    """The real-env check in one sentence (``itpo_wrap.improve_field.FieldCheck.summary``), or why there was none."""
    if not field:
        return (" No real-env check ran (offline verdict only): evaluate it in the env before use "
                "(docs/improve.md).")
    chosen = field["candidates"][str(field["chosen"])]
    base = field["candidates"]["0"]
    return (f" Real-env check on tuning seeds {field['seeds']}: {len(field['candidates']) - 1} validated steps "
            f"against the base, one full episode per seed; kept step {field['chosen']}, mean return "
            f"{chosen['mean']:.1f} vs the base's {base['mean']:.1f} (paired gain {chosen['gain']:+.1f} ± "
            f"{chosen['gain_se']:.1f}, more than {field['z']:g} standard errors; {chosen['falls']} falls).")
