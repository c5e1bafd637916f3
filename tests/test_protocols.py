"""Evaluation protocols: sampler bit-exactness, orders, options, and the official SYSU-MM01 split files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from tests.layouts import make_sysu, sysu_name
from vireid.data.protocols import (
    LlcmProtocol,
    ManifestProtocol,
    RegdbProtocol,
    SysuProtocol,
    protocol_from_config,
    sample_gallery_community,
    sample_gallery_official,
)
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.data.sysu import SYSUMM01
from vireid.errors import DatasetError

OFFICIAL = Path("/work/shared/data/sysu-mm01-official")


@pytest.fixture(autouse=True)
def _keep_global_random_state():
    # The reference implementations below use the module-level generator, as the community code does.
    state = random.getstate()
    yield
    random.setstate(state)


def reference_sysu_gallery(
    data_path: str, mode: str, trial: int, shots: int, test_ids: list[int]
) -> list[str]:
    """Straightforward re-implementation of the community code's gallery builder (module-level random)."""
    random.seed(trial)
    rgb_cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    ids = sorted(f"{x:04d}" for x in test_ids)
    files_rgb = []
    for pid in ids:
        for cam in rgb_cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if shots == 1:
                    files_rgb.append(random.choice(new_files))
                else:
                    files_rgb.extend(random.sample(new_files, 10))
    return files_rgb


def reference_sysu_query(data_path: str, test_ids: list[int]) -> list[str]:
    files_ir = []
    for pid in sorted(f"{x:04d}" for x in test_ids):
        for cam in ["cam3", "cam6"]:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files_ir.extend(sorted([img_dir + "/" + i for i in os.listdir(img_dir)]))
    return files_ir


# -- the generator itself ----------------------------------------------------------------------------
@pytest.mark.parametrize("trial", range(10))
def test_local_random_matches_module_level_seed(trial):
    items = [f"{i:04d}.jpg" for i in range(37)]
    rng = random.Random(trial)
    random.seed(trial)
    for n in (1, 5, 13, 37, 2):
        assert rng.choice(items[:n]) == random.choice(items[:n])
    assert rng.sample(items, 10) == random.sample(items, 10)


def _groups(counts: dict[tuple[int, int], int]) -> dict[tuple[int, int], list[ImageRecord]]:
    out = {}
    for (cam, pid), n in counts.items():
        mod = INFRARED if cam in (3, 6) else VISIBLE
        out[(cam, pid)] = [
            ImageRecord(Path(f"/d/cam{cam}/{pid:04d}/{sysu_name(j)}"), pid, cam, mod) for j in range(1, n + 1)
        ]
    return out


def test_community_sampler_draws_in_id_then_camera_order_and_skips_missing_groups():
    counts = {(1, 7): 5, (2, 7): 3, (5, 7): 4, (1, 3): 6, (4, 3): 2}
    groups = _groups(counts)
    got = sample_gallery_community(groups, [7, 3], (1, 2, 4, 5), trial=4, shots=1)
    # hand-built expectation: one generator, (3,1) (3,4) (7,1) (7,2) (7,5); (3,2) (3,5) (7,4) draw nothing
    rng = random.Random(4)
    expected = [rng.choice(groups[key]) for key in [(1, 3), (4, 3), (1, 7), (2, 7), (5, 7)]]
    assert got == expected
    assert [(r.pid, r.camera) for r in got] == [(3, 1), (3, 4), (7, 1), (7, 2), (7, 5)]


def test_community_multishot_with_fewer_files_than_shots_takes_all_in_sample_order():
    groups = _groups({(1, 1): 12, (2, 1): 4})
    got = sample_gallery_community(groups, [1], (1, 2), trial=2, shots=10)
    random.seed(2)
    expected = random.sample(list(groups[(1, 1)]), 10) + random.sample(list(groups[(2, 1)]), 4)
    assert got == expected
    assert len(got) == 14 and len(set(got)) == 14


