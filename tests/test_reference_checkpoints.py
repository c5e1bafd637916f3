"""Checkpoints of the AGW/CAJ reference code load as they are: the same test features as the reference
network with the same weights, through every command; malformed files refused by name."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tests.layouts import write_tiny_config
from tests.reference_net import randomised_reference, reference_features
from vireid.config import load_config
from vireid.errors import CheckpointError, ConfigError
from vireid.models import build_model
from vireid.models.checkpoint import initialise_from_checkpoint, load_model_checkpoint
from vireid.retrieval.embed import load_model

H, W = 48, 24
NUM_CLASSES = 7


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A randomised reference embed_net (inter_channels 1, as the reference code) saved as the reference
    code saves it: {'net': state_dict, 'epoch': 38, 'cmc': ..., 'mAP': ...} in a .t file."""
    net = randomised_reference(NUM_CLASSES, inter=1, seed=0)
    path = tmp_path_factory.mktemp("ref") / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t"
    torch.save({"net": net.state_dict(), "cmc": [0.5], "mAP": 0.4, "mINP": 0.3, "epoch": 38}, path)
    return net, path


def agw_config(*overrides: str):
    return load_config(None, ["model.name=agw", "model.arch=resnet50", "model.non_local=true",
                              "model.pretrained=none", f"data.height={H}", f"data.width={W}", "train.device=cpu", *overrides])


