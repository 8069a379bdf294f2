"""The base policies' learning curves, gathered from the zoo's entries, the trainers' unfinished runs and the
settings checks (:func:`learning_curves`), and drawn as one panel per dataset (:func:`plot_learning_curves`,
``docs/base_policy_curves.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itpo_lab.zoo_grid import ENVS, LEVELS, dataset_score, entries
from itpo_wrap import zoo
from itpo_wrap.training.metrics import read_metrics


def _read_curve(path: Path) -> tuple[list[int], list[float]]:
    """A run's learning curve: the evaluation score against updates (its ``metrics.csv``, component ``eval``)."""
    rows = [r for r in read_metrics(path, "eval") if "score_mean" in r]
    return [int(r["step"]) for r in rows], [r["score_mean"] for r in rows]


def learning_curves(root: Path | None = None, runs_dir: Path | None = None,
                    checks_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{entry: {policy: (updates, scores, finished)}}``: every zoo policy's ``metrics_log`` (its final evaluation
    alone when the run's log was not kept), plus unfinished runs (no ``policy.pt`` yet, ``finished=False``) where
    the trainers keep their runs and resume state, ``runs/<algorithm>/<entry>-seed<k>/``, which win over the
    zoo's curve of the same policy because they are newer (a resumed run replacing a shorter one). A run named
    ``<entry>-<variant>-seed<k>`` (a settings check) appears under ``"<algorithm> <variant>"``; finished checks
    come from ``policies/checks/`` (``finished=True``).

    :param root: the zoo folder (:func:`itpo_wrap.zoo.zoo_path` when ``None``).
    :param runs_dir: the trainers' runs folder (``runs`` when ``None``, their default ``--run-dir`` parent).
    :param checks_dir: the settings checks (``policies/checks`` when ``None``).
    """
    from itpo_lab.offline.checks import read_checks

    root = root or zoo.zoo_path()
    runs_dir = runs_dir if runs_dir is not None else Path("runs")
    curves: dict[str, dict[str, Any]] = {}
    for e in entries(root):
        for key, p in e["policies"].items():
            if p.get("metrics_log") and (root / e["name"] / p["metrics_log"]).is_file():
                curves.setdefault(e["name"], {})[key] = (*_read_curve(root / e["name"] / p["metrics_log"]), True)
            elif "score_mean" in p.get("eval", {}) and p.get("updates"):  # logs lost: the final evaluation only
                curves.setdefault(e["name"], {})[key] = ([int(p["updates"])], [float(p["eval"]["score_mean"])], True)
    known = sorted(set(curves) | set(zoo.list(root)), key=len, reverse=True)
    for run in sorted(runs_dir.glob("*/*-seed*/metrics.csv")) if runs_dir.is_dir() else []:
        if (run.parent / "policy.pt").is_file():  # finished: its curve is the zoo's (or a check's)
            continue
        algorithm, name = run.parent.parent.name, run.parent.name.rpartition("-seed")[0]
        if name in known:
            curves.setdefault(name, {})[algorithm] = (*_read_curve(run), False)
            continue
        # a variant of an entry's run (``rebrac-hopper-medium-beta2-0.1-seed0``: a settings check), drawn
        # beside the entry's own curves under its own label; the longest entry name wins (medium-expert)
        entry = next((e for e in known if name.startswith(e + "-")), None)
        if entry is not None:
            curves.setdefault(entry, {})[f"{algorithm} {name[len(entry) + 1:]}"] = (*_read_curve(run), False)
    for check in read_checks(checks_dir):
        if (check["folder"] / "metrics.csv").is_file():
            key = f"{check['algorithm']} {check['variant']}"
            curves.setdefault(check["entry"], {})[key] = (*_read_curve(check["folder"] / "metrics.csv"), True)
    return curves


def plot_learning_curves(path: Path, root: Path | None = None, runs_dir: Path | None = None,
                         checks_dir: Path | None = None) -> Path | None:
    """One panel per dataset: each policy's evaluation score against updates, the dataset's own score as a
    dotted line; unfinished runs dashed. ``None`` (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves = learning_curves(root, runs_dir, checks_dir)
    colours = {"td3_bc": "tab:blue", "rebrac": "tab:orange"}
    others = ["tab:green", "tab:purple", "tab:brown", "tab:pink"]  # variants and other bases
    fig, axes = plt.subplots(len(ENVS), len(LEVELS), figsize=(12, 9), sharex=True)
    for i, env in enumerate(ENVS):
        for j, level in enumerate(LEVELS):
            ax, name = axes[i][j], f"{env}-{level}"
            extra = 0  # curves without a fixed colour drawn so far in this panel
            for key, (updates, scores, finished) in sorted(curves.get(name, {}).items()):
                label = key if finished else f"{key} (unfinished)"
                if len(updates) == 1 and finished:
                    label += " (final only)"
                colour = colours.get(key)
                if colour is None:
                    colour, extra = others[extra % len(others)], extra + 1
                ax.plot(updates, scores, "-" if finished else "--", marker="o" if len(updates) == 1 else None,
                        color=colour, label=label)
            data = dataset_score(env, level)
            if data != "-":
                ax.axhline(float(data), color="grey", ls=":", label="dataset")
            ax.set_title(name, fontsize=10)
            ax.legend(fontsize=7, loc="lower right")
            if j == 0:
                ax.set_ylabel("normalized score")
            if i == len(ENVS) - 1:
                ax.set_xlabel("updates")
    fig.suptitle("Base policies: evaluation score (10 episodes) during training")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
