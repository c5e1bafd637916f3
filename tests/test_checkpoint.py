"""Checkpoints: round trip, atomic writes, RNG states, clear errors for bad files and bad weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from vireid import __version__
from vireid.errors import CheckpointError
from vireid.models import checkpoint as ckpt_mod
from vireid.models.checkpoint import (
    load_checkpoint,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class Net(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.backbone = nn.Linear(4, width)
        self.bn = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, 2)


def _trained_state():
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loss = net.head(net.bn(net.backbone(torch.randn(6, 4)))).pow(2).mean()
    loss.backward()
    opt.step()
    sched.step()
    return net, opt, sched


class Sampler:
    def __init__(self):
        self.state = {"epoch": 4, "seed": 7}

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, s):
        self.state = dict(s)


def test_round_trip_restores_every_part(tmp_path):
    net, opt, sched = _trained_state()
    path = save_checkpoint(tmp_path / "c" / "last.pt", model=net, epoch=4, optimizer=opt, scheduler=sched,
                           sampler=Sampler(), global_step=40, best_metric=12.5, best_epoch=3, num_classes=2,
                           config_yaml="train:\n  epochs: 5\n", extra={"note": "x"})
    assert path == tmp_path / "c" / "last.pt"
    ck = load_checkpoint(path)
    assert ck["vireid_version"] == __version__ and ck["format"] == "vireid-checkpoint"
    assert (ck["epoch"], ck["global_step"], ck["best_metric"], ck["best_epoch"], ck["num_classes"]) == (
        4, 40, 12.5, 3, 2)
    assert ck["sampler"] == {"epoch": 4, "seed": 7} and ck["config"].startswith("train:")
    assert ck["extra"] == {"note": "x"}

    net2 = Net()
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    net2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optimizer"])
    sched2.load_state_dict(ck["scheduler"])
    for k, v in net.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k])
    for i, s in opt.state_dict()["state"].items():
        assert torch.equal(s["momentum_buffer"], opt2.state_dict()["state"][i]["momentum_buffer"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.05) and sched2.last_epoch == 1


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = rng_state()
    first = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(state)
    again = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())
    assert first == again


def test_rng_state_survives_a_file(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    save_checkpoint(tmp_path / "a.pt", model=Net(), epoch=0)
    expected = (np.random.rand(2).tolist(), torch.rand(2).tolist())
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(load_checkpoint(tmp_path / "a.pt")["rng"][0])
    assert (np.random.rand(2).tolist(), torch.rand(2).tolist()) == expected


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=Net(), epoch=1)
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=Net(), epoch=2)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("kind", ["missing", "folder", "garbage", "truncated", "not_vireid", "future", "empty",
                                  "flipped"])
def test_bad_checkpoint_files_raise_checkpoint_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "x.pt"
    expect = {
        "missing": "does not exist",
        "folder": "is not a file",
        "garbage": "cannot be read",
        "truncated": "cannot be read",
        "not_vireid": "not a vireid checkpoint",
        "future": "format_version 99",
        "empty": "empty",
        "flipped": "fails its CRC-32 check",
    }[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    elif kind == "truncated":
        save_checkpoint(path, model=Net(), epoch=0)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_vireid":
        torch.save(Net().state_dict(), path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped":  # 64 flipped bytes inside a tensor record: torch.load alone reads them silently
        save_checkpoint(path, model=Net(), epoch=0)
        data = bytearray(path.read_bytes())
        import zipfile

        with zipfile.ZipFile(path) as archive:
            info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 8
        for i in range(start, start + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        torch.load(path, weights_only=True)  # the damage is invisible to torch
    elif kind == "future":
        save_checkpoint(path, model=Net(), epoch=0)
        ck = torch.load(path, weights_only=True)
        ck["format_version"] = 99
        torch.save(ck, path)
    with pytest.raises(CheckpointError, match=expect) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_load_model_weights_from_checkpoint_and_bare_state_dict(tmp_path):
    net, _, _ = _trained_state()
    save_checkpoint(tmp_path / "c.pt", model=net, epoch=0)
    torch.save(net.state_dict(), tmp_path / "bare.pth")
    for name in ("c.pt", "bare.pth"):
        fresh = Net()
        assert load_model_weights(fresh, tmp_path / name) == {"missing": [], "unexpected": []}
        for k, v in net.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v)


def test_load_model_weights_lists_missing_and_unexpected_keys(tmp_path):
    state = Net().state_dict()
    del state["head.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as err:
        load_model_weights(Net(), tmp_path / "w.pth")
    msg = str(err.value)
    assert str(tmp_path / "w.pth") in msg
    assert "1 missing keys: head.weight" in msg and "1 unexpected keys: extra.weight" in msg
    # non-strict: allowed, reported, and the rest is loaded
    fresh = Net()
    report = load_model_weights(fresh, tmp_path / "w.pth", strict=False)
    assert report == {"missing": ["head.weight"], "unexpected": ["extra.weight"]}
    assert torch.equal(fresh.backbone.weight, state["backbone.weight"])


def test_load_model_weights_shape_mismatch_and_no_overlap(tmp_path):
    save_checkpoint(tmp_path / "wide.pt", model=Net(width=5), epoch=0)
    with pytest.raises(CheckpointError, match=r"backbone.weight \(file \(5, 4\) vs model \(3, 4\)\)"):
        load_model_weights(Net(width=3), tmp_path / "wide.pt", strict=False)
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="none of the model's"):
        load_model_weights(Net(), tmp_path / "other.pth", strict=False)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="neither a vireid checkpoint nor a state_dict"):
        load_model_weights(Net(), tmp_path / "list.pth")


def test_a_trained_model_is_built_without_drawing_a_random_start(tmp_path, monkeypatch):
    """load_trained_model builds the network with torch.nn.init's initialisers skipped, then loads every weight
    strictly: the weights and the test features equal the saved model's, the global random state is the one
    before the load, and the initialisers are back afterwards, also when building fails."""
    from vireid.config import config_to_yaml, load_config
    from vireid.errors import ConfigError
    from vireid.models import build_model
    from vireid.models.loading import load_trained_model
    from vireid.models.weights import initialisation_skipped

    cfg = load_config("configs/sysu/dam_tiny.yaml")
    torch.manual_seed(3)
    saved = build_model(cfg, 7).eval()
    path = save_checkpoint(tmp_path / "m.pt", model=saved, epoch=1, num_classes=7, config_yaml=config_to_yaml(cfg))
    state = torch.random.get_rng_state()
    loaded, _ = load_trained_model(cfg, path)
    assert torch.equal(torch.random.get_rng_state(), state)  # no random start drawn
    assert saved.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))
    images = torch.rand(2, 3, cfg.data.height, cfg.data.width)
    with torch.no_grad():
        assert torch.equal(saved.extract(images, "visible"), loaded.eval().extract(images, "visible"))

    initialisers = {name: getattr(nn.init, name) for name in ("kaiming_normal_", "uniform_", "constant_")}
    state = torch.random.get_rng_state()
    with initialisation_skipped():
        layer = nn.Linear(3, 2)
        assert all(getattr(nn.init, name) is not f for name, f in initialisers.items())
    assert all(getattr(nn.init, name) is f for name, f in initialisers.items())
    assert torch.equal(torch.random.get_rng_state(), state) and layer.weight.shape == (2, 3)
    with pytest.raises(ConfigError), initialisation_skipped():
        raise ConfigError("a failed build")
    assert all(getattr(nn.init, name) is f for name, f in initialisers.items())
    # only the thread inside skips: a layer built meanwhile in another thread starts as it would outside
    import threading

    torch.manual_seed(5)
    expected, built = nn.Linear(8, 4).weight.detach().clone(), {}

    def build_elsewhere():
        torch.manual_seed(5)
        built["weight"] = nn.Linear(8, 4).weight.detach().clone()

    with initialisation_skipped(), initialisation_skipped():  # nested: the originals come back after the outer
        thread = threading.Thread(target=build_elsewhere)
        thread.start()
        thread.join()
    assert torch.equal(built["weight"], expected)
    assert all(getattr(nn.init, name) is f for name, f in initialisers.items())
    # a file that misses a weight is refused: nothing is left as uninitialised memory
    partial = load_checkpoint(path)
    partial["model"] = {k: v for k, v in partial["model"].items() if "neck" not in k}
    with pytest.raises(CheckpointError, match="missing keys: .*neck"):
        load_trained_model(cfg, path, ckpt=partial)
