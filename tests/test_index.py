"""GalleryIndex: build/open/add/search against brute-force NumPy, crash-safe add, fingerprints, IVF-PQ."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import vireid.cli as cli
from vireid.errors import VireidError
from vireid.retrieval import faiss_build, index_files, index_write
from vireid.retrieval.feature_files import FeatureSet, save_features
from vireid.retrieval.index import Embeddings, GalleryIndex, GalleryIndexError, ModelMismatchError, SearchHit

FP = "f" * 64
MODEL_INFO = {"fingerprint": FP, "model": "agw", "arch": "resnet18", "checkpoint": "/nowhere/last.pt"}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery(n: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    feats = unit(rng.normal(size=(n, dim)))
    meta = [{"path": f"/data/g/{i:05d}.jpg", "pid": i // 4, "camera": 1 + i % 3,
             "modality": "visible" if i % 5 else "infrared", "timestamp": f"2024-01-01T00:00:{i % 60:02d}"}
            for i in range(n)]
    return feats, meta


def brute_force(queries: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine, computed independently of FAISS."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ feats.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


def assert_hits_match(hits: list[list[SearchHit]], scores: np.ndarray, ids: np.ndarray, meta: list[dict]) -> None:
    assert len(hits) == len(ids)
    for row_hits, row_scores, row_ids in zip(hits, scores, ids):
        assert [h.id for h in row_hits] == row_ids.tolist()
        assert [h.rank for h in row_hits] == list(range(1, len(row_ids) + 1))
        np.testing.assert_allclose([h.score for h in row_hits], row_scores, atol=1e-5)
        for h in row_hits:
            m = meta[h.id]
            assert (h.path, h.pid, h.camera, h.modality, h.timestamp) == (
                m["path"], m["pid"], m["camera"], m["modality"], m["timestamp"])


@pytest.fixture
def flat(tmp_path):
    feats, meta = gallery(300)
    idx = GalleryIndex.build(tmp_path / "idx", feats, meta, model_info=MODEL_INFO, kind="flat", progress=False)
    return idx, feats, meta


def test_build_open_search_matches_brute_force(flat, tmp_path):
    idx, feats, meta = flat
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(7, 16)).astype(np.float32)  # not normalised: the index normalises queries
    scores, ids = brute_force(queries, feats, 10)
    assert_hits_match(idx.search(queries, 10), scores, ids, meta)
    reopened = GalleryIndex.open(tmp_path / "idx")
    assert_hits_match(reopened.search(queries, 10), scores, ids, meta)
    assert len(reopened) == 300 and reopened.dim == 16 and reopened.kind == "flat"
    info = reopened.info()
    assert info["count"] == 300 and info["dim"] == 16 and info["kind"] == "flat"
    assert info["model_info"] == MODEL_INFO and info["created"] and info["generation"] == 1
    assert info["modalities"] == {"infrared": 60, "visible": 240}
    # a single vector is one query; topk larger than the gallery returns the whole gallery
    one = reopened.search(queries[0], 3)
    assert [h.id for h in one[0]] == ids[0, :3].tolist()
    assert len(reopened.search(queries[:1], 1000)[0]) == 300
    # batches (NumPy products) and single queries (FAISS) give the same results, padding included
    batch = reopened.search(queries, 1000)
    assert all(len(row) == 300 for row in batch)
    for i in range(len(queries)):
        single = reopened.search(queries[i], 1000)[0]
        assert [h.id for h in single] == [h.id for h in batch[i]]
        np.testing.assert_allclose([h.score for h in single], [h.score for h in batch[i]], atol=1e-5)
    scores_b, ids_b = reopened.search_ids(queries, 301)
    assert ids_b[:, -1].tolist() == [-1] * 7 and np.isneginf(scores_b[:, -1]).all()


def test_get_image_path_and_metadata(flat):
    idx, feats, meta = flat
    row = idx.get(17)
    assert row == {"id": 17, **meta[17]}
    assert idx.image_path(17) == Path("/data/g/00017.jpg")
    assert idx.image_path(17).is_absolute()
    with pytest.raises(KeyError, match="no gallery image with id 999"):
        idx.get(999)
    np.testing.assert_array_equal(idx.reconstruct([3, 5]), feats[[3, 5]])
    assert idx.ids().tolist() == list(range(300))


def test_relative_paths_made_absolute_and_extra_keys_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    feats, _ = gallery(3)
    meta = [{"path": f"imgs/{i}.jpg", "camera": 2, "modality": "visible", "track": i} for i in range(3)]
    idx = GalleryIndex.build(tmp_path / "idx", feats, meta, model_info=MODEL_INFO, progress=False)
    assert idx.image_path(1) == tmp_path / "imgs" / "1.jpg"
    assert idx.get(2)["track"] == 2 and idx.get(2)["pid"] is None and idx.get(2)["timestamp"] is None


def test_add_appends_and_search_sees_everything(flat, tmp_path):
    idx, feats, meta = flat
    more, more_meta = gallery(50, seed=5)
    ids = idx.add(more, more_meta, progress=False)
    assert ids == list(range(300, 350)) and len(idx) == 350 and idx.generation == 2
    all_feats, all_meta = np.concatenate([feats, more]), meta + more_meta
    queries = unit(np.random.default_rng(2).normal(size=(5, 16)))
    scores, order = brute_force(queries, all_feats, 12)
    assert_hits_match(idx.search(queries, 12), scores, order, all_meta)
    reopened = GalleryIndex.open(tmp_path / "idx")
    assert_hits_match(reopened.search(queries, 12), scores, order, all_meta)
    assert reopened.get(310)["path"] == more_meta[10]["path"]
    # only the previous generation is kept besides the current one
    idx.add(more[:2], more_meta[:2], progress=False)
    names = sorted(p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith("gen-"))
    assert names == ["gen-000002.faiss", "gen-000002.sqlite", "gen-000003.faiss", "gen-000003.sqlite"]
    assert json.loads((tmp_path / "idx" / "CURRENT").read_text())["generation"] == 3


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
@pytest.mark.parametrize("step", ["insert", "write_faiss", "replace", "write_current"])
def test_interrupted_add_leaves_the_index_unchanged(tmp_path, monkeypatch, step, kind):
    feats, meta = gallery(300)
    idx = GalleryIndex.build(tmp_path / "idx", feats, meta, model_info=MODEL_INFO, kind=kind, progress=False)
    queries = unit(np.random.default_rng(3).normal(size=(4, 16)))
    before = [[(h.id, h.score) for h in row] for row in idx.search(queries, 8)]
    more, more_meta = gallery(40, seed=9)

    class Crash(RuntimeError):
        pass

    def crash(*args, **kwargs):
        raise Crash(step)

    if step == "insert":
        monkeypatch.setattr(index_write, "insert_rows", crash)
    elif step == "write_faiss":
        monkeypatch.setattr(index_files, "write_faiss", crash)
    elif step == "replace":  # after the FAISS file is renamed, before the database is
        real_replace = os.replace
        calls = []

        def replace(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                raise Crash(step)
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    else:  # both new files in place, CURRENT not yet replaced
        monkeypatch.setattr(index_files, "write_current", crash)
    with pytest.raises(Crash):
        idx.add(more, more_meta, progress=False)
    monkeypatch.undo()
    # the object in memory and the folder on disk are both at the committed generation
    for view in (idx, GalleryIndex.open(tmp_path / "idx")):
        assert len(view) == 300 and view.generation == 1
        assert [[(h.id, h.score) for h in row] for row in view.search(queries, 8)] == before
        with pytest.raises(KeyError):
            view.get(300)
    # the next add cleans up the leftovers and succeeds
    assert idx.add(more, more_meta, progress=False) == list(range(300, 340))
    assert len(GalleryIndex.open(tmp_path / "idx")) == 340
    leftovers = [p.name for p in (tmp_path / "idx").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    if kind == "ivfpq":  # the raw rows of the failed attempt were replaced, not kept twice
        assert (tmp_path / "idx" / "vectors.f32").stat().st_size == 340 * 16 * 4
        np.testing.assert_array_equal(idx.reconstruct([300, 339]), more[[0, 39]])


def test_fingerprint_refusal(flat):
    idx, feats, meta = flat
    other = "0" * 64
    with pytest.raises(ModelMismatchError, match="queries were embedded by model 000000000000"):
        idx.search(Embeddings(feats[:2], other), 5)
    with pytest.raises(ModelMismatchError):
        idx.search(feats[:2], 5, fingerprint=other)
    with pytest.raises(ModelMismatchError, match="added features"):
        idx.add(Embeddings(feats[:2], other), meta[:2], progress=False)
    assert isinstance(ModelMismatchError("x"), VireidError)
    assert len(idx) == 300
    hits = idx.search(Embeddings(feats[:2], FP), 1)  # the same model is accepted
    assert [h[0].id for h in hits] == [0, 1]


def test_bad_input(tmp_path, flat):
    idx, feats, meta = flat
    with pytest.raises(ValueError, match="L2-normalised"):
        GalleryIndex.build(tmp_path / "a", feats * 2, meta, model_info=MODEL_INFO, progress=False)
    with pytest.raises(ValueError, match="metadata entries"):
        GalleryIndex.build(tmp_path / "b", feats, meta[:-1], model_info=MODEL_INFO, progress=False)
    with pytest.raises(ValueError, match="fingerprint"):
        GalleryIndex.build(tmp_path / "c", feats, meta, model_info={}, progress=False)
    with pytest.raises(ValueError, match="lacks"):
        GalleryIndex.build(tmp_path / "d", feats[:1], [{"path": "x.jpg"}], model_info=MODEL_INFO, progress=False)
    with pytest.raises(GalleryIndexError, match="not empty"):
        GalleryIndex.build(idx.folder, feats, meta, model_info=MODEL_INFO, progress=False)
    with pytest.raises(ValueError, match="dimension 8"):
        idx.search(np.ones((1, 8), np.float32), 3)
    with pytest.raises(ValueError, match="dimension"):
        idx.add(unit(np.ones((1, 8))), meta[:1], progress=False)
    with pytest.raises(GalleryIndexError, match="not a vireid gallery index"):
        GalleryIndex.open(tmp_path)
    with pytest.raises(GalleryIndexError, match="does not exist"):
        GalleryIndex.open(tmp_path / "missing")


def edit_database(db: Path, statement: str) -> None:
    """Run one SQL statement on an index generation's SQLite file (to damage it on purpose)."""
    con = sqlite3.connect(db)
    with con:
        con.execute(statement)
    con.close()


