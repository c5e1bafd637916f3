"""``vireid data check | split | preview`` through the command-line entry point."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types

import pytest

from tests.layouts import make_llcm, make_manifest, make_regdb, make_sysu
from vireid.cli import COMMAND_MODULES
from vireid.cli import data as data_cli
from vireid.data import registry
from vireid.data.llcm import LLCM
from vireid.data.manifest import ManifestDataset
from vireid.data.regdb import RegDB
from vireid.data.sysu import SYSUMM01
from vireid.errors import VireidError


def run_cli(argv: list[str]) -> int:
    """``vireid.cli.main(argv)``; while other command groups are not written yet, the same handling on a
    parser holding only the ``data`` group."""
    if all(importlib.util.find_spec(f"vireid.cli.{name}") for name in COMMAND_MODULES):
        from vireid.cli import main

        return main(argv)
    parser = argparse.ArgumentParser(prog="vireid")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VireidError as exc:
        print(f"vireid {args.command}: error: {exc}", file=sys.stderr)
        return 2


def test_check_prints_summary(tmp_path, capsys):
    root = make_sysu(tmp_path / "SYSU", images=True)
    assert run_cli(["data", "check", str(root), "--dataset", "sysu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"sysu {root.resolve()}  protocol metric=sysu mode=all shots=1 sampler=community"
    )
    assert out[1].split() == ["split", "modality", "camera", "identities", "images"]
    assert out[2].split() == ["train", "visible", "1", "1", "2"]
    assert "query    all       -                3       8" in out
    assert out[-1] == "ok: 38 images opened"


def test_check_without_images_does_not_open_them(tmp_path, capsys):
    root = make_regdb(tmp_path / "RegDB")  # empty files: opening them would fail
    assert run_cli(["data", "check", str(root), "--dataset", "regdb", "--no-images"]) == 0
    out = capsys.readouterr().out
    assert "trial 1" in out and out.rstrip().endswith("ok: 24 images listed (not opened: --no-images)")
    assert run_cli(["data", "check", str(root), "--dataset", "regdb"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_check_broken_dataset_exits_nonzero(tmp_path, capsys):
    root = make_sysu(tmp_path / "SYSU")
    (root / "exp" / "test_id.txt").write_text("4,five,6\n")
    assert run_cli(["data", "check", str(root), "--dataset", "sysu", "--no-images"]) == 2
    err = capsys.readouterr().err
    assert f"{root.resolve() / 'exp' / 'test_id.txt'}:1:" in err and "'five'" in err


def test_split_sysu_matches_protocol(tmp_path, capsys):
    root = make_sysu(tmp_path / "SYSU")
    ds = SYSUMM01(root)
    for mode, shots, trial, image_set in (
        ("all", 1, 3, "gallery"),
        ("indoor", 10, 7, "gallery"),
        ("all", 1, 0, "query"),
    ):
        argv = ["data", "split", str(root), "--dataset", "sysu", "--mode", mode, "--shots", str(shots),
                "--sampler", "community", "--trial", str(trial), "--set", image_set]  # fmt: skip
        assert run_cli(argv) == 0
        protocol = ds.protocol(mode=mode, shots=shots)
        records = protocol.gallery(trial) if image_set == "gallery" else protocol.query(trial)
        assert capsys.readouterr().out.splitlines() == [ds.relpath(r) for r in records]


def test_split_regdb_llcm_manifest(tmp_path, capsys):
    regdb = make_regdb(tmp_path / "RegDB")
    assert run_cli(["data", "split", str(regdb), "--dataset", "regdb", "--direction", "infrared_to_visible",
                    "--trial", "2", "--set", "query"]) == 0  # fmt: skip
    ds = RegDB(regdb)
    assert capsys.readouterr().out.splitlines() == [ds.relpath(r) for r in ds.test_split(2)[1]]
    assert run_cli(["data", "split", str(regdb), "--dataset", "regdb", "--trial", "2", "--set", "train"]) == 0
    assert capsys.readouterr().out.splitlines() == [ds.relpath(r) for r in ds.train_records(2)]

    llcm = make_llcm(tmp_path / "LLCM")
    assert run_cli(["data", "split", str(llcm), "--dataset", "llcm", "--trial", "4", "--set", "gallery"]) == 0
    ds = LLCM(llcm)
    assert capsys.readouterr().out.splitlines() == [ds.relpath(r) for r in ds.protocol().gallery(4)]

    mine = make_manifest(tmp_path / "mine")
    assert run_cli(["data", "split", str(mine / "manifest.csv"), "--dataset", "manifest", "--metric", "regdb",
                    "--set", "gallery"]) == 0  # fmt: skip
    ds = ManifestDataset(mine)
    assert capsys.readouterr().out.splitlines() == [ds.relpath(r) for r in ds.protocol().gallery(0)]


def test_split_rejects_options_and_trials_that_do_not_apply(tmp_path, capsys):
    regdb = make_regdb(tmp_path / "RegDB")
    assert (
        run_cli(["data", "split", str(regdb), "--dataset", "regdb", "--mode", "indoor", "--set", "query"])
        == 2
    )
    assert "--mode does not apply to dataset 'regdb'" in capsys.readouterr().err
    assert run_cli(["data", "split", str(regdb), "--dataset", "regdb", "--trial", "0", "--set", "query"]) == 2
    assert "trial 0 is not valid" in capsys.readouterr().err
    assert run_cli(["data", "split", str(regdb), "--dataset", "regdb", "--trial", "5", "--set", "query"]) == 2
    assert "test_visible_5.txt" in capsys.readouterr().err


def test_split_official_sampler_perm_file_missing(tmp_path, capsys):
    root = make_sysu(tmp_path / "SYSU")
    missing = tmp_path / "rand_perm_cam.mat"
    assert run_cli(["data", "split", str(root), "--dataset", "sysu", "--sampler", "official",
                    "--perm-file", str(missing), "--set", "gallery"]) == 2  # fmt: skip
    assert str(missing) in capsys.readouterr().err


def test_preview_calls_contact_sheet(tmp_path, capsys, monkeypatch):
    root = make_sysu(tmp_path / "SYSU")
    calls = []

    def contact_sheet(dataset, out, *, identities=6, seed=0):
        calls.append((type(dataset).__name__, out, identities, seed))
        return out

    if importlib.util.find_spec("vireid.data.preview") is None:
        module = types.ModuleType("vireid.data.preview")
        monkeypatch.setitem(sys.modules, "vireid.data.preview", module)
    else:
        import vireid.data.preview as module
    monkeypatch.setattr(module, "contact_sheet", contact_sheet, raising=False)
    out = tmp_path / "sheet.png"
    assert (
        run_cli(["data", "preview", str(root), "--dataset", "sysu", "--out", str(out), "--identities", "3"])
        == 0
    )
    assert calls == [("SYSUMM01", out, 3, 0)]
    assert capsys.readouterr().out.strip() == f"wrote {out}"


def test_dataset_choices_come_from_the_registry(monkeypatch, capsys):
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    registry.register_dataset("my_plugin")(type("MyPlugin", (ManifestDataset,), {}))
    parser = argparse.ArgumentParser(prog="vireid")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "check", "x", "--dataset", "my_plugin"])
    assert args.dataset == "my_plugin"
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "check", "x", "--dataset", "nope"])
    assert "choose from" in capsys.readouterr().err


def test_data_without_subcommand_prints_help(capsys):
    assert run_cli(["data"]) == 2
    assert "check" in capsys.readouterr().out
