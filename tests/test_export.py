"""ONNX export (parity with PyTorch, one graph per modality, metadata) and feature extraction
(torch and ONNX Runtime backends, feature files, ``vireid export`` and ``vireid embed``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vireid.cli as cli
from tests.layouts import write_tiny_config
from vireid.config import config_to_yaml, load_config
from vireid.data.synthetic import generate
from vireid.data.transforms import build_test_transform
from vireid.errors import VireidError
from vireid.evaluation.evaluator import extract_features
from vireid.models import build_model, model_names
from vireid.models.checkpoint import save_checkpoint
from vireid.models.onnx_model import ExportError, read_onnx_metadata, resolve_onnx_paths
from vireid.retrieval.embed import OnnxExtractor, TorchExtractor, build_extractor, load_model
from vireid.retrieval.export import export_onnx
from vireid.retrieval.feature_files import FeatureFileError, load_features
from vireid.retrieval.image_lists import list_images, parse_camera
from vireid.retrieval.index import ModelMismatchError


def _checkpoint(path, cfg, seed):
    torch.manual_seed(seed)
    model = build_model(cfg, 6)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, model=model, epoch=0, num_classes=6, config_yaml=config_to_yaml(cfg))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    generate("sysu", base / "data", ids=4, seed=0, images_per_camera=1, size=(32, 16), workers=1, progress=False)
    config = base / "tiny.yaml"
    write_tiny_config(config, root=base / "data", test={"batch_size": 4})
    cfg = load_config(config)
    ckpt = _checkpoint(base / "ckpt.pt", cfg, seed=0)
    other = _checkpoint(base / "other.pt", cfg, seed=1)
    loaded = load_model(cfg, ckpt)
    result = export_onnx(loaded, base / "onnx" / "model.onnx", modality="both")
    return {"base": base, "config": config, "cfg": cfg, "ckpt": ckpt, "other": other, "loaded": loaded,
            "export": result}


def test_export_parity_and_metadata(setup):
    import onnxruntime as ort

    result, loaded = setup["export"], setup["loaded"]
    base = setup["base"] / "onnx"
    assert result.paths == {"visible": base / "model_visible.onnx", "infrared": base / "model_infrared.onnx",
                            "both": base / "model.onnx"}  # the name asked for exists
    assert all(d is not None and d <= 1e-4 for d in result.max_abs_diff.values())
    x = torch.rand(5, 3, 32, 16, generator=torch.Generator().manual_seed(3))  # a batch size not traced
    outputs = {}
    for modality in ("visible", "infrared"):
        path = result.paths[modality]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["images"]
        got = session.run(["features"], {"images": x.numpy()})[0]
        with torch.inference_mode():
            ref = loaded.model.extract(x, modality).numpy()
        assert got.shape == (5, 512) and np.abs(got - ref).max() <= 1e-4
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        outputs[modality] = got
        meta = read_onnx_metadata(path)
        assert meta["modality"] == modality and meta["fingerprint"] == loaded.fingerprint
        assert meta["input_size"] == [32, 16] and meta["feature_dim"] == 512 and meta["model"] == "agw"
        assert load_config(None).data.height != 32 and "height: 32" in meta["config"]
    # each graph runs its own stem: the same images give different features
    assert np.abs(outputs["visible"] - outputs["infrared"]).max() > 1e-3
    # model.onnx: one graph, both branches, the same features as the one-branch graphs
    session = ort.InferenceSession(str(result.paths["both"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["features_visible", "features_infrared"]
    both = session.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(both[0], outputs["visible"], atol=1e-5)
    np.testing.assert_allclose(both[1], outputs["infrared"], atol=1e-5)
    assert read_onnx_metadata(result.paths["both"])["modality"] == "both"


def test_the_exported_name_is_accepted_back_alone_or_with_its_siblings(setup, tmp_path):
    base = setup["base"] / "onnx"
    # with its one-branch siblings beside it, model.onnx stands for them (half the work per image)
    assert resolve_onnx_paths(base / "model.onnx") == {"visible": base / "model_visible.onnx",
                                                       "infrared": base / "model_infrared.onnx"}
    # model.onnx copied alone: the two-output graph serves both modalities, with the same features
    alone = tmp_path / "deploy" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(base / "model.onnx", alone)
    assert resolve_onnx_paths(alone) == {"visible": alone, "infrared": alone}
    rows = list_images(setup["base"] / "data" / "cam3", modality="infrared")
    paths = [r["path"] for r in rows]
    np.testing.assert_allclose(OnnxExtractor.from_paths(alone).embed_paths(paths, "infrared"),
                               OnnxExtractor.from_paths(base / "model.onnx").embed_paths(paths, "infrared"), atol=1e-5)


def test_onnx_and_torch_extractors_agree_with_the_evaluator(setup):
    loaded = setup["loaded"]
    rows = list_images(setup["base"] / "data" / "cam3", modality="infrared")
    paths = [r["path"] for r in rows]
    torch_ex = TorchExtractor(loaded, flip=True)
    onnx_ex = OnnxExtractor.from_paths(setup["base"] / "onnx" / "model.onnx", flip=True)
    assert onnx_ex.modalities == ("visible", "infrared") and onnx_ex.fingerprint == loaded.fingerprint
    a = torch_ex.embed_paths(paths, "infrared")
    b = onnx_ex.embed_paths(paths, "infrared")
    assert np.abs(a - b).max() <= 1e-4
    # the evaluator's extraction (flip: mean of both), normalised, is the same feature
    from vireid.data.records import ImageRecord

    records = [ImageRecord(Path(p), 1, 3, "infrared") for p in paths]
    ref = extract_features(loaded.model, records, transform=build_test_transform(setup["cfg"].data), flip=True,
                           progress=False)
    np.testing.assert_allclose(a, torch.nn.functional.normalize(ref, dim=1).numpy(), atol=1e-5)
    # PIL images in memory give the features of their files
    from PIL import Image

    images = [Image.open(p) for p in paths]
    np.testing.assert_allclose(onnx_ex.embed_images(images, "infrared"), b, atol=1e-6)


def test_graph_of_one_modality_refuses_the_other(setup, tmp_path):
    single = tmp_path / "ir.onnx"
    shutil.copy(setup["export"].paths["infrared"], single)
    ex = OnnxExtractor.from_paths(single)
    assert ex.modalities == ("infrared",)
    with pytest.raises(VireidError, match="no visible branch"):
        ex.embed_tensors(torch.rand(1, 3, 32, 16), "visible")
    with pytest.raises(ExportError, match="does not exist"):
        resolve_onnx_paths(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(ExportError, match="cannot be read"):
        resolve_onnx_paths(tmp_path / "junk.onnx")


def test_onnx_graphs_of_another_checkpoint_are_refused(setup):
    with pytest.raises(ModelMismatchError, match="export them again"):
        build_extractor(backend="onnx", onnx=setup["base"] / "onnx" / "model.onnx", checkpoint=setup["other"],
                        cfg=setup["cfg"])
    assert build_extractor(backend="onnx", onnx=setup["base"] / "onnx" / "model.onnx", checkpoint=setup["ckpt"],
                           cfg=setup["cfg"]).fingerprint == setup["loaded"].fingerprint


def test_fingerprint_depends_on_weights_and_test_settings(setup):
    cfg = setup["cfg"]
    assert load_model(cfg, setup["ckpt"]).fingerprint == setup["loaded"].fingerprint  # deterministic
    assert load_model(cfg, setup["other"]).fingerprint != setup["loaded"].fingerprint
    before = load_config(setup["config"], ["model.neck_feat=before"])
    assert load_model(before, setup["ckpt"]).fingerprint != setup["loaded"].fingerprint
    bigger = load_config(setup["config"], ["data.height=64"])
    assert load_model(bigger, setup["ckpt"]).fingerprint != setup["loaded"].fingerprint


def test_vireid_export_cli(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["export"])
    out = tmp_path / "ir.onnx"
    assert cli.main(["export", str(setup["config"]), "--checkpoint", str(setup["ckpt"]), "--out", str(out),
                     "--modality", "infrared"]) == 0
    printed = capsys.readouterr().out
    diff = float(re.search(r"parity check \(infrared\): max abs difference PyTorch vs ONNX Runtime = (\S+)",
                           printed).group(1))
    assert diff <= 1e-4
    assert out.is_file() and read_onnx_metadata(out)["modality"] == "infrared"
    assert not (tmp_path / "ir_visible.onnx").exists()
    assert cli.main(["export", str(setup["config"]), "--checkpoint", str(tmp_path / "none.pt"), "--out",
                     str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_parse_camera():
    assert parse_camera("SYSU/cam3/0001/0004.jpg") == 3
    assert parse_camera("market/0002_c5s1_000451_03.jpg") == 5
    assert parse_camera("duke/0001_c2_f0046182.jpg") == 2
    assert parse_camera("photos/IMG_0042.jpg") == 0
    assert parse_camera("scan/abc.png") == 0


def test_list_images_folder_and_manifest(setup, tmp_path):
    src = setup["base"] / "data"
    folder = tmp_path / "photos"
    (folder / "cam2").mkdir(parents=True)
    first = sorted((src / "cam1").rglob("*.jpg"))[0]
    shutil.copy(first, folder / "cam2" / "a.jpg")
    shutil.copy(first, folder / "0007_c4s1_000001_00.jpg")
    shutil.copy(first, folder / "z.png")
    (folder / "notes.txt").write_text("not an image")
    rows = list_images(folder, modality="visible")
    assert [(r["camera"], r["modality"], r["pid"]) for r in rows] == [(4, "visible", None), (2, "visible", None),
                                                                      (0, "visible", None)]
    assert all(r["path"].startswith(str(folder)) for r in rows)
    assert [r["camera"] for r in list_images(folder / "cam2", modality="visible")] == [2]
    with pytest.raises(ValueError, match="modality of the images"):
        list_images(folder)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,pid,camera,modality,split\n"
                        f"{folder / 'z.png'},7,4,visible,gallery\n"
                        f"{folder / 'cam2' / 'a.jpg'},3,6,infrared,query\n"
                        f"{folder / 'z.png'},7,4,visible,train\n")
    rows = list_images(manifest)
    assert [(r["pid"], r["camera"], r["modality"]) for r in rows] == [(7, 4, "visible"), (3, 6, "infrared")]
    assert [r["pid"] for r in list_images(manifest, split="query")] == [3]
    assert [r["pid"] for r in list_images(manifest, modality="visible")] == [7]


def test_vireid_embed_round_trip(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["embed"])
    folder = setup["base"] / "data" / "cam1"
    out = tmp_path / "feats"
    assert cli.main(["embed", str(setup["config"]), "--checkpoint", str(setup["ckpt"]), "--images", str(folder),
                     "--modality", "visible", "--out", str(out), "--device", "cpu"]) == 0
    assert "features: " in capsys.readouterr().out
    fs = load_features(out)  # OUT, OUT.npz and OUT.jsonl name the same pair
    assert load_features(tmp_path / "feats.npz").metadata == fs.metadata
    rows = list_images(folder, modality="visible")
    lines = [json.loads(line) for line in (tmp_path / "feats.jsonl").read_text().splitlines()]
    assert lines == fs.metadata == rows
    expected = TorchExtractor(setup["loaded"]).embed_paths([r["path"] for r in rows], "visible")
    np.testing.assert_allclose(fs.features, expected, atol=1e-6)
    assert fs.features.dtype == np.float32 and fs.fingerprint == setup["loaded"].fingerprint
    assert fs.model_info["checkpoint"] == str(setup["ckpt"]) and fs.model_info["flip"] is False
    assert fs.model_info["feature_dim"] == 512 and fs.model_info["backend"] == "torch"
    # the ONNX backend gives the same features
    assert cli.main(["embed", str(setup["config"]), "--backend", "onnx", "--onnx",
                     str(setup["base"] / "onnx" / "model.onnx"), "--images", str(folder), "--modality", "visible",
                     "--out", str(tmp_path / "onnx_feats")]) == 0
    onnx_fs = load_features(tmp_path / "onnx_feats")
    assert np.abs(onnx_fs.features - fs.features).max() <= 1e-4 and onnx_fs.fingerprint == fs.fingerprint
    # a metadata file from another run is detected
    (tmp_path / "feats.jsonl").write_text((tmp_path / "onnx_feats.jsonl").read_text().replace("cam1", "camX"))
    with pytest.raises(FeatureFileError, match="does not belong"):
        load_features(out)
    assert cli.main(["embed", str(setup["config"]), "--images", str(folder), "--modality", "visible",
                     "--out", str(out)]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in model_names() if n != "agw"])  # agw: the tests above
def test_every_registered_model_exports_with_parity(name, tmp_path):
    tiny = Path(__file__).resolve().parents[1] / "configs" / "sysu" / f"{name}_tiny.yaml"
    if not tiny.is_file():
        pytest.skip(f"no tiny config for {name}")
    cfg = load_config(tiny, ["data.height=64", "data.width=32"])  # DAM's 3 parts need 3 rows at layer4
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", model=build_model(cfg, 5), epoch=0, num_classes=5,
                           config_yaml=config_to_yaml(cfg))
    result = export_onnx(load_model(cfg, ckpt), tmp_path / "m.onnx", modality="infrared")
    assert result.max_abs_diff["infrared"] <= 1e-4


def test_vireid_test_on_onnx_graphs_matches_the_checkpoint(setup, tmp_path, monkeypatch):
    """`vireid test --onnx` scores the exported graphs with the same evaluator: the same numbers as
    `vireid test --checkpoint` of the weights they were exported from."""
    from vireid import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["test"])
    config, onnx = str(setup["config"]), str(setup["base"] / "onnx" / "model.onnx")
    torch_json, onnx_json = tmp_path / "torch.json", tmp_path / "onnx.json"
    assert cli.main(["test", config, "--checkpoint", str(setup["ckpt"]), "--trials", "2", "--json", str(torch_json)]) == 0
    assert cli.main(["test", config, "--onnx", onnx, "--trials", "2", "--json", str(onnx_json)]) == 0
    a, b = json.loads(torch_json.read_text()), json.loads(onnx_json.read_text())
    assert b["onnx"] == [onnx] and b["checkpoint"] is None
    for row_a, row_b in zip(a["trials"], b["trials"]):
        for k in ("rank1", "rank5", "mAP", "mINP"):
            assert row_b[k] == pytest.approx(row_a[k], abs=1e-6), k
    # the exported visible graph alone cannot score infrared queries: a clear error, exit 2
    assert cli.main(["test", config, "--onnx", str(setup["base"] / "onnx" / "model_visible.onnx")]) == 2
