"""Searcher end to end with a tiny trained checkpoint: results against an independent brute force,
re-ranking, model-fingerprint refusal, the ONNX backend, and ``vireid index`` / ``vireid search``."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

import vireid.cli as cli
from tests.layouts import SMALL_BATCH, write_tiny_config
from vireid.config import config_to_yaml, load_config
from vireid.data import build_dataset
from vireid.data.synthetic import generate
from vireid.data.transforms import build_test_transform
from vireid.errors import CheckpointError
from vireid.evaluation.evaluator import extract_features
from vireid.evaluation.rerank import k_reciprocal_rerank
from vireid.models import build_model
from vireid.models.checkpoint import apply_model_state, load_checkpoint, save_checkpoint
from vireid.retrieval.embed import TorchExtractor, embed, load_model
from vireid.retrieval.image_lists import list_images
from vireid.retrieval.index import Embeddings, GalleryIndex, ModelMismatchError
from vireid.retrieval.search import Searcher


@pytest.fixture(autouse=True)
def _only_index_and_search_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["index", "search"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 1-step training run on synthetic SYSU-MM01, its gallery (visible) in a manifest, and an index
    built with ``vireid index build`` from that manifest."""
    from vireid.engine.run import run_training

    base = tmp_path_factory.mktemp("search")
    generate("sysu", base / "data", ids=12, seed=0, images_per_camera=2, size=(32, 16), workers=1, progress=False)
    config = base / "tiny.yaml"
    write_tiny_config(config, root=base / "data", data=SMALL_BATCH, output_dir=base / "run",
                      train={"epochs": 1, "iters_per_epoch": 1, "eval_every": 0}, test={"trials": 1, "batch_size": 64})
    cfg = load_config(config)
    saved = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = ["index"]
    try:
        run_training(cfg)
        ckpt = base / "run" / "checkpoints" / "last.pt"
        records = build_dataset("sysu", base / "data").all_records()
        gallery = [r for r in records if r.modality == "visible"]
        queries = [r for r in records if r.modality == "infrared"][:6]
        with open(base / "manifest.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "pid", "camera", "modality", "split"])
            for r in gallery:
                w.writerow([r.path, r.pid, r.camera, r.modality, "gallery"])
            for r in queries:
                w.writerow([r.path, r.pid, r.camera, r.modality, "query"])
        assert cli.main(["index", "build", str(config), "--checkpoint", str(ckpt), "--images",
                         str(base / "manifest.csv"), "--split", "gallery", "--out", str(base / "idx"),
                         "--device", "cpu"]) == 0
        # the reference features: the checkpoint loaded as `vireid test` does, the evaluator's extraction
        state = load_checkpoint(ckpt)
        model = build_model(cfg, state["num_classes"])
        apply_model_state(model, state["model"], source="test")
        transform = build_test_transform(cfg.data)
        g = torch.nn.functional.normalize(extract_features(model, gallery, transform=transform, progress=False), dim=1)
        q = torch.nn.functional.normalize(extract_features(model, queries, transform=transform, progress=False), dim=1)
    finally:
        cli.COMMAND_MODULES = saved
    return {"base": base, "config": config, "cfg": cfg, "ckpt": ckpt, "gallery": gallery, "queries": queries,
            "g": g.numpy(), "q": q.numpy(), "idx": base / "idx"}


def test_searcher_matches_brute_force(world):
    searcher = Searcher.from_index(world["idx"])
    assert searcher.default_query_modality() == "infrared" and len(searcher.index) == len(world["gallery"])
    paths = [r.path for r in world["queries"]]
    results = searcher.search_paths(paths, topk=5)
    sims = world["q"] @ world["g"].T
    for qi, hits in enumerate(results):
        order = np.argsort(-sims[qi], kind="stable")[:5]
        assert [h.id for h in hits] == order.tolist()  # ids are the gallery rows in manifest order
        np.testing.assert_allclose([h.score for h in hits], sims[qi, order], atol=1e-5)
        for h in hits:
            rec = world["gallery"][h.id]
            assert (h.path, h.pid, h.camera, h.modality) == (str(rec.path), rec.pid, rec.camera, "visible")
            assert searcher.index.image_path(h.id) == rec.path
    # PIL images in memory: the same results
    from PIL import Image

    images = [Image.open(p) for p in paths]
    assert [[h.id for h in row] for row in searcher.search_images(images, "infrared", topk=5)] == [
        [h.id for h in row] for row in results]
    np.testing.assert_allclose(searcher.embed_images(images), world["q"], atol=1e-5)


def test_searcher_rerank(world):
    searcher = Searcher.from_index(world["idx"])
    paths = [r.path for r in world["queries"]]
    results = searcher.search_paths(paths, "infrared", topk=7, rerank=True)
    # the gallery is smaller than the 100 candidates: every gallery image is re-ranked
    dist = k_reciprocal_rerank(world["q"], world["g"])
    sims = world["q"] @ world["g"].T
    for qi, hits in enumerate(results):
        order = np.argsort(dist[qi], kind="stable")[:7]
        assert [h.id for h in hits] == order.tolist()
        np.testing.assert_allclose([h.rerank_distance for h in hits], dist[qi, order], atol=1e-4)
        np.testing.assert_allclose([h.score for h in hits], sims[qi, order], atol=1e-5)


def test_fingerprint_refusal(world, tmp_path):
    cfg = world["cfg"]
    torch.manual_seed(123)
    other = save_checkpoint(tmp_path / "other.pt", model=build_model(cfg, 8), epoch=0, num_classes=8,
                            config_yaml=config_to_yaml(cfg))
    with pytest.raises(ModelMismatchError, match="not the model the index .* was built with"):
        Searcher.from_index(world["idx"], checkpoint=other)
    moved = tmp_path / "moved.pt"
    shutil.copy(world["ckpt"], moved)  # the same weights elsewhere are accepted
    assert Searcher.from_index(world["idx"], checkpoint=moved).fingerprint == GalleryIndex.open(world["idx"]).fingerprint
    # features of the other model are refused by the index, and its extractor by a Searcher
    index = GalleryIndex.open(world["idx"])
    other_extractor = TorchExtractor(load_model(None, other))
    q = other_extractor.embed_paths([world["queries"][0].path], "infrared")
    assert q.shape[1] == index.dim  # same dimension, still refused
    with pytest.raises(ModelMismatchError, match="queries were embedded by model"):
        index.search(Embeddings(q, other_extractor.fingerprint), 3)
    with pytest.raises(ModelMismatchError, match="not comparable"):
        Searcher(index=index, extractor=other_extractor)


def test_missing_recorded_checkpoint(world, tmp_path):
    copy = tmp_path / "ckpt.pt"
    shutil.copy(world["ckpt"], copy)
    fs_idx = tmp_path / "idx"
    extractor = TorchExtractor(load_model(None, copy))
    rows = list_images(world["base"] / "data" / "cam1", modality="visible")
    feats = embed(extractor, rows, progress=False)
    GalleryIndex.build(fs_idx, feats.embeddings(), feats.metadata, model_info=feats.model_info, progress=False)
    copy.unlink()
    with pytest.raises(CheckpointError, match="give its new location"):
        Searcher.from_index(fs_idx)
    assert len(Searcher.from_index(fs_idx, checkpoint=world["ckpt"]).search_paths(
        [world["queries"][0].path], topk=3)[0]) == 3


def test_onnx_backend_gives_the_same_results(world):
    torch_results = Searcher.from_index(world["idx"]).search_paths([r.path for r in world["queries"]], topk=5)
    searcher = Searcher.from_index(world["idx"], backend="onnx")  # exports once into the index folder
    assert searcher.extractor.backend == "onnx"
    assert sorted(p.name for p in (world["idx"] / "onnx").rglob("*.onnx")) == ["model_infrared.onnx",
                                                                               "model_visible.onnx"]
    results = searcher.search_paths([r.path for r in world["queries"]], topk=5)
    for a, b in zip(results, torch_results):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-4)


