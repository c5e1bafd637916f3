"""Dataset readers on tiny hand-made layouts: records, protocols, every malformed-input error, the registry."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.layouts import (
    LLCM_TEST_COUNTS,
    LLCM_TRAIN,
    MANIFEST_ROWS,
    SYSU_COUNTS,
    make_llcm,
    make_manifest,
    make_regdb,
    make_sysu,
    regdb_rel,
)
from vireid.data import registry
from vireid.data.base import EvalProtocol, VIReIDDataset
from vireid.data.llcm import LLCM
from vireid.data.manifest import ManifestDataset
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.data.regdb import RegDB
from vireid.data.summary import SummaryRow, format_summary, summarize
from vireid.data.sysu import SYSUMM01
from vireid.errors import DatasetError


@pytest.fixture(autouse=True)
def _keep_global_random_state():
    state = random.getstate()
    yield
    random.setstate(state)


def raises_at(path: Path, line: int | None = None, match: str = ""):
    """Context manager: a DatasetError whose message starts with ``path:line:`` and contains ``match``."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(DatasetError)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            ok = self._ctx.__exit__(*exc)
            msg = str(self.info.value)
            where = f"{path}:{line}: " if line is not None else f"{path}: "
            assert msg.startswith(where), f"{msg!r} does not start with {where!r}"
            assert match in msg, f"{match!r} not in {msg!r}"
            return ok

    return _Check()


# == SYSU-MM01 ==========================================================================================
@pytest.fixture
def sysu(tmp_path):
    return make_sysu(tmp_path / "SYSU-MM01")


def test_sysu_records(sysu):
    ds = SYSUMM01(sysu)
    train = ds.train_records()
    expected = [
        (cam, pid, f"{j:04d}.jpg")
        for pid in (1, 2, 3)
        for cam in range(1, 7)
        for j in range(1, SYSU_COUNTS.get((cam, pid), 0) + 1)
    ]
    assert [(r.camera, r.pid, r.path.name) for r in train] == expected
    assert all(r.path.is_absolute() and r.path.is_file() for r in train)
    assert all(r.modality == (INFRARED if r.camera in (3, 6) else VISIBLE) for r in train)
    assert train[0] == ImageRecord(sysu.resolve() / "cam1" / "0001" / "0001.jpg", 1, 1, VISIBLE)
    assert len(ds.all_records()) == sum(SYSU_COUNTS.values())
    assert {r.pid for r in ds.test_records()} == {4, 5, 6}


def test_sysu_query_and_gallery(sysu):
    protocol = SYSUMM01(sysu).protocol()
    ds = SYSUMM01(sysu)
    query = [ds.relpath(r) for r in protocol.query(0)]
    assert query == [
        "cam3/0004/0001.jpg", "cam3/0004/0002.jpg", "cam6/0004/0001.jpg",
        "cam3/0005/0001.jpg", "cam3/0005/0002.jpg", "cam3/0005/0003.jpg",
        "cam6/0006/0001.jpg", "cam6/0006/0002.jpg",
    ]  # fmt: skip
    groups = [(r.pid, r.camera) for r in protocol.gallery(5)]
    assert groups == [(4, 1), (4, 2), (4, 5), (5, 1), (5, 2), (5, 4), (5, 5), (6, 1), (6, 4)]
    indoor = SYSUMM01(sysu).protocol(mode="indoor")
    assert [(r.pid, r.camera) for r in indoor.gallery(5)] == [(4, 1), (4, 2), (5, 1), (5, 2), (6, 1)]


def test_sysu_summary(sysu):
    rows = summarize(SYSUMM01(sysu))
    assert rows == [
        SummaryRow("train", VISIBLE, 1, 1, 2), SummaryRow("train", VISIBLE, 2, 1, 1),
        SummaryRow("train", VISIBLE, 4, 1, 2), SummaryRow("train", INFRARED, 3, 2, 3),
        SummaryRow("train", INFRARED, 6, 1, 3), SummaryRow("train", "all", None, 3, 11),
        SummaryRow("query", INFRARED, 3, 2, 5), SummaryRow("query", INFRARED, 6, 2, 3),
        SummaryRow("query", "all", None, 3, 8),
        SummaryRow("gallery", VISIBLE, 1, 3, 3), SummaryRow("gallery", VISIBLE, 2, 2, 2),
        SummaryRow("gallery", VISIBLE, 4, 2, 2), SummaryRow("gallery", VISIBLE, 5, 2, 2),
        SummaryRow("gallery", "all", None, 3, 9),
    ]  # fmt: skip