def test_official_sampler_takes_first_k_of_row_t():
    groups = _groups({(1, 2): 4, (2, 2): 3, (1, 9): 2})
    perms = {
        (1, 2): np.array([[3, 1, 4, 2]] * 5 + [[2, 4, 1, 3]] * 5),
        (2, 2): np.array([[2, 3, 1]] * 10),
        (1, 9): np.array([[2, 1]] * 3 + [[1, 2]] * 7),
    }
    got = sample_gallery_official(groups, [9, 2], (1, 2), perms, trial=6, shots=1)
    assert [r.path.name for r in got] == ["0002.jpg", "0002.jpg", "0001.jpg"]
    assert [(r.pid, r.camera) for r in got] == [(2, 1), (2, 2), (9, 1)]
    got = sample_gallery_official(groups, [2, 9], (1, 2), perms, trial=0, shots=10)
    names = [(r.camera, r.pid, r.path.name) for r in got]
    assert names == [
        (1, 2, "0003.jpg"), (1, 2, "0001.jpg"), (1, 2, "0004.jpg"), (1, 2, "0002.jpg"),
        (2, 2, "0002.jpg"), (2, 2, "0003.jpg"), (2, 2, "0001.jpg"),
        (1, 9, "0002.jpg"), (1, 9, "0001.jpg"),
    ]  # fmt: skip


# -- SysuProtocol on a real folder, against the reference code ----------------------------------------
MULTI_COUNTS = {
    (1, 4): 12, (2, 4): 10, (5, 4): 15, (3, 4): 4, (6, 4): 2,
    (1, 5): 11, (4, 5): 13, (2, 5): 10, (3, 5): 3,
    (2, 6): 14, (4, 6): 10, (5, 6): 12, (6, 6): 5,
    (1, 1): 1, (3, 2): 1, (6, 3): 1,
}  # fmt: skip


@pytest.fixture(scope="module")
def sysu_multi(tmp_path_factory):
    return make_sysu(
        tmp_path_factory.mktemp("sysu_multi"), MULTI_COUNTS, {"train": [1, 2], "val": [3], "test": [6, 4, 5]}
    )


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("shots", [1, 10])
def test_sysu_community_gallery_is_bit_identical_to_reference(sysu_multi, mode, shots):
    protocol = SYSUMM01(sysu_multi).protocol(mode=mode, shots=shots, sampler="community")
    for trial in range(10):
        expected = reference_sysu_gallery(str(sysu_multi.resolve()), mode, trial, shots, [6, 4, 5])
        assert [str(r.path) for r in protocol.gallery(trial)] == expected


def test_sysu_query_is_reference_order_for_every_trial(sysu_multi):
    protocol = SYSUMM01(sysu_multi).protocol(mode="indoor")
    expected = reference_sysu_query(str(sysu_multi.resolve()), [6, 4, 5])
    assert len(expected) == 4 + 2 + 3 + 5
    for trial in (0, 9):
        assert [str(r.path) for r in protocol.query(trial)] == expected
    assert all(r.modality == INFRARED and r.camera in (3, 6) for r in protocol.query(0))


def test_sysu_protocol_options_and_trials(sysu_multi):
    ds = SYSUMM01(sysu_multi)
    with pytest.raises(ValueError, match="mode"):
        ds.protocol(mode="outdoor")
    with pytest.raises(ValueError, match="shots"):
        ds.protocol(shots=5)
    with pytest.raises(ValueError, match="sampler"):
        ds.protocol(sampler="numpy")
    with pytest.raises(ValueError, match="perm_file"):
        ds.protocol(perm_file="x.mat")
    protocol = ds.protocol()
    assert protocol.metric == "sysu" and protocol.trials == tuple(range(10))
    with pytest.raises(ValueError, match="trial 10"):
        protocol.gallery(10)
    assert protocol.describe() == {
        "dataset": "sysu",
        "metric": "sysu",
        "mode": "all",
        "shots": 1,
        "sampler": "community",
    }


def test_sysu_official_sampler_missing_perm_file_names_path(sysu_multi, tmp_path):
    ds = SYSUMM01(sysu_multi)
    with pytest.raises(DatasetError) as err:
        ds.protocol(sampler="official")
    assert str(sysu_multi.resolve() / "exp" / "rand_perm_cam.mat") in str(err.value)
    with pytest.raises(DatasetError, match="nothing.mat"):
        ds.protocol(sampler="official", perm_file=tmp_path / "nothing.mat")


def _write_perm_mat(path: Path, perms: dict[tuple[int, int], np.ndarray], n_ids: int) -> None:
    import scipy.io

    cells = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        per_id = np.empty((n_ids, 1), dtype=object)
        for pid in range(1, n_ids + 1):
            per_id[pid - 1, 0] = perms.get((cam, pid), np.zeros((10, 0), dtype=np.uint8))
        cells[cam - 1, 0] = per_id
    scipy.io.savemat(str(path), {"rand_perm_cam": cells})