def test_cli_search_add_and_info(world, tmp_path, capsys):
    idx = tmp_path / "idx"
    shutil.copytree(world["idx"], idx)
    query = str(world["queries"][0].path)
    assert cli.main(["search", "--index", str(idx), "--query", query, "--topk", "4", "--json",
                     "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    api = Searcher.from_index(idx).search_paths([query], topk=4)[0]
    assert out[0]["query"] == query and out[0]["modality"] == "infrared" and out[0]["rerank"] is False
    assert [h["id"] for h in out[0]["hits"]] == [h.id for h in api]
    assert cli.main(["search", "--index", str(idx), "--query", query, "--topk", "3", "--rerank"]) == 0
    assert "RE-RANKED" in capsys.readouterr().out
    # add the infrared images of camera 6 to the gallery; a query is then found among them
    before = len(GalleryIndex.open(idx))
    assert cli.main(["index", "add", str(idx), "--images", str(world["base"] / "data" / "cam6"),
                     "--modality", "infrared", "--device", "cpu"]) == 0
    assert "generation 2" in capsys.readouterr().out
    index = GalleryIndex.open(idx)
    added = [index.get(i) for i in range(before, len(index))]
    assert len(added) > 0 and all(m["camera"] == 6 and m["modality"] == "infrared" for m in added)
    probe = added[0]["path"]
    hits = Searcher.from_index(idx).search_paths([probe], "infrared", topk=1)[0]
    assert hits[0].path == probe and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert cli.main(["index", "info", str(idx)]) == 0
    text = capsys.readouterr().out
    assert f"images: {len(index)}" in text and "kind: flat" in text and str(world["ckpt"]) in text
    assert cli.main(["search", "--index", str(tmp_path / "nothing"), "--query", query]) == 2
    assert "index folder does not exist" in capsys.readouterr().err


def test_open_set_threshold_calibrated_on_the_gallery_impostors(world, capsys):
    from vireid.evaluation.verification import threshold_at_fpr
    from vireid.retrieval.open_set import MatchThreshold

    searcher = Searcher.from_index(world["idx"])
    t = searcher.set_threshold(fpr=0.05)
    # independently: every pair of gallery images of different people (one modality: visible-visible)
    g, pids = world["g"], np.array([r.pid for r in world["gallery"]])
    i, j = np.triu_indices(len(pids), k=1)
    impostor = (g @ g.T)[i, j][pids[i] != pids[j]]
    assert t.pairs == "visible-visible" and t.impostor_pairs == impostor.size
    assert t.value == pytest.approx(threshold_at_fpr(impostor, 0.05), abs=1e-5)
    assert np.mean(impostor > t.value) <= 0.05
    paths = [r.path for r in world["queries"]]
    sims = world["q"] @ world["g"].T
    for qi, hits in enumerate(searcher.search_paths(paths, topk=10)):
        assert [h.id for h in hits] == [k for k in np.argsort(-sims[qi], kind="stable")[:10] if sims[qi, k] > t.value]
    # a threshold above every similarity: "no match" for each query, said by the command line
    searcher.threshold = MatchThreshold(value=1.0)
    assert all(hits == [] for hits in searcher.search_paths(paths, topk=5))
    assert cli.main(["search", "--index", str(world["idx"]), "--query", str(paths[0]), "--threshold", "0.9999"]) == 0
    out = capsys.readouterr().out
    assert "no match above the threshold 0.9999 (given)" in out
    assert cli.main(["search", "--index", str(world["idx"]), "--query", str(paths[0]), "--fpr", "0.05", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert answer["threshold"]["fpr"] == 0.05 and answer["match"] == bool(answer["hits"])
    assert all(h["score"] > answer["threshold"]["value"] for h in answer["hits"])


def test_open_set_refuses_what_it_cannot_calibrate(world, capsys):
    searcher = Searcher.from_index(world["idx"])
    from vireid.errors import ConfigError

    with pytest.raises(ConfigError, match="finer than the gallery resolves"):
        searcher.set_threshold(fpr=1e-6)
    with pytest.raises(ConfigError, match=r"cosine similarity in \[-1, 1\]"):
        searcher.set_threshold(2.0)
    assert cli.main(["search", "--index", str(world["idx"]), "--query", "x.jpg", "--fpr", "2"]) == 2
    assert "--fpr is a false-positive rate in (0, 1), got 2.0" in capsys.readouterr().err


class _FakeIndex:
    """The three calls calibration makes, over hand-made features."""

    folder = "fake-index"

    def __init__(self, feats, pids, modalities):
        self.feats = np.asarray(feats, np.float32)
        self.rows = [{"id": i, "pid": p, "modality": m} for i, (p, m) in enumerate(zip(pids, modalities))]

    def metadata(self):
        return self.rows

    def reconstruct(self, ids):
        return self.feats[np.asarray(ids)]


def test_calibration_uses_cross_modal_impostors_when_the_gallery_has_both_modalities():
    from vireid.errors import ConfigError
    from vireid.retrieval.open_set import calibrate_threshold

    # four unit features; pairs of different people: (0,2) V-I 0.8, (0,3) V-I 0.0, (1,2) V-I 0.6, (1,3) V-I 0.0,
    # and the same-modality (0,1) 0.0 and (2,3) 0.0 that a cross-modal calibration leaves out
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    feats = [a, b, 0.8 * a + 0.6 * b, np.array([0.0, -1.0])]
    feats[1] = np.array([0.6, -0.8])  # (0,1) 0.6 V-V, (1,2) 0.0, (1,3) 0.8
    index = _FakeIndex(feats, [1, 2, 3, 4], ["visible", "visible", "infrared", "infrared"])
    t = calibrate_threshold(index, 0.25)  # 4 cross-modal impostor pairs: 1 may pass -> the 2nd largest
    cross = sorted([feats[i] @ feats[j] for i in (0, 1) for j in (2, 3)], reverse=True)
    assert t.pairs == "visible-infrared" and t.impostor_pairs == 4 and t.value == pytest.approx(cross[1])
    with pytest.raises(ConfigError, match="have no person id"):
        calibrate_threshold(_FakeIndex(feats, [1, None, 3, 4], ["visible"] * 4), 0.25)


def test_an_index_of_a_dataset_layout_knows_who_is_in_it(world, tmp_path, capsys):
    data = world["base"] / "data"
    common = [str(world["config"]), "--checkpoint", str(world["ckpt"]), "--device", "cpu"]
    assert cli.main(["index", "build", *common, "--images", str(data), "--modality", "visible",
                     "--out", str(tmp_path / "ds")]) == 0  # the layout is detected: SYSU-MM01
    assert "person ids: " in capsys.readouterr().out
    index = GalleryIndex.open(tmp_path / "ds")
    test_visible = [r for r in build_dataset("sysu", data).test_records() if r.modality == "visible"]
    assert sorted((m["path"], m["pid"], m["camera"]) for m in index.metadata()) == sorted(
        (str(r.path), r.pid, r.camera) for r in test_visible)
    # an infrared query of a test person: its id is read from the layout, the verdict matches the hits
    query = next(r for r in build_dataset("sysu", data).test_records() if r.modality == "infrared")
    assert cli.main(["search", "--index", str(tmp_path / "ds"), "--query", str(query.path), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    hits = Searcher.from_index(tmp_path / "ds").search_paths([query.path], topk=3)[0]
    ranks = [h.rank for h in hits if h.pid == query.pid]
    assert f"(infrared, person {query.pid})" in out
    expected = f"person {query.pid}: FOUND at rank {ranks[0]}" if ranks else f"person {query.pid}: not found in the top 3"
    assert expected in out and "person  match" in out.replace("person match", "person  match")
    # the same folder read as plain images: no ids, and the search says it cannot tell
    assert cli.main(["index", "build", *common, "--images", str(data / "cam1"), "--modality", "visible",
                     "--out", str(tmp_path / "plain")]) == 0
    assert "person ids: none (a folder of images" in capsys.readouterr().out
    assert cli.main(["search", "--index", str(tmp_path / "plain"), "--query", str(query.path), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert "who the results are is unknown: the index has no person ids" in out
    assert " id " not in out.splitlines()[1]  # the header: no row number where a person id would be expected


def test_dataset_splits_of_an_image_list(world):
    from vireid.retrieval.image_lists import list_images, person_of_image

    data = world["base"] / "data"
    ds = build_dataset("sysu", data)
    assert len(list_images(data, split="train")) == len(ds.train_records())
    assert len(list_images(data, split="all", modality="infrared")) == len(
        [r for r in ds.all_records() if r.modality == "infrared"])
    from vireid.errors import ConfigError

    with pytest.raises(ConfigError, match="query and gallery are manifest splits"):
        list_images(data, split="gallery")
    with pytest.raises(ConfigError, match="is a folder of images without splits"):
        list_images(data / "cam1", modality="visible", split="test")
    plain = list_images(data / "cam1", modality="visible")
    assert all(r["pid"] is None for r in plain)
    rec = ds.all_records()[0]
    assert person_of_image(rec.path) == rec.pid and person_of_image(world["ckpt"]) is None