def test_format_summary_layout():
    rows = [SummaryRow("train", VISIBLE, 1, 12, 340), SummaryRow("train", "all", None, 12, 340)]
    assert format_summary(rows, title="T") == (
        "T\n"
        "split  modality  camera  identities  images\n"
        "train  visible   1               12     340\n"
        "train  all       -               12     340"
    )


def test_sysu_missing_split_file(sysu):
    (sysu / "exp" / "test_id.txt").unlink()
    with raises_at(sysu / "exp" / "test_id.txt", match="missing"):
        SYSUMM01(sysu)


def test_sysu_missing_exp_folder(sysu):
    shutil.rmtree(sysu / "exp")
    with raises_at(sysu.resolve() / "exp", match="test_id.txt"):
        SYSUMM01(sysu)


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("4,x5,6\n", 1, "'x5'"),
        ("4,5\n6,-7\n", 2, "'-7'"),
        ("4,,5\n", 1, "''"),
        ("4,5,4\n", 1, "listed twice"),
        ("\n\n", None, "found none"),
    ],
)
def test_sysu_bad_id_list(sysu, text, line, match):
    (sysu / "exp" / "test_id.txt").write_text(text)
    with raises_at(sysu.resolve() / "exp" / "test_id.txt", line, match):
        SYSUMM01(sysu)


def test_sysu_id_list_allows_trailing_comma_and_spaces(sysu):
    (sysu / "exp" / "test_id.txt").write_text(" 6, 4 ,5,\n")
    assert SYSUMM01(sysu).test_ids == [6, 4, 5]


def test_sysu_missing_camera_folder(sysu):
    shutil.rmtree(sysu / "cam5")
    with raises_at(sysu.resolve() / "cam5", match="cam5"):
        SYSUMM01(sysu)


def test_sysu_bad_id_folder(sysu):
    (sysu / "cam2" / "12").mkdir()
    with raises_at(sysu.resolve() / "cam2" / "12", match="4-digit"):
        SYSUMM01(sysu)


def test_sysu_listed_id_without_images(sysu):
    (sysu / "exp" / "val_id.txt").write_text("3,9\n")
    with raises_at(sysu.resolve() / "exp" / "val_id.txt", match="[9]"):
        SYSUMM01(sysu)


def test_sysu_train_test_overlap(sysu):
    (sysu / "exp" / "train_id.txt").write_text("1,2,5\n")
    with raises_at(sysu.resolve() / "exp" / "test_id.txt", match="[5]"):
        SYSUMM01(sysu)


def test_sysu_ignores_non_image_files(sysu):
    (sysu / "cam1" / "0004" / "Thumbs.db").write_bytes(b"x")
    (sysu / "cam1" / "0004" / ".DS_Store").write_bytes(b"x")
    assert len(SYSUMM01(sysu).images[(1, 4)]) == 3


def test_root_must_be_a_folder(tmp_path):
    with raises_at(tmp_path.resolve() / "nope", match="not a folder"):
        SYSUMM01(tmp_path / "nope")


# == RegDB ==============================================================================================
@pytest.fixture
def regdb(tmp_path):
    return make_regdb(tmp_path / "RegDB")


