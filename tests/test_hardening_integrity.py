"""Issue 21, integrity: corrupt weights never load, no code runs from a zoo file, the zoo's SB3 bases
load from weights-only files exactly as from their zips, and a hypothesis fuzz of ``WorldModel.load``."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3 import DDPG, SAC, TD3

from itpo_lab import zoo_write
from itpo_lab.offline import (
    convert_sb3_zip,
    load_offline_policy,
    load_sb3_model,
    load_sb3_weights,
    save_sb3_weights,
)
from itpo_wrap import zoo
from itpo_wrap.formats import sb3_weights as sb3w
from itpo_wrap.integrity import stamp
from itpo_wrap.world_model.model import WorldModel
from tests.test_hardening_pairs import _toy_bundle
from tests.test_zoo import _policy

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REAL = Path(zoo.zoo_path()) / "hopper-medium-replay" / "wm_meanflow.pt"
needs_zoo = pytest.mark.skipif(not REAL.is_file(), reason="needs the checkout zoo")


def _record_offset(path: Path) -> tuple[int, int]:
    """Where the data of the largest tensor record starts in the file, and its size."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.compress_size)
    raw = path.read_bytes()
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def _corrupt(src: Path, dest: Path, how: str) -> Path:
    raw = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    if how == "4 KiB of a tensor record":
        at, size = _record_offset(src)
        size = min(size, 4096)  # 4 KiB, or all of a smaller record
        raw[at:at + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    elif how == "64 random bytes in the middle":
        at = len(raw) // 2
        raw[at:at + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    else:  # truncated
        raw = raw[: len(raw) // 2]
    dest.write_bytes(bytes(raw))
    return dest


CORRUPTIONS = ["4 KiB of a tensor record", "64 random bytes in the middle", "truncated"]


# ----------------------------------------------------------------- 5. corrupt weights
@needs_zoo
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_zoo_bundle_is_refused(how: str, tmp_path: Path) -> None:
    # a shipped bundle predates digests: the zip's own CRCs catch it (torch never checks them)
    bad = _corrupt(REAL, tmp_path / "wm.pt", how)
    with pytest.raises(ValueError, match=r"corrupt|not a readable|damaged"):
        WorldModel.load(bad)
    assert WorldModel.load(REAL) is not None


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_offline_checkpoint_and_sb3_weights_are_refused(how: str, tmp_path: Path) -> None:
    good = _policy(tmp_path / "p.pt", "td3_bc")
    with pytest.raises(ValueError, match=r"corrupt|not a readable|damaged"):
        load_offline_policy(_corrupt(good, tmp_path / "bad.pt", how))
    weights = save_sb3_weights(SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [64]}, device="cpu"),
                               tmp_path / "sac.pt")
    with pytest.raises(ValueError, match=r"corrupt|not a readable|damaged"):
        load_sb3_weights(_corrupt(weights, tmp_path / "bad_sac.pt", how))


def test_digest_catches_a_payload_changed_and_rezipped(tmp_path: Path) -> None:
    path = _toy_bundle(tmp_path / "wm.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["digest"]["algorithm"] == "sha256"
    payload["reward"]["state_dict"]["net.0.weight"][0, 0] += 1.0  # fresh CRCs, old digest
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"corrupt: digest mismatch in '.*edited.pt'"):
        WorldModel.load(tmp_path / "edited.pt")
    torch.save(stamp(payload), tmp_path / "restamped.pt")  # a deliberate re-save loads (the digest is not a signature)
    assert WorldModel.load(tmp_path / "restamped.pt").reward_head.net[0].weight[0, 0] == payload["reward"][
        "state_dict"]["net.0.weight"][0, 0]


# ----------------------------------------------------------------- 6. no code runs from a zoo file
class _Marker:
    """Unpickling this creates the file ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _evil_zip(tmp: Path, marker: Path) -> Path:
    """An SB3 zip whose ``data`` JSON carries a ``:serialized:`` pickle (issue 21, failure 6)."""
    path = tmp / "evil.zip"
    SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, device="cpu").save(path)
    with zipfile.ZipFile(path) as z:
        records = {n: z.read(n) for n in z.namelist()}
    data = json.loads(records["data"])
    data["itpo_marker"] = {":type:": "<class 'str'>",
                        ":serialized:": base64.b64encode(pickle.dumps(_Marker(marker))).decode()}
    records["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in records.items():
            z.writestr(name, raw)
    return path


def _entry_with(root: Path, file: str, kind: str = "sb3") -> None:
    folder = root / "pendulum-medium"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "entry.json").write_text(json.dumps({
        "format": "itpo-zoo-entry", "format_version": 1, "name": "pendulum-medium",
        "dataset_id": "itpo/pendulum/medium-v0", "env_id": "Pendulum-v1", "default_policy": "sac_medium",
        "world_model": None, "policies": {"sac_medium": {"file": file, "kind": kind}},
        "world_models": {"meanflow": {"file": file}}}))


def test_zoo_never_loads_an_sb3_zip(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = tmp_path / "zoo"
    _entry_with(root, "sac_medium.zip")
    shutil.copyfile(_evil_zip(tmp_path, marker), root / "pendulum-medium" / "sac_medium.zip")
    with pytest.raises(ValueError, match=r"SB3 \.zip .* a pickle that runs code when loaded, so the zoo refuses it; "
                                         r"convert it .*convert_sb3_zip"):
        zoo.load("pendulum-medium", policy="sac_medium", root=root)
    assert not marker.exists()


@pytest.mark.parametrize("file", ["../../outside.zip", "/etc/passwd", "sub/../../x.pt", "link.pt", ""])
def test_zoo_opens_only_files_inside_the_entry(file: str, tmp_path: Path) -> None:
    root = tmp_path / "zoo"
    _entry_with(root, file, kind="offline")
    (tmp_path / "outside.pt").write_bytes(_policy(tmp_path / "p.pt", "td3_bc").read_bytes())
    (root / "pendulum-medium" / "link.pt").symlink_to(tmp_path / "outside.pt")
    with pytest.raises(ValueError, match="outside the entry folder|expected a file name inside"):
        zoo.load("pendulum-medium", root=root)
    with pytest.raises(ValueError, match="outside the entry folder|expected a file name inside"):
        zoo_write.export_entry("pendulum-medium", tmp_path / "out", policies=["sac_medium"], world_models=[], root=root)


def test_entry_names_cannot_leave_the_zoo(tmp_path: Path) -> None:
    for name in ("../pendulum-medium", "a/b", "..", "/etc"):
        with pytest.raises(ValueError, match="not a plain folder name"):
            zoo.load(name, root=tmp_path)


def test_pickled_pt_payloads_are_refused_without_suggesting_weights_only_false(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"library": "itpo-wrap", "x": _Marker(marker)}, path)
    for load in (WorldModel.load, load_offline_policy, load_sb3_weights):
        with pytest.raises(ValueError, match=r"refused: .* holds pickled Python objects besides tensors "
                                             r"\(.*Unsupported global: GLOBAL io.open.*\)") as err:
            load(path)
        assert "weights_only=False" not in str(err.value)
    assert not marker.exists()


def test_user_sb3_zip_says_once_that_it_is_a_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sb3w._WARNED, "zip", False)
    marker = tmp_path / "ran"
    path = _evil_zip(tmp_path, marker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            load_sb3_model(path)
    said = [w for w in caught if "is a pickle and runs the code it carries" in str(w.message)]
    assert len(said) == 1 and "trust like code" in str(said[0].message)
    assert marker.exists()  # a user's zip is trusted code, as the warning says


# ----------------------------------------------------------------- SB3 bases: weights-only, same actions
SOURCES = [(zoo.zoo_path(), "hopper-medium", "hopper"), (zoo.zoo_path(), "walker2d-medium", "walker2d"),
           (zoo.zoo_path(), "halfcheetah-medium", "halfcheetah"), (zoo.PACKAGED_ZOO, "hopper-medium", "hopper")]


@pytest.mark.parametrize(("root", "name", "env"), SOURCES, ids=[f"{Path(r).name}/{n}" for r, n, _ in SOURCES])
def test_converted_zoo_sb3_base_acts_exactly_as_its_zip(root: Path, name: str, env: str) -> None:
    src = Path(__file__).resolve().parents[1] / "policies" / "behavior" / env / "medium.zip"
    if name not in zoo.list(root) or not src.is_file():
        pytest.skip("needs the checkout zoo and policies/behavior")
    converted = zoo.load(name, policy="sac_medium", root=root).policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = SAC.load(src, device="cpu")
    ours, theirs = converted.policy.state_dict(), original.policy.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    obs = np.random.default_rng(0).normal(size=(32, *original.observation_space.shape))
    assert np.array_equal(converted.predict(obs, deterministic=True)[0], original.predict(obs, deterministic=True)[0])
    torch.manual_seed(1)
    sampled = converted.predict(obs, deterministic=False)[0]
    torch.manual_seed(1)
    assert np.array_equal(sampled, original.predict(obs, deterministic=False)[0])


@pytest.mark.parametrize("cls", [SAC, TD3, DDPG])
def test_sb3_weights_round_trip(cls: type, tmp_path: Path) -> None:
    kwargs = {"net_arch": [16, 8], "activation_fn": torch.nn.Tanh}
    model = cls("MlpPolicy", "Pendulum-v1", policy_kwargs=kwargs, device="cpu")
    model.save(tmp_path / "m.zip")
    direct = load_sb3_weights(save_sb3_weights(model, tmp_path / "direct.pt", env_id="Pendulum-v1"))
    # from the zip, SB3's loader reads a DDPG as the TD3 it specialises (same policy class, same actions)
    via_zip = load_sb3_weights(convert_sb3_zip(tmp_path / "m.zip", tmp_path / "m.pt", env_id="Pendulum-v1"))
    assert type(direct) is cls and isinstance(via_zip, TD3 if cls is DDPG else cls)
    assert direct.itpo_sb3_architecture["env_id"] == "Pendulum-v1"
    obs = np.random.default_rng(0).normal(size=(8, 3))
    for back in (direct, via_zip):
        assert np.array_equal(back.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format"] == "itpo-sb3-weights"


def test_sb3_weights_refuse_custom_classes(tmp_path: Path) -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.Hardswish},
                device="cpu")
    with pytest.raises(ValueError, match=r"policy_kwargs\['activation_fn'\] holds the class .*Hardswish"):
        save_sb3_weights(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


# ----------------------------------------------------------------- fuzz of WorldModel.load
_BUNDLE: dict[str, Any] = {}


def _original(tmp: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    if not _BUNDLE:
        path = _toy_bundle(tmp / "fuzz_source.pt")
        _BUNDLE.update(raw=path.read_bytes(), state=WorldModel.load(path).state_dict())
    path = tmp / "fuzz.pt"
    path.write_bytes(_BUNDLE["raw"])
    return path, _BUNDLE["state"]


_MUTATION = st.tuples(st.sampled_from(["overwrite", "flip", "truncate", "insert"]), st.floats(0, 1),
                      st.binary(min_size=1, max_size=64), st.integers(0, 7))


@FUZZ
@given(mutation=_MUTATION)
def test_fuzz_load_of_damaged_bytes_refuses_or_loads_the_original(mutation: tuple[str, float, bytes, int],
                                                                   tmp_path: Path) -> None:
    path, state = _original(tmp_path)
    how, where, data, bit = mutation
    raw = bytearray(path.read_bytes())
    at = int(where * (len(raw) - 1))
    if how == "overwrite":
        raw[at:at + len(data)] = data
    elif how == "flip":
        raw[at] ^= 1 << bit
    elif how == "truncate":
        raw = raw[:at]
    else:
        raw[at:at] = data
    path.write_bytes(bytes(raw))
    try:
        wm = WorldModel.load(path)
    except ValueError:
        return
    loaded = wm.state_dict()  # whatever loads is the original, bit for bit
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


_LEAVES = ["obs_dim", "act_dim", "env_id", "action_low", "dynamics", "dynamics/kind", "dynamics/config",
           "dynamics/config/num_inference_steps", "dynamics/state_dict", "reward/arch", "reward/arch/hidden",
           "termination", "normalizers", "normalizers/obs", "info", "format", "library", "critic"]
_VALUES = st.one_of(st.none(), st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=8),
                    st.lists(st.integers(-2, 8), max_size=3), st.just({}), st.just(torch.zeros(2)),
                    st.sampled_from(["diffusion", "mlp", "meanflow"]), st.just({"time_mean": 1.0}))


@FUZZ
@given(leaf=st.sampled_from(_LEAVES), value=_VALUES, delete=st.booleans(), restamp=st.booleans())
def test_fuzz_load_of_edited_payloads_refuses_with_a_value_error(leaf: str, value: Any, delete: bool, restamp: bool,
                                                                 tmp_path: Path) -> None:
    path, _ = _original(tmp_path)
    payload = torch.load(path, weights_only=True)
    *parents, key = leaf.split("/")
    node = payload
    for part in parents:
        node = node[part]
    if delete:
        node.pop(key, None)
    else:
        node[key] = value
    torch.save(stamp(payload) if restamp else payload, path)
    try:
        WorldModel.load(path)  # a consistent edit (re-stamped) may load; anything else is a clear ValueError
    except ValueError as err:
        if not restamp:
            assert "digest mismatch" in str(err)