def test_inconsistent_generation_is_reported(flat, tmp_path):
    idx, _, _ = flat
    edit_database(tmp_path / "idx" / "gen-000001.sqlite", "DELETE FROM images WHERE id = 5")
    with pytest.raises(GalleryIndexError, match="inconsistent: 300 vectors .* but 299 rows"):
        GalleryIndex.open(tmp_path / "idx")


def test_refresh_sees_another_writer(flat, tmp_path):
    idx, _, _ = flat
    reader = GalleryIndex.open(tmp_path / "idx")
    more, more_meta = gallery(10, seed=4)
    idx.add(more, more_meta, progress=False)
    assert len(reader) == 300 and reader.refresh() and len(reader) == 310 and not reader.refresh()


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)))


def test_ivfpq_recall_sanity(tmp_path):
    dim = 32
    feats = clustered(4000, dim, 40, seed=0)
    meta = [{"path": f"/g/{i}.jpg", "camera": 1, "modality": "visible"} for i in range(len(feats))]
    idx = GalleryIndex.build(tmp_path / "ivf", feats, meta, model_info=MODEL_INFO, kind="ivfpq", nlist=32,
                             nprobe=8, pq_m=16, nbits=8, refine=0, progress=False)
    params = idx.info()["params"]
    assert idx.kind == "ivfpq" and (params["nlist"], params["nprobe"], params["pq_m"], params["nbits"]) == (32, 8, 16, 8)
    assert params["refine"] == 0 and not (tmp_path / "ivf" / "vectors.f32").exists()
    queries = clustered(150, dim, 40, seed=0)[100:]  # the gallery's clusters (same seed), new points
    _, exact = brute_force(queries, feats, 10)
    _, approx = idx.search_ids(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact)])
    assert recall >= 0.6, recall
    _, one_list = idx.search_ids(queries, 10, nprobe=1)
    recall_one = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(one_list, exact)])
    assert recall_one < recall  # visiting more lists finds more of the true neighbours
    # add keeps the trained lists; the new vectors are found
    more = clustered(20, dim, 40, seed=7)
    idx.add(more, meta[:20], progress=False)
    reopened = GalleryIndex.open(tmp_path / "ivf", nprobe=32)
    assert reopened.nprobe == 32 and len(reopened) == 4020
    _, found = reopened.search_ids(more, 1)
    assert np.mean(found[:, 0] >= 4000) >= 0.9
    # without re-scoring the reconstruction is the PQ approximation: close, not exact
    err = np.linalg.norm(reopened.reconstruct([4000, 4001]) - more[:2], axis=1)
    assert (err < 0.5).all() and (err > 0).all()