def test_regdb_train_records(regdb):
    ds = RegDB(regdb)
    recs = ds.train_records(1)
    expected = [(regdb_rel(m, p, j), p) for m in ("visible", "thermal") for p in (1, 2, 3) for j in (1, 2)]
    assert [(ds.relpath(r), r.pid) for r in recs] == expected
    assert {(r.modality, r.camera) for r in recs} == {(VISIBLE, 1), (INFRARED, 2)}
    assert {r.pid for r in ds.train_records(2)} == {4, 5, 6}
    with pytest.raises(ValueError, match="trial"):
        ds.train_records()
    with pytest.raises(ValueError, match="11"):
        ds.train_records(11)
    with raises_at(regdb.resolve() / "idx" / "train_visible_3.txt", match="missing"):
        ds.train_records(3)
    assert ds.available_trials() == [1, 2]
    assert len(ds.all_records()) == 6 * 2 * 2


@pytest.mark.parametrize("direction", ["visible_to_infrared", "infrared_to_visible"])
def test_regdb_protocol_directions_in_file_order(regdb, direction):
    lines = (regdb / "idx" / "test_thermal_2.txt").read_text().splitlines()
    (regdb / "idx" / "test_thermal_2.txt").write_text("\n".join(reversed(lines)) + "\n")
    ds = RegDB(regdb)
    protocol = ds.protocol(direction=direction)
    assert protocol.metric == "regdb" and protocol.trials == tuple(range(1, 11))
    visible = [regdb_rel("visible", p, j) for p in (1, 2, 3) for j in (1, 2)]
    thermal = [regdb_rel("thermal", p, j) for p in (1, 2, 3) for j in (1, 2)][::-1]
    query, gallery = (visible, thermal) if direction == "visible_to_infrared" else (thermal, visible)
    assert [ds.relpath(r) for r in protocol.query(2)] == query
    assert [ds.relpath(r) for r in protocol.gallery(2)] == gallery
    assert {r.pid for r in protocol.query(1)} == {4, 5, 6}


def _regdb_line_error(regdb, text, line, match, file="train_visible_1.txt"):
    path = regdb / "idx" / file
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    with raises_at(regdb.resolve() / "idx" / file, line, match):
        RegDB(regdb).train_records(1)


def test_regdb_line_without_label(regdb):
    _regdb_line_error(regdb, regdb_rel("visible", 2, 1), 3, "'<relative path> <label>'")


def test_regdb_non_integer_label(regdb):
    _regdb_line_error(regdb, regdb_rel("visible", 2, 1) + " one", 3, "'one'")


def test_regdb_missing_image(regdb):
    _regdb_line_error(regdb, "Visible/2/female_front_v_09999_2.bmp 1", 4, "does not exist")


def test_regdb_label_names_two_persons(regdb):
    # line 5 is person 3 with label 2; give it label 0 (person 1's label)
    _regdb_line_error(
        regdb, regdb_rel("thermal", 3, 1) + " 0", 5, "label 0 is person 3", file="train_thermal_1.txt"
    )


def test_regdb_person_with_two_labels(regdb):
    _regdb_line_error(regdb, regdb_rel("visible", 1, 2) + " 3", 2, "person 1 has label 3")


def test_regdb_thermal_image_in_visible_file(regdb):
    _regdb_line_error(regdb, regdb_rel("thermal", 2, 1) + " 1", 3, "Visible/<id>")


def test_regdb_file_name_disagrees_with_folder(regdb):
    (regdb / "Visible" / "2" / "male_front_v_00201_5.bmp").touch()
    _regdb_line_error(regdb, "Visible/2/male_front_v_00201_5.bmp 1", 3, "does not fit folder Visible/2")


def test_regdb_path_leaving_root(regdb):
    (regdb.parent / "elsewhere.bmp").touch()
    _regdb_line_error(regdb, "../elsewhere.bmp 1", 3, "leaves the dataset folder")


def test_regdb_train_test_overlap(regdb):
    (regdb / "idx" / "test_visible_1.txt").write_text(f"{regdb_rel('visible', 3, 1)} 0\n")
    with raises_at(regdb.resolve() / "idx" / "test_visible_1.txt", match="[3]"):
        RegDB(regdb).train_records(1)


def test_regdb_required_folders(regdb):
    shutil.rmtree(regdb / "Thermal")
    with raises_at(regdb.resolve() / "Thermal", match="Thermal"):
        RegDB(regdb)


