"""Store a zoo's SB3 bases as weights-only files inside their entries (issue 21).

An SB3 ``.zip`` is a pickle that runs code when loaded, and the zoo now refuses to open one (or any
file outside an entry's folder). This script converts every ``kind: "sb3"`` policy of a zoo whose
file is a ``.zip`` (possibly shared from outside the entry, as ``../../behavior/<env>/medium.zip``)
into ``<entry>/<policy>.pt`` with :func:`itpo_lab.offline.sb3_weights.convert_sb3_zip` (a state dict plus JSON
architecture, read with ``weights_only=True``), through :func:`itpo_wrap.zoo_write.add_policy`, which keeps
every other recorded fact and regenerates the model card. The zips are loaded once, here: run it only
on zips you trust (ours, from ``policies/sac_behavior.py``). The actions are unchanged, bit for bit
(``tests/test_hardening_integrity.py`` compares them).

Usage::

    python policies/convert_sb3_bases.py --zoo-dir policies/zoo
    python policies/convert_sb3_bases.py --zoo-dir itpo_wrap/zoo_demo --remove-zips
"""

from __future__ import annotations

import argparse
from pathlib import Path

from itpo_lab import zoo_write
from itpo_wrap import zoo


def convert_zoo(zoo_dir: Path, remove_zips: bool = False) -> list[tuple[str, str, Path]]:
    """Convert every SB3 ``.zip`` base of the zoo at ``zoo_dir``.

    :param zoo_dir: the zoo root.
    :param remove_zips: delete a converted zip that lay inside its entry folder (shared ones are left).
    :return: ``(entry, policy, source zip)`` for each conversion.
    """
    done = []
    for name in zoo.list(zoo_dir):
        entry = zoo.read_entry(name, zoo_dir)
        for key, spec in list(entry["policies"].items()):
            if spec.get("kind") != "sb3" or not str(spec.get("file", "")).endswith(".zip"):
                continue
            src = (zoo_dir / name / spec["file"]).resolve()  # our own zoo: the old relative paths are trusted here
            info = {k: v for k, v in spec.items() if k not in ("file", "kind")}
            zoo_write.add_policy(name, key, src, kind="sb3", dataset_id=entry["dataset_id"], env_id=entry["env_id"],
                           info=info, root=zoo_dir)
            if remove_zips and src.parent == (zoo_dir / name).resolve():
                src.unlink()
            done.append((name, key, src))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo-dir", default="policies/zoo", help="the zoo root")
    parser.add_argument("--remove-zips", action="store_true", help="delete converted zips inside their entries")
    args = parser.parse_args()
    for name, key, src in convert_zoo(Path(args.zoo_dir), args.remove_zips):
        print(f"{name}/{key}: {src} -> {Path(args.zoo_dir) / name / (key + '.pt')}")


if __name__ == "__main__":
    main()