def images(seed: int, n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_name", ["agw", "caj"])
def test_same_test_features_as_the_reference_network(reference, model_name, caplog):
    net, path = reference
    with caplog.at_level(logging.INFO):
        loaded = load_model(agw_config(f"model.name={model_name}"), path)
    # the non-local geometry comes from the weights (the config said inter_channels C/2)
    assert loaded.cfg.model.non_local_inter_channels_one is True
    assert "model.non_local_inter_channels_one=True" in caplog.text
    assert "7 classes" in caplog.text and "ignored" in caplog.text
    model = loaded.model
    for modality in ("visible", "infrared"):
        x = images(1 if modality == "visible" else 2)
        with torch.no_grad():
            ours = model.extract(x, modality)
        expected = reference_features(net, x, modality)
        assert ours.shape == expected.shape == (3, 2048)
        assert (ours - expected).abs().max().item() < 1e-4, modality
    # the two stems differ: visible and infrared features of the same images are not equal
    x = images(3)
    with torch.no_grad():
        assert (model.extract(x, "visible") - model.extract(x, "infrared")).abs().max() > 1e-3


def test_bare_and_dataparallel_state_dicts(reference, tmp_path):
    net, _ = reference
    x = images(4)
    expected = reference_features(net, x, "visible")
    for name, state in (("bare.pth", net.state_dict()),
                        ("dp.pth", {f"module.{k}": v for k, v in net.state_dict().items()})):
        torch.save(state, tmp_path / name)
        with torch.no_grad():
            got = load_model(agw_config(), tmp_path / name).model.extract(x, "visible")
        assert (got - expected).abs().max().item() < 1e-4, name


def test_half_width_non_local_is_detected(tmp_path):
    net = randomised_reference(5, inter=256, seed=1)  # layer2's C/2 = 256 ... layer3 needs 512
    state = net.state_dict()
    with pytest.raises(CheckpointError, match="different widths"):
        torch.save({"net": state}, tmp_path / "mixed.t")
        load_model_checkpoint(tmp_path / "mixed.t")


def test_report_lists_used_and_ignored_keys(reference):
    _, path = reference
    ckpt = load_model_checkpoint(path)
    report = ckpt["reference"]
    assert ckpt["source_format"] == "agw-caj-reference" and ckpt["num_classes"] == NUM_CLASSES
    assert ckpt["epoch"] == 38 and ckpt["config"] is None
    assert report.non_local_blocks == {2: 2, 3: 3} and report.inter_channels_one
    # every used tensor has a vireid key; the unused ResNet parts of the stems are ignored, not lost
    assert all(k.startswith(("backbone.", "neck.")) for k in ckpt["model"])
    assert any(k.startswith("visible_module.visible.layer4.") for k in report.ignored)
    assert any(k.startswith("base_resnet.base.fc.") for k in report.ignored)
    assert not any(k.startswith("base_resnet.base.layer") for k in report.ignored)


def test_malformed_files_are_refused_by_name(reference, tmp_path):
    net, _ = reference
    state = net.state_dict()
    cases = {
        "no_classifier.t": ({"net": {k: v for k, v in state.items() if k != "classifier.weight"}},
                            "classifier.weight"),
        "extra_key.t": ({"net": {**state, "head.extra.weight": torch.zeros(3)}}, "head.extra.weight"),
        "not_a_state.t": ({"weights": [1, 2, 3]}, "neither a vireid checkpoint .* nor a checkpoint of the AGW"),
        "resnet18.t": ({"net": {k: v for k, v in state.items() if "conv3" not in k}}, "ResNet-50"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=message) as err:
            load_model(agw_config(), tmp_path / name)
        assert name in str(err.value)
    # a tensor of the wrong shape is named (no partial load)
    bad = dict(state)
    bad["bottleneck.weight"] = torch.ones(1024)
    torch.save({"net": bad}, tmp_path / "shape.t")
    with pytest.raises(CheckpointError, match=r"shape.t.*neck\.bn\.weight"):
        load_model(agw_config(), tmp_path / "shape.t")
    # an empty file is a named error, not a traceback
    (tmp_path / "empty.t").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.t"):
        load_model(agw_config(), tmp_path / "empty.t")
    # a reference network needs an AGW or CAJ config
    with pytest.raises(ConfigError, match="agw or caj"):
        load_model(agw_config("model.name=dam", "model.non_local=false"), reference[1])
    with pytest.raises(CheckpointError, match="records no config"):
        load_model(None, reference[1])


def test_fine_tuning_starts_from_a_reference_checkpoint(reference):
    net, path = reference
    cfg = agw_config("model.non_local_inter_channels_one=true")
    model = build_model(cfg, 11)  # a new dataset: 11 classes instead of 7
    report = initialise_from_checkpoint(model, path)
    assert report["skipped"] == ["neck.classifier.weight"] and report["missing"] == []
    ref = net.state_dict()
    own = model.state_dict()
    assert torch.equal(own["backbone.shared.layer3.5.conv2.weight"], ref["base_resnet.base.layer3.5.conv2.weight"])
    assert torch.equal(own["backbone.infrared.stem.0.weight"], ref["thermal_module.thermal.conv1.weight"])
    assert torch.equal(own["backbone.non_local.layer3.2.g.weight"], ref["NL_3.2.g.0.weight"])
    # a config whose non-local blocks are C/2 wide does not fit: refused with the keys named
    with pytest.raises(CheckpointError, match="shape mismatches.*non_local"):
        initialise_from_checkpoint(build_model(agw_config(), 11), path)


def test_cli_convert_then_test_embed_and_train_from_it(reference, tmp_path, capsys):
    import vireid.cli as cli
    from vireid.data.synthetic import generate

    _, path = reference
    generate("sysu", tmp_path / "data", ids=8, seed=0, images_per_camera=1, size=(H, W), workers=1, progress=False)
    config = write_tiny_config(tmp_path / "agw.yaml", root=tmp_path / "data",
                               data={"height": H, "width": W, "pad": 2, "ids_per_batch": 2, "images_per_id": 2},
                               model={"arch": "resnet50", "non_local": True},
                               test={"trials": 1, "batch_size": 16})
    # vireid test takes the .t file as it is
    assert cli.main(["test", str(config), "--checkpoint", str(path), "--json", str(tmp_path / "raw.json")]) == 0
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert raw["checkpoint_format"] == "agw-caj-reference" and raw["epoch"] == 38
    # vireid convert writes a vireid checkpoint that records the config: same numbers, no config needed later
    out = tmp_path / "converted.pt"
    assert cli.main(["convert", str(path), "--config", str(config), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["test", str(config), "--checkpoint", str(out), "--json", str(tmp_path / "conv.json")]) == 0
    conv = json.loads((tmp_path / "conv.json").read_text())
    assert conv["mean"] == raw["mean"]
    assert load_model(None, out).cfg.model.non_local_inter_channels_one is True
    # vireid embed with the raw file
    assert cli.main(["embed", str(config), "--checkpoint", str(path), "--images", str(tmp_path / "data" / "cam1"),
                     "--modality", "visible", "--out", str(tmp_path / "feats")]) == 0
    assert "features of dimension 2048" in capsys.readouterr().out
    # fine-tuning: train.init_checkpoint
    run = tmp_path / "run"
    assert cli.main(["train", str(config), f"output_dir={run}", "train.epochs=1", "train.iters_per_epoch=1",
                     "train.eval_every=0", f"train.init_checkpoint={path}", "optim.lr=1e-4", "optim.backbone_lr=1e-5",
                     "model.non_local_inter_channels_one=true"]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