def test_regdb_all_records_parses_every_split_file(regdb):
    (regdb / "idx" / "test_thermal_2.txt").write_text("nonsense\n")
    ds = RegDB(regdb)
    ds.train_records(1)  # trial 1 is fine
    with raises_at(regdb.resolve() / "idx" / "test_thermal_2.txt", 1, "<label>"):
        ds.all_records()


# == LLCM ===============================================================================================
@pytest.fixture
def llcm(tmp_path):
    return make_llcm(tmp_path / "LLCM")


def reference_llcm(data_path: str, modality: str, test_ids, trial: int | None):
    """The LLCM authors' query (trial None) and gallery (random.seed(trial), random.choice) builders."""
    if modality == "vis":
        cameras = [f"test_vis/cam{c}" for c in range(1, 10)]
    else:
        cameras = [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    if trial is not None:
        random.seed(trial)
    files = []
    for pid in sorted(f"{x:04d}" for x in test_ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if trial is None:
                    files.extend(new_files)
                else:
                    files.append(random.choice(new_files))
    return files


def test_llcm_train_records(llcm):
    ds = LLCM(llcm)
    recs = ds.train_records()
    expected = [(mod, cam, pid) for mod, cam, pid, n in LLCM_TRAIN for _ in range(n)]
    assert [("vis" if r.modality == VISIBLE else "nir", r.camera, r.pid) for r in recs] == expected
    assert ds.test_ids == [10, 11, 12]
    assert len(ds.all_records()) == len(recs) + sum(LLCM_TEST_COUNTS.values())


@pytest.mark.parametrize("direction", ["visible_to_infrared", "infrared_to_visible"])
def test_llcm_protocol_matches_reference(llcm, direction):
    (llcm / "test_nir" / "cam3" / "0010").mkdir(parents=True)  # the authors' code never reads nir cam3
    (llcm / "test_nir" / "cam3" / "0010" / "x.jpg").touch()
    protocol = LLCM(llcm).protocol(direction=direction)
    q, g = ("vis", "nir") if direction == "visible_to_infrared" else ("nir", "vis")
    root = str(llcm.resolve())
    assert [str(r.path) for r in protocol.query(0)] == reference_llcm(root, q, [10, 11, 12], None)
    for trial in range(10):
        gallery = protocol.gallery(trial)
        assert [str(r.path) for r in gallery] == reference_llcm(root, g, [10, 11, 12], trial)
        keys = [(r.pid, r.camera) for r in gallery]
        assert len(keys) == len(set(keys)) == sum(1 for (m, _, _) in LLCM_TEST_COUNTS if m == g)
    assert protocol.metric == "llcm" and protocol.trials == tuple(range(10))


def test_llcm_training_path_without_camera(llcm):
    path = llcm / "idx" / "train_nir.txt"
    lines = path.read_text().splitlines()
    (llcm / "loose.jpg").touch()
    lines[1] = "loose.jpg 1"
    path.write_text("\n".join(lines) + "\n")
    with raises_at(llcm.resolve() / "idx" / "train_nir.txt", 2, "cam<c>"):
        LLCM(llcm)


def test_llcm_label_inconsistency(llcm):
    path = llcm / "idx" / "train_vis.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " 0"  # person 2 given person 1's label
    path.write_text("\n".join(lines) + "\n")
    with raises_at(llcm.resolve() / "idx" / "train_vis.txt", 3, "label 0 is person 2"):
        LLCM(llcm)


def test_llcm_missing_test_ids(llcm):
    (llcm / "idx" / "test_id.txt").unlink()
    with raises_at(llcm.resolve() / "idx" / "test_id.txt", match="missing"):
        LLCM(llcm)


def test_llcm_bad_test_folder(llcm):
    (llcm / "test_vis" / "cam2" / "id11").mkdir(parents=True)
    with raises_at(llcm.resolve() / "test_vis" / "cam2" / "id11", match="4-digit"):
        LLCM(llcm)
    shutil.rmtree(llcm / "test_vis")
    with raises_at(llcm.resolve() / "test_vis", match="test_vis"):
        LLCM(llcm)


# == manifest ===========================================================================================
@pytest.fixture
def manifest(tmp_path):
    return make_manifest(tmp_path / "mine")


def test_manifest_round_trip(manifest, tmp_path):
    for root in (manifest, manifest / "manifest.csv"):
        ds = ManifestDataset(root)
        rows = [
            (ds.relpath(r), r.pid, r.camera, r.modality, split)
            for split in ("train", "query", "gallery")
            for r in ds.splits[split]
        ]
        assert rows == MANIFEST_ROWS
    # write the records back out and read them again
    copy = tmp_path / "copy"
    shutil.copytree(manifest / "img", copy / "img")
    make_manifest(copy, rows)
    assert (copy / "manifest.csv").read_text() == (manifest / "manifest.csv").read_text()
    again = ManifestDataset(copy)
    assert [r.pid for r in again.train_records()] == [1, 1, 2, 2]
    protocol = again.protocol()
    assert [again.relpath(r) for r in protocol.query(0)] == ["img/c_i1.png", "img/d_i1.png"]
    assert [again.relpath(r) for r in protocol.gallery(0)] == ["img/c_v1.png", "img/d_v1.png", "img/c_v2.png"]
    assert protocol.metric == "llcm" and protocol.trials == (0,)
    assert again.protocol(metric="regdb").metric == "regdb"
    with pytest.raises(ValueError, match="llcm"):
        again.protocol(metric="sysu")


def test_manifest_absolute_path(manifest, tmp_path):
    outside = tmp_path / "outside.png"
    outside.touch()
    rows = MANIFEST_ROWS + [(str(outside), 9, 1, "visible", "gallery")]
    make_manifest(manifest, rows)
    ds = ManifestDataset(manifest)
    assert ds.relpath(ds.splits["gallery"][-1]) == outside.as_posix()


def test_manifest_paths_outside_its_folder_are_allowed_and_resolved(manifest, tmp_path):
    """Decision (documented in the manifest module and the README): a manifest lists images anywhere on
    the machine, relative (``..`` included, e.g. a sibling folder) or absolute; paths are normalised and
    must exist. It is the user's own list of local files, not a boundary; what the *service* serves is
    bounded by the index's image roots."""
    sibling = manifest.parent / "sibling"
    sibling.mkdir(exist_ok=True)
    (sibling / "s.png").touch()
    rows = MANIFEST_ROWS + [("../sibling/s.png", 9, 1, "visible", "gallery")]
    make_manifest(manifest, rows)
    ds = ManifestDataset(manifest)
    assert ds.splits["gallery"][-1].path.resolve() == (sibling / "s.png").resolve()
    (sibling / "s.png").unlink()
    with pytest.raises(DatasetError, match="'../sibling/s.png' does not exist"):
        ManifestDataset(manifest)


def _manifest_error(manifest, rows=None, header="path,pid,camera,modality,split", line=None, match=""):
    make_manifest(manifest, rows if rows is not None else MANIFEST_ROWS, header=header)
    with raises_at(manifest.resolve() / "manifest.csv", line, match):
        ManifestDataset(manifest)


def test_manifest_bad_header(manifest):
    _manifest_error(
        manifest, header="path,id,camera,modality,split", line=1, match="path,pid,camera,modality,split"
    )


def test_manifest_unknown_modality(manifest):
    rows = list(MANIFEST_ROWS)
    rows[3] = ("img/b_i1.png", 2, 2, "thermal", "train")
    _manifest_error(manifest, rows, line=5, match="'thermal'")


def test_manifest_bad_values(manifest):
    rows = list(MANIFEST_ROWS)
    rows[0] = ("img/a_v1.png", "a1", 1, "visible", "train")
    _manifest_error(manifest, rows, line=2, match="pid must be an integer")
    rows[0] = ("img/a_v1.png", 1, "c1", "visible", "train")
    _manifest_error(manifest, rows, line=2, match="camera must be an integer")
    rows[0] = ("img/a_v1.png", 1, 1, "visible", "test")
    _manifest_error(manifest, rows, line=2, match="split must be one of")
    rows[0] = ("img/zz.png", 1, 1, "visible", "train")
    rows_written = [r for r in rows if r[0] != "img/zz.png"]
    make_manifest(manifest, rows_written)
    text = (manifest / "manifest.csv").read_text().splitlines()
    text.insert(1, "img/zz.png,1,1,visible,train")
    (manifest / "manifest.csv").write_text("\n".join(text) + "\n")
    with raises_at(manifest.resolve() / "manifest.csv", 2, "does not exist"):
        ManifestDataset(manifest)
    (manifest / "manifest.csv").write_text("path,pid,camera,modality,split\nimg/a_v1.png,1,1\n")
    with raises_at(manifest.resolve() / "manifest.csv", 2, "found 3"):
        ManifestDataset(manifest)


def test_manifest_conflicting_rows(manifest):
    rows = MANIFEST_ROWS + [("img/c_v1.png", 3, 1, "visible", "gallery")]
    _manifest_error(manifest, rows, line=len(rows) + 1, match="listed twice")
    rows = MANIFEST_ROWS + [("img/c_v1.png", 5, 1, "visible", "train")]
    _manifest_error(manifest, rows, line=len(rows) + 1, match="on line 8")


def test_manifest_without_query_has_no_protocol(manifest):
    make_manifest(manifest, [r for r in MANIFEST_ROWS if r[4] != "query"])
    ds = ManifestDataset(manifest)
    with raises_at(manifest.resolve() / "manifest.csv", match="no 'query' rows"):
        ds.protocol()


def test_manifest_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with raises_at(tmp_path.resolve() / "empty" / "manifest.csv", match="missing"):
        ManifestDataset(tmp_path / "empty")


# == registry and image checking ========================================================================
def test_user_plugin_registers_and_builds(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))

    class _Fixed(EvalProtocol):
        metric = "regdb"
        trials = (0,)

        def __init__(self, recs):
            self.recs = recs

        def query(self, trial):
            return self.recs[:1]

        def gallery(self, trial):
            return self.recs[1:]

        def describe(self):
            return {"dataset": "toy"}

    @registry.register_dataset("toy_plugin")
    class Toy(VIReIDDataset):
        def __init__(self, root):
            super().__init__(root)
            self.recs = [ImageRecord(p, int(p.stem), 1, VISIBLE) for p in sorted(self.root.glob("*.png"))]

        def train_records(self, trial=None):
            return self.recs

        def all_records(self):
            return self.recs

        def protocol(self):
            return _Fixed(self.recs)

    for i in (3, 1, 2):
        (tmp_path / f"{i}.png").touch()
    assert "toy_plugin" in registry.dataset_names()
    assert {"sysu", "regdb", "llcm", "manifest"} <= set(registry.dataset_names())
    ds = registry.build_dataset("toy_plugin", tmp_path)
    assert isinstance(ds, Toy) and ds.name == "toy_plugin"
    assert [r.pid for r in ds.train_records()] == [1, 2, 3]
    assert summarize(ds)[-1] == SummaryRow("gallery", "all", None, 2, 2)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_dataset("sysu")(Toy)


def test_unknown_dataset_lists_valid_names(tmp_path):
    from vireid.errors import ConfigError

    with pytest.raises(ConfigError) as err:  # a config value: the CLI prints it, no traceback
        registry.build_dataset("sysu-mm01", tmp_path)
    msg = str(err.value)
    for name in ("llcm", "manifest", "regdb", "sysu"):
        assert name in msg
    assert "Did you mean 'sysu'" in msg


def test_check_images_names_the_broken_image(tmp_path):
    root = make_sysu(tmp_path / "s", images=True)
    ds = SYSUMM01(root)
    assert ds.check_images(progress=False) == sum(SYSU_COUNTS.values())
    bad = root / "cam5" / "0004" / "0002.jpg"
    bad.write_bytes(b"not a jpeg")
    with raises_at(bad.resolve(), match="cannot be read"):
        SYSUMM01(root).check_images(progress=False)