def test_ivfpq_exact_rescoring(tmp_path):
    dim = 32
    feats = clustered(4000, dim, 40, seed=0)
    meta = [{"path": f"/g/{i}.jpg", "camera": 1, "modality": "visible"} for i in range(len(feats))]
    queries = clustered(150, dim, 40, seed=0)[100:]
    exact_s, exact = brute_force(queries, feats, 10)
    recalls = {}
    for refine in (0, 8):
        idx = GalleryIndex.build(tmp_path / f"r{refine}", feats, meta, model_info=MODEL_INFO, kind="ivfpq",
                                 nlist=32, nprobe=8, pq_m=4, nbits=6, refine=refine, progress=False)
        scores, ids = idx.search_ids(queries, 10)
        recalls[refine] = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    # coarse codes (4 x 6 bits) confuse neighbours; the exact re-scoring of 80 candidates restores them
    assert recalls[0] < 0.5 and recalls[8] >= 0.9, recalls
    # the re-scored scores are the exact cosine similarities, in descending order
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, feats[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(idx.reconstruct([7, 3999]), feats[[7, 3999]])
    hits = idx.search(queries[:2], 5)
    assert [h.id for h in hits[1]] == idx.search_ids(queries[:2], 5)[1][1].tolist()
    _, pq_only = idx.search_ids(queries, 10, refine=0)  # per-call override: the PQ ranking
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pq_only, exact)]) == pytest.approx(recalls[0])