def test_sysu_official_sampler_with_written_mat_and_count_mismatch(tmp_path):
    test_counts = {(1, 2): 3, (2, 2): 2, (3, 2): 1, (4, 3): 4, (6, 3): 2}
    root = make_sysu(
        tmp_path / "s", test_counts | {(1, 1): 1, (3, 4): 1}, {"train": [1], "val": [4], "test": [2, 3]}
    )
    rng = np.random.default_rng(0)
    perms = {key: np.stack([rng.permutation(n) + 1 for _ in range(10)]) for key, n in test_counts.items()}
    _write_perm_mat(root / "exp" / "rand_perm_cam.mat", perms, 3)
    ds = SYSUMM01(root)
    protocol = ds.protocol(sampler="official")
    assert protocol.describe()["perm_file"] == str(root.resolve() / "exp" / "rand_perm_cam.mat")
    for t in range(10):
        expected = [
            f"cam{c}/{p:04d}/{sysu_name(int(perms[(c, p)][t][0]))}"
            for p in (2, 3)
            for c in (1, 2, 4, 5)
            if (c, p) in perms
        ]
        assert [ds.relpath(r) for r in protocol.gallery(t)] == expected
    # one more file on disk than the permutation knows
    (root / "cam4" / "0003" / "0005.jpg").touch()
    ds = SYSUMM01(root)
    with pytest.raises(DatasetError) as err:
        ds.protocol(sampler="official")
    msg = str(err.value)
    assert "camera 4" in msg and "person 3" in msg and "4 images" in msg and "holds 5" in msg
    assert "rand_perm_cam.mat" in msg
    # indoor mode does not look at camera 4
    assert len(ds.protocol(sampler="official", mode="indoor").gallery(0)) == 2


# -- the authors' split files -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official(tmp_path_factory):
    if not (OFFICIAL / "rand_perm_cam.mat").is_file() or not (OFFICIAL / "test_id.mat").is_file():
        pytest.skip(f"the SYSU-MM01 official split files are not in {OFFICIAL}")
    import scipy.io

    cells = scipy.io.loadmat(str(OFFICIAL / "rand_perm_cam.mat"))["rand_perm_cam"]
    test_ids = [int(i) for i in scipy.io.loadmat(str(OFFICIAL / "test_id.mat"))["id"].ravel()]
    train_ids = [int(i) for i in scipy.io.loadmat(str(OFFICIAL / "train_id.mat"))["id"].ravel()]

    def perm(cam: int, pid: int) -> np.ndarray:
        per_id = cells[cam - 1, 0]
        return per_id[pid - 1, 0].astype(int) if pid <= per_id.shape[0] else np.zeros((10, 0), int)

    root = tmp_path_factory.mktemp("sysu_official")
    counts = {(c, p): perm(c, p).shape[1] for c in range(1, 7) for p in test_ids if perm(c, p).shape[1] > 0}
    counts[(1, train_ids[0])] = 1
    counts[(3, train_ids[1])] = 1
    make_sysu(root, counts, {"train": train_ids[:1], "val": train_ids[1:2], "test": test_ids})
    return root, perm, test_ids


def test_official_query_and_gallery_counts(official):
    root, perm, test_ids = official
    assert len(test_ids) == 96
    ds = SYSUMM01(root)
    n = {(c, p): perm(c, p).shape[1] for c in range(1, 7) for p in test_ids}
    expected_query = sum(n[(c, p)] for p in test_ids for c in (3, 6))
    assert expected_query == 3803  # protocols.md
    for mode, cams in (("all", (1, 2, 4, 5)), ("indoor", (1, 2))):
        single = sum(1 for p in test_ids for c in cams if n[(c, p)] > 0)
        multi = sum(min(10, n[(c, p)]) for p in test_ids for c in cams)
        if mode == "all":
            assert single == 301  # protocols.md
        for sampler in ("official", "community"):
            kwargs = {"perm_file": OFFICIAL / "rand_perm_cam.mat"} if sampler == "official" else {}
            p1 = ds.protocol(mode=mode, shots=1, sampler=sampler, **kwargs)
            p10 = ds.protocol(mode=mode, shots=10, sampler=sampler, **kwargs)
            assert len(p1.query(0)) == expected_query
            for t in (0, 9):
                assert len(p1.gallery(t)) == single
                assert len(p10.gallery(t)) == multi
                assert len(set(p10.gallery(t))) == multi


def test_official_sampler_picks_indexed_files(official):
    root, perm, test_ids = official
    ds = SYSUMM01(root)
    for shots in (1, 10):
        protocol = ds.protocol(shots=shots, sampler="official", perm_file=OFFICIAL / "rand_perm_cam.mat")
        for t in range(10):
            expected = [
                f"cam{c}/{p:04d}/{int(i):04d}.jpg"
                for p in sorted(test_ids)
                for c in (1, 2, 4, 5)
                for i in perm(c, p)[t, :shots]
            ]
            assert [ds.relpath(r) for r in protocol.gallery(t)] == expected


