"""Settings checks: finished trainer runs with other settings than a zoo entry's, kept for their figures.

A check (ReBRAC on hopper-medium with beta_1 = 0.05 instead of CORL's 0.01, or the CORL run a check
replaced in the zoo) decides what the zoo ships, so its figures must stay checkable after its run folder is
gone. :func:`record_check` copies the run's logs into ``policies/checks/<algorithm>-<entry>-<variant>-seed<k>/``
with a ``check.json`` holding the final evaluation, the critic's calibration and the provenance record that
remakes the run (without ``zoo_dir``, so rerunning it never overwrites the zoo). ``itpo-lab zoo-tables`` lists
the checks with the command rendered from that record and draws their curves; the weights are not kept (the
command remakes them).

    itpo-lab record-check --run-dir runs/rebrac-ext/hopper-medium-to150k --note "CORL's pair"
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

from itpo_lab.paths import policies_root
from itpo_lab.remake import record_of
from itpo_wrap import provenance
from itpo_wrap.formats.offline_policy import load_offline_policy
from itpo_wrap.provenance import Provenance

FORMAT = "itpo-check"
FORMAT_VERSION = 1
_BETA_FIELDS = ("actor_bc_coef", "critic_bc_coef")  # ReBRAC's Args


def check_provenance(record: Provenance, betas: tuple[float, float] | None) -> Provenance:
    """The provenance record of a check: the run's ``record`` with no ``zoo_dir`` and with the betas explicit.

    A zoo run's record leaves the betas to the trainer's table (``None``), which may have changed since (that
    is usually why the run became a check), and writes into the zoo; neither may hold for a check's record.
    A beta the run was given explicitly stays as given.

    :param record: the run's record (its checkpoint's ``info``: :func:`itpo_lab.remake.record_of`).
    :param betas: ``(beta_1, beta_2)`` the run used (its ``betas_used``), or ``None`` when it has none.
    """
    args = {**record.args, "zoo_dir": None} if "zoo_dir" in record.args else dict(record.args)
    for name, value in zip(_BETA_FIELDS, betas or (), strict=False):
        if name in args and args[name] is None:
            args[name] = float(value)
    return Provenance(record.program, args)


def checks_root(checks_dir: str | Path | None = None) -> Path:
    """``checks_dir``, or ``policies/checks`` (:func:`~itpo_lab.paths.policies_root`) when ``None``."""
    return Path(checks_dir) if checks_dir is not None else policies_root() / "checks"


def record_check(
    run_dir: str | Path,
    checks_dir: str | Path | None = None,
    *,
    variant: str | None = None,
    note: str = "",
    calibrate: bool = True,
    episodes: int = 10,
    seed: int = 1000,
) -> Path:
    """Copy a finished run's logs and figures into ``checks_dir/<algorithm>-<entry>-<variant>-seed<k>/``.

    :param run_dir: a finished trainer run (``policy.pt`` and ``metrics.csv``).
    :param checks_dir: where checks live (:func:`checks_root`: ``policies/checks`` when ``None``).
    :param variant: the label of the settings (``beta1-0.05``); default ``betas-<beta_1>-<beta_2>`` when the
        run stored its betas, otherwise required.
    :param note: one line on why the check was run or what it replaced.
    :param calibrate: measure the critic against the actor's returns (:func:`value_calibration`, seconds).
    :param episodes: calibration episodes.
    :param seed: first calibration reset seed (the zoo's evaluation seeds).
    :return: the check's folder.
    """
    from itpo_lab.offline.run import run_name

    run_dir = Path(run_dir)
    policy = run_dir / "policy.pt"
    if not policy.is_file() or not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a finished run (it needs policy.pt and metrics.csv); "
                                "finish it by rerunning its trainer command, which resumes")
    _, _, meta = load_offline_policy(policy)  # metadata first: a bad variant fails before the 10 episodes
    config = meta.get("config", {})
    variant, betas = _variant(policy, config, variant)
    entry = run_name(str(meta["dataset_id"]))
    algorithm = str(meta["algorithm"])
    name = f"{algorithm}-{entry}-{variant}-seed{int(config.get('seed', 0))}"
    info = meta.get("info", {})
    made_by = record_of(info)  # an older checkpoint's command line is read through the trainer's own parser
    if made_by is None:
        raise ValueError(f"{str(policy)!r} records neither a provenance record nor a command; a check must say "
                         "how to remake it")
    record: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "entry": entry, "algorithm": algorithm,
        "variant": variant, "dataset_id": meta["dataset_id"], "env_id": meta["env_id"],
        "updates": int(meta["updates"]), "betas": list(betas) if betas else None,
        provenance.KEY: check_provenance(made_by, betas).to_dict(), "eval": info.get("eval", {}),
        "note": note, "recorded": datetime.date.today().isoformat(), "critic_calibration": None,
    }
    if calibrate:
        from itpo_lab.offline.calibration import calibrate_policy_file

        result, _ = calibrate_policy_file(policy, episodes=episodes, seed=seed)
        record["critic_calibration"] = {"seed": seed, **result.summary()}
    folder = checks_root(checks_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    if (run_dir / "metrics.csv").resolve() != (folder / "metrics.csv").resolve():
        shutil.copyfile(run_dir / "metrics.csv", folder / "metrics.csv")
    write_check(folder, record)
    return folder


def write_check(folder: Path, record: dict[str, Any]) -> None:
    """Write a check's ``check.json``.

    :param folder: the check's folder.
    :param record: the check, as :func:`read_checks` returns it without ``folder``.
    """
    (folder / "check.json").write_text(json.dumps(record, indent=1) + "\n")


def _variant(policy: Path, config: dict[str, Any], variant: str | None) -> tuple[str, tuple[float, float] | None]:
    """The label a check is filed under (``variant``, else named after the betas the run stored) and those betas.

    :param policy: the run's ``policy.pt`` (for the message).
    :param config: the configuration stored in it.
    :param variant: the label given, or ``None``.
    """
    stored = config.get("betas_used")
    betas = (float(stored[0]), float(stored[1])) if stored else None
    if variant is None:
        if betas is None:
            raise ValueError(f"{str(policy)!r} stored no betas to name the check by; pass variant=, e.g. "
                             "'alpha-5.0'")
        variant = f"betas-{betas[0]:g}-{betas[1]:g}"
    if not variant or "/" in variant or " " in variant:
        raise ValueError(f"variant={variant!r} must be a non-empty label without '/' or spaces, e.g. 'beta1-0.05'")
    return variant, betas


def read_checks(checks_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every ``check.json`` under ``checks_dir`` (:func:`checks_root`; sorted by name), each with ``folder`` added."""
    checks_dir = checks_root(checks_dir)
    out = []
    for path in sorted(checks_dir.glob("*/check.json")) if checks_dir.is_dir() else []:
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not an itpo check record (format {record.get('format')!r}); "
                             "write it with itpo-lab record-check")
        out.append({**record, "folder": path.parent})
    return out