def test_auto_kind_threshold(tmp_path, monkeypatch):
    feats = clustered(1200, 16, 10, seed=1)
    meta = [{"path": f"/g/{i}.jpg", "camera": 1, "modality": "visible"} for i in range(1200)]
    monkeypatch.setattr(index_write, "AUTO_IVFPQ_THRESHOLD", 1000)
    assert GalleryIndex.build(tmp_path / "a", feats, meta, model_info=MODEL_INFO, progress=False).kind == "ivfpq"
    assert GalleryIndex.build(tmp_path / "b", feats[:900], meta[:900], model_info=MODEL_INFO,
                              progress=False).kind == "flat"


def test_auto_parameters():
    assert faiss_build.auto_nlist(1_000_000) == 1024 and faiss_build.auto_nlist(100_000) == 256
    assert faiss_build.auto_nlist(100) == 2  # at most n // 39
    assert faiss_build.auto_pq_m(512) == 64 and faiss_build.auto_pq_m(2048) == 256 and faiss_build.auto_pq_m(36) == 4
    assert faiss_build.auto_nbits(1_000_000) == 8 and faiss_build.auto_nbits(2000) == 5


def test_cli_build_from_features_info_and_add(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["index"])
    feats, meta = gallery(40)
    save_features(tmp_path / "g", FeatureSet(feats[:30], meta[:30], dict(MODEL_INFO)))
    save_features(tmp_path / "more", FeatureSet(feats[30:], meta[30:], dict(MODEL_INFO)))
    save_features(tmp_path / "other", FeatureSet(feats[30:], meta[30:], {**MODEL_INFO, "fingerprint": "1" * 64}))
    # a feature file that records no image root: the folder must be named
    assert cli.main(["index", "build", "--features", str(tmp_path / "g.npz"), "--out", str(tmp_path / "idx"),
                     "--kind", "flat"]) == 2
    assert "records no image root" in capsys.readouterr().err
    assert cli.main(["index", "build", "--features", str(tmp_path / "g.npz"), "--out", str(tmp_path / "idx"),
                     "--kind", "flat", "--image-root", "/data"]) == 0
    assert "images: 30" in capsys.readouterr().out
    assert GalleryIndex.open(tmp_path / "idx").image_roots() == [str(Path("/data").resolve())]
    # a root that does not hold the images: refused by name
    assert cli.main(["index", "build", "--features", str(tmp_path / "g.npz"), "--out", str(tmp_path / "idx3"),
                     "--kind", "flat", "--image-root", str(tmp_path)]) == 2
    assert "outside the index's image roots" in capsys.readouterr().err
    assert cli.main(["index", "add", str(tmp_path / "idx"), "--features", str(tmp_path / "more.npz")]) == 0
    assert "added 10 images (generation 2)" in capsys.readouterr().out
    assert cli.main(["index", "add", str(tmp_path / "idx"), "--features", str(tmp_path / "other.npz")]) == 2
    assert "were embedded by model 111111111111" in capsys.readouterr().err
    assert cli.main(["index", "info", str(tmp_path / "idx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 40 and info["kind"] == "flat" and info["model_info"]["fingerprint"] == FP
    assert_hits_match(GalleryIndex.open(tmp_path / "idx").search(feats[:3], 5), *brute_force(feats[:3], feats, 5), meta)
    assert cli.main(["index", "info", str(tmp_path / "nothing")]) == 2


def test_a_killed_build_can_be_overwritten_and_other_folders_cannot(tmp_path):
    feats, meta = gallery(12)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".lock").write_bytes(b"")
    (killed / ".gen-000001.sqlite.tmp").write_bytes(b"half")
    (killed / "gen-000001.faiss").write_bytes(b"half")
    with pytest.raises(GalleryIndexError, match="not empty"):
        GalleryIndex.build(killed, feats, meta, model_info=MODEL_INFO, progress=False, image_roots=["/data"])
    index = GalleryIndex.build(killed, feats, meta, model_info=MODEL_INFO, progress=False, overwrite=True,
                               image_roots=["/data"])
    assert len(index) == 12
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(GalleryIndexError, match="not a vireid index folder"):
        GalleryIndex.build(other, feats, meta, model_info=MODEL_INFO, progress=False, overwrite=True)
    assert (other / "holiday.jpg").read_bytes() == b"precious"


def test_a_non_json_info_value_is_a_named_error(tmp_path):
    feats, meta = gallery(6)
    index = GalleryIndex.build(tmp_path / "idx", feats, meta, model_info=MODEL_INFO, progress=False)
    index.close()
    edit_database(next((tmp_path / "idx").glob("gen-*.sqlite")), "UPDATE info SET value = 'not json {' WHERE key = 'kind'")
    with pytest.raises(GalleryIndexError, match="info value of 'kind' is not JSON"):
        GalleryIndex.open(tmp_path / "idx")