# -- RegDB, LLCM, manifest protocol objects -----------------------------------------------------------
def _rec(name: str, pid: int, cam: int, mod: str) -> ImageRecord:
    return ImageRecord(Path("/x") / name, pid, cam, mod)


def test_regdb_protocol_directions_use_the_trial_split():
    calls = []

    def split(trial):
        calls.append(trial)
        return [_rec(f"v{trial}", 1, 1, VISIBLE)], [_rec(f"t{trial}", 1, 2, INFRARED)]

    v2i = RegdbProtocol(test_split=split, direction="visible_to_infrared")
    i2v = RegdbProtocol(test_split=split, direction="infrared_to_visible")
    assert v2i.trials == tuple(range(1, 11)) and v2i.metric == "regdb"
    assert [r.path.name for r in v2i.query(3)] == ["v3"] and [r.path.name for r in v2i.gallery(3)] == ["t3"]
    assert [r.path.name for r in i2v.query(7)] == ["t7"] and [r.path.name for r in i2v.gallery(7)] == ["v7"]
    with pytest.raises(ValueError, match="trial 0"):
        v2i.query(0)
    with pytest.raises(ValueError, match="direction"):
        RegdbProtocol(test_split=split, direction="rgb2ir")
    assert calls == [3, 3, 7, 7]


def test_llcm_protocol_gallery_one_per_id_camera_reference_order():
    images = {}
    counts = {
        (VISIBLE, 1, 5): 3,
        (VISIBLE, 9, 5): 2,
        (VISIBLE, 4, 2): 4,
        (INFRARED, 2, 5): 2,
        (INFRARED, 1, 2): 3,
    }
    for (mod, cam, pid), n in counts.items():
        images[(mod, cam, pid)] = [_rec(f"{mod}{cam}_{pid}_{j}.jpg", pid, cam, mod) for j in range(n)]
    cams = {VISIBLE: (9, 1, 4), INFRARED: (1, 2)}
    i2v = LlcmProtocol(images=images, test_ids=[5, 2], cameras=cams, direction="infrared_to_visible")
    assert [r.path.name for r in i2v.query(0)] == ["infrared1_2_0.jpg", "infrared1_2_1.jpg", "infrared1_2_2.jpg",
                                                   "infrared2_5_0.jpg", "infrared2_5_1.jpg"]  # fmt: skip
    for t in range(10):
        random.seed(t)
        expected = [random.choice(images[key]) for key in [(VISIBLE, 4, 2), (VISIBLE, 1, 5), (VISIBLE, 9, 5)]]
        assert i2v.gallery(t) == expected
    v2i = LlcmProtocol(images=images, test_ids=[5, 2], cameras=cams)
    assert {(r.pid, r.camera) for r in v2i.gallery(1)} == {(2, 1), (5, 2)}
    assert v2i.metric == "llcm" and v2i.describe()["direction"] == "visible_to_infrared"


def test_manifest_protocol_metric_choice():
    q, g = [_rec("q", 1, 1, INFRARED)], [_rec("g", 1, 2, VISIBLE)]
    assert ManifestProtocol(query=q, gallery=g).metric == "llcm"
    p = ManifestProtocol(query=q, gallery=g, metric="regdb")
    assert p.metric == "regdb" and p.trials == (0,) and p.query(0) == q and p.gallery(0) == g
    with pytest.raises(ValueError, match="llcm"):
        ManifestProtocol(query=q, gallery=g, metric="sysu")


def test_protocol_from_config_passes_only_accepted_keys(sysu_multi, tmp_path):
    from omegaconf import OmegaConf

    from tests.layouts import make_regdb
    from vireid.config.defaults import VireidConfig
    from vireid.data.regdb import RegDB

    cfg = OmegaConf.structured(VireidConfig)
    cfg.test.mode = "indoor"
    cfg.test.shots = 10
    cfg.test.direction = "infrared_to_visible"
    sysu = protocol_from_config(SYSUMM01(sysu_multi), cfg)
    assert isinstance(sysu, SysuProtocol) and (sysu.mode, sysu.shots, sysu.sampler) == (
        "indoor",
        10,
        "community",
    )
    regdb = protocol_from_config(RegDB(make_regdb(tmp_path / "r")), cfg)
    assert regdb.direction == "infrared_to_visible"
