"""Every generated doc and the command that regenerates it (issue 22): ``make docs`` runs them all in place,
``tests/test_docs_generated.py`` (``make docs-check``) runs them into a temporary folder and compares byte for
byte.

    python benchmarks/regenerate_docs.py [NAME ...]     # default: every generator; names: --list

Each generator runs as a user would run it, on the committed JSON/CSV it reads. The figures some of them also
draw (``docs/*.png``) are rewritten by ``make docs`` but not compared by the check (their bytes depend on the
matplotlib and FreeType builds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TMP = "{tmp}"  # in `check`: the temporary folder, standing for the checkout root
# round 1 chose among these (docs/safety.md); round 2's candidates have seed 0 and 1 rows since, and would join
ROUND1_CANDIDATES = ["off", "safe", "safe-reset", "safe-3e-4", "safe-no-gate", "safe-no-drift",
                     "safe-hard-termination", "off-reset", "safe-reset-z2", "safe-reset-3e-5-z2", "safe-reset-3e-5"]
ROUND2 = ["--seeds", "0", "1", "2", "3", "4", "5", "--candidates", "safe-reset-z2", "safe-reset-z2-real0.3",
          "safe-reset-z2-mac0.2", "--episode-floor", "-10"]


@dataclasses.dataclass(frozen=True)
class Generated:
    """Committed files one command writes.

    :param files: the files, relative to the checkout.
    :param command: the command that regenerates them in place, from the checkout root.
    :param check: the same command writing ``files`` under :data:`TMP` instead (default: ``command`` with
        each of ``files`` given as ``{tmp}/<file>``).
    :param seed: files the command edits rather than writes (copied under :data:`TMP` first).
    """

    files: tuple[str, ...]
    command: tuple[str, ...]
    check: tuple[str, ...] = ()
    seed: tuple[str, ...] = ()

    def check_command(self) -> tuple[str, ...]:
        return self.check or tuple(f"{TMP}/{w}" if w in self.files else w for w in self.command)


def _cards(folder: str, card: str) -> Generated:
    files = tuple(p.relative_to(ROOT).parent.joinpath(card).as_posix() for p in sorted((ROOT / folder).glob(
        f"*/{'entry.json' if card == 'MODEL_CARD.md' else 'card.json'}")))
    return Generated(files, ("itpo-lab", "render-cards", folder),
                     ("itpo-lab", "render-cards", folder, "--out-dir", f"{TMP}/{folder}"))


def _latency_grid() -> Generated:
    """The grid from the JSON its header names: the committed one is the traced grid of
    ``latency_predict.json``; ``make bench`` rewrites it from ``latency.json``, and the header then says so."""
    named = re.search(r"from `(benchmarks/results/[^`]+\.json)`", (ROOT / "docs" / "latency_grid.md").read_text())
    source = named.group(1) if named else "benchmarks/results/latency.json"
    return Generated(("docs/latency_grid.md",), ("python", "benchmarks/latency_table.py", "--json", source, "--out",
                                                  "docs/latency_grid.md"))


GENERATED = {
    "zoo-tables": Generated(("docs/base_policies.md", "docs/world_models.md"),
                            ("itpo-lab", "zoo-tables", "--out-dir", "docs"),
                            ("itpo-lab", "zoo-tables", "--out-dir", f"{TMP}/docs")),
    "datasets-table": Generated(("docs/datasets.md",), ("itpo-lab", "datasets-table", "--out", "docs/datasets.md")),
    "model-cards": _cards("policies/zoo", "MODEL_CARD.md"),
    "demo-model-card": _cards("itpo_wrap/zoo_demo", "MODEL_CARD.md"),
    "behaviour-cards": _cards("policies/behavior", "CARD.md"),
    "results": Generated(("docs/results.md",), ("python", "benchmarks/summarize.py", "--out", "docs/results.md")),
    "results-json": Generated(("docs/results.json", "docs/safety_eval.md"),
                              ("python", "benchmarks/results_json.py", "--out", "docs/results.json",
                               "--markdown", "docs/safety_eval.md")),
    "improve-tables": Generated(("docs/improve_eval.md", "docs/improve.md"),
                                ("python", "benchmarks/improve_table.py", "--markdown", "docs/improve_eval.md",
                                 "--into", "docs/improve.md"), seed=("docs/improve.md",)),
    "latency-grid": _latency_grid(),
    "safety-loeo": Generated(("benchmarks/results/safety_loeo.json", "docs/safety_loeo.md"),
                             ("python", "benchmarks/safety_loeo.py", "choose", "--candidates", *ROUND1_CANDIDATES,
                              "--json", "benchmarks/results/safety_loeo.json", "--markdown", "docs/safety_loeo.md")),
    "safety-loeo-round2": Generated(("benchmarks/results/safety_loeo_round2.json", "docs/safety_loeo_round2.md"),
                                    ("python", "benchmarks/safety_loeo.py", "choose", *ROUND2, "--json",
                                     "benchmarks/results/safety_loeo_round2.json", "--markdown",
                                     "docs/safety_loeo_round2.md")),
}


def _argv(words: tuple[str, ...]) -> list[str]:
    """A command as this interpreter runs it (``itpo-lab`` is ``python -m itpo_lab`` in a source checkout)."""
    head = {"itpo-lab": [sys.executable, "-m", "itpo_lab"], "python": [sys.executable]}[words[0]]
    return head + list(words[1:])


def argv(words: tuple[str, ...]) -> list[str]:
    """A command as this interpreter runs it (``itpo-lab`` is ``python -m itpo_lab`` in a source checkout)."""
    head = {"itpo-lab": [sys.executable, "-m", "itpo_lab"], "python": [sys.executable]}[words[0]]
    return head + list(words[1:])


def run(words: tuple[str, ...], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a generator from the checkout root with one torch thread, the checkout first on the path."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv(words), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def main() -> None:
    p = argparse.ArgumentParser(description="regenerate the generated docs in place (make docs)")
    p.add_argument("names", nargs="*", help=f"generators (default: all): {', '.join(sorted(GENERATED))}")
    p.add_argument("--list", action="store_true", help="print each generator's files and command, run nothing")
    args = p.parse_args()
    unknown = sorted(set(args.names) - set(GENERATED))
    if unknown:
        p.error(f"unknown generator(s) {unknown}; choose from {sorted(GENERATED)}")
    for name in args.names or sorted(GENERATED):
        gen = GENERATED[name]
        print(f"{name}: {' '.join(gen.command)}  ->  {', '.join(gen.files)}")
        if args.list:
            continue
        done = run(gen.command)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")


if __name__ == "__main__":
    main()
