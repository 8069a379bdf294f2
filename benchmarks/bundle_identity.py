"""Load every shipped world-model bundle (policies/zoo and the packaged demo entry) through the zoo and
WorldModel.load, run three imagined steps with a fixed noise bank (reward, value, next state, termination
probability), and save the outputs or compare them bit for bit with a saved run: the check that a change to
the loaders or configs leaves every shipped bundle's predictions unchanged (issue 22).

    PYTHONPATH=. .venv/bin/python benchmarks/bundle_identity.py save /tmp/before.pt   # on the old commit
    PYTHONPATH=. .venv/bin/python benchmarks/bundle_identity.py compare /tmp/before.pt  # on the new one
"""
import sys
from pathlib import Path

import torch

from itpo_wrap import zoo
from itpo_wrap.world_model.model import WorldModel

mode, out = sys.argv[1], Path(sys.argv[2])
roots = {"zoo": Path("policies/zoo"), "demo": Path("itpo_wrap/zoo_demo")}
results: dict[str, torch.Tensor] = {}
torch.set_num_threads(1)
for tag, root in roots.items():
    for name in sorted(p.parent.name for p in root.glob("*/entry.json")):
        entry = zoo.load(name, root=root)
        for kind in entry.world_model_kinds + (["mlp"] if "diffusion" in entry.world_model_kinds else []):
            try:
                wm = entry.load_world_model(kind)
            except KeyError as err:
                print("skip", tag, name, kind, err)
                continue
            files = [entry.directory / entry.world_model_files[kind]] if kind in entry.world_model_files else []
            for f in files:  # the plain loader too
                raw = WorldModel.load(f)
                assert raw.dynamics.kind == kind
            g = torch.Generator().manual_seed(0)
            s = torch.randn(4, wm.obs_dim, generator=g) * wm.obs_std + wm.obs_mean
            bank = wm.dynamics.draw_noise(4, 3, generator=g, device=torch.device("cpu"), dtype=torch.float32)
            outs = []
            with torch.no_grad():
                for j in range(3):
                    a = (torch.rand(4, wm.act_dim, generator=g) * 2 - 1) * (wm.action_high - wm.action_low) / 2 + (wm.action_high + wm.action_low) / 2
                    outs += [wm.reward(s, a), wm.value(s, a)]
                    s = wm.next(s, a, bank[j] if wm.dynamics.num_noise else None)
                    outs += [s, wm.termination_probability(s)]
            results[f"{tag}/{name}/{kind}"] = torch.cat([o.reshape(-1) for o in outs])
if mode == "save":
    torch.save(results, out)
    print(f"saved {len(results)} bundles' outputs")
else:
    before = torch.load(out)
    assert sorted(before) == sorted(results), (sorted(before), sorted(results))
    bad = [k for k in before if not torch.equal(before[k], results[k])]
    print(f"{len(results)} bundle/kind pairs compared, {len(bad)} differ: {bad}")
    print("each:", {k: tuple(v.shape) for k, v in list(results.items())[:2]}, "...")
    sys.exit(1 if bad else 0)
