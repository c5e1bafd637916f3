"""``vireid train`` / ``vireid test`` end to end on tiny synthetic datasets with a tiny DAM (ResNet-18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vireid.cli as cli
from tests.layouts import SMALL_BATCH, write_tiny_config
from vireid.config import load_config
from vireid.data.synthetic import generate
from vireid.engine import run as run_module
from vireid.models.checkpoint import load_checkpoint


def write_dam_config(path: Path, name: str, root: Path) -> Path:
    """Tiny DAM, 2 epochs of 1 step, evaluated every epoch, deterministic."""
    return write_tiny_config(path, root=root, data={"name": name, **SMALL_BATCH}, model={"name": "dam"},
                             train={"epochs": 2, "iters_per_epoch": 1, "eval_every": 1, "log_every": 1,
                                    "deterministic": True},
                             test={"trials": 2, "batch_size": 64})


def vireid(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.fixture(autouse=True)
def _only_my_commands(monkeypatch):
    # the parser imports every command module; only train and test are under test here
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["train", "test"])
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.fixture(scope="module")
def sysu_config(tmp_path_factory, small_sysu) -> Path:
    path = tmp_path_factory.mktemp("sysu") / "tiny.yaml"
    write_dam_config(path, "sysu", small_sysu)
    return path


@pytest.fixture(scope="module")
def straight_run(sysu_config, tmp_path_factory) -> Path:
    """A 2-epoch run trained without interruption."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    before = torch.are_deterministic_algorithms_enabled()
    saved = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = ["train", "test"]
    try:
        assert vireid("train", str(sysu_config), f"output_dir={out}") == 0
    finally:
        cli.COMMAND_MODULES = saved
        torch.use_deterministic_algorithms(before)
    return out


def test_train_writes_the_run_folder(straight_run, sysu_config):
    run = straight_run
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "results.json", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*"))
    saved = load_config(run / "config.yaml")
    assert saved == load_config(sysu_config, [f"output_dir={run}"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1] and all(r["eval"]["trials"][0]["trial"] == 0 for r in epochs)
    assert [r["step"] for r in records if r["type"] == "train"] == [1, 2]
    results = json.loads((run / "results.json").read_text())
    assert [row["trial"] for row in results["trials"]] == [0, 1]
    assert results["protocol"]["mode"] == "all" and results["dataset"] == "sysu"
    for k, v in results["mean"].items():  # scalars and the CMC curve (element-wise)
        assert v == pytest.approx(np.mean([row[k] for row in results["trials"]], axis=0))
    last, best = (load_checkpoint(run / "checkpoints" / n) for n in ("last.pt", "best.pt"))
    assert last["epoch"] == 1 and last["global_step"] == 2
    best_eval = max(epochs, key=lambda r: r["eval"]["mean"]["mAP"])
    assert best["epoch"] == best_eval["epoch"] and best["best_metric"] == best_eval["eval"]["mean"]["mAP"]
    assert "final test (last weights)" in (run / "log.txt").read_text()


def test_test_command_reproduces_the_final_results(straight_run, sysu_config, tmp_path, capsys):
    out = tmp_path / "test.json"
    assert vireid("test", str(sysu_config), "--checkpoint", str(straight_run / "checkpoints" / "last.pt"),
                  "--trials", "2", "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "from " + str(straight_run / "checkpoints" / "last.pt") in printed
    tested = json.loads(out.read_text())
    final = json.loads((straight_run / "results.json").read_text())
    assert tested["trials"] == final["trials"] and tested["mean"] == final["mean"]
    assert tested["untrained"] is False and tested["epoch"] == 1
    assert set(tested) >= {"dataset", "protocol", "trials", "mean"}
    assert "selected_on_test_set" not in tested
    # best.pt was selected on the test set (the reference code's way): its results say so
    assert vireid("test", str(sysu_config), "--checkpoint", str(straight_run / "checkpoints" / "best.pt"),
                  "--trials", "1", "--json", str(out)) == 0
    assert json.loads(out.read_text())["selected_on_test_set"] == "mAP on test trial(s) [0]"


def test_resume_after_one_epoch_matches_the_uninterrupted_run(straight_run, sysu_config, tmp_path):
    out = tmp_path / "resumed"
    assert vireid("train", str(sysu_config), f"output_dir={out}", "train.epochs=1") == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 0
    assert vireid("train", str(sysu_config), f"output_dir={out}", "train.epochs=2", "--resume") == 0
    a = load_checkpoint(straight_run / "checkpoints" / "last.pt")
    b = load_checkpoint(out / "checkpoints" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((out / "results.json").read_text())["mean"] == json.loads(
        (straight_run / "results.json").read_text())["mean"]


def test_batches_augmented_as_tensors_train_the_same_weights(straight_run, sysu_config, tmp_path):
    """data.augment_on=device (the CUDA default) on the CPU: the same batches, so the same weights as the
    per-image augmentation, straight through and resumed after one epoch."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert vireid("train", str(sysu_config), f"output_dir={straight}", "data.augment_on=device") == 0
    assert vireid("train", str(sysu_config), f"output_dir={resumed}", "data.augment_on=device", "train.epochs=1") == 0
    assert vireid("train", str(sysu_config), f"output_dir={resumed}", "data.augment_on=device", "train.epochs=2",
                  "--resume") == 0
    reference = load_checkpoint(straight_run / "checkpoints" / "last.pt")["model"]
    for run in (straight, resumed):
        weights = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
        assert all(torch.equal(reference[k], weights[k]) for k in reference), run


def test_existing_run_needs_resume_and_resume_needs_a_run(straight_run, sysu_config, tmp_path, capsys):
    assert vireid("train", str(sysu_config), f"output_dir={straight_run}") == 2
    assert "--resume" in capsys.readouterr().err
    assert vireid("train", str(sysu_config), f"output_dir={tmp_path / 'new'}", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_missing_unreadable_or_mismatching_checkpoint_exits_2(straight_run, sysu_config, tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert vireid("test", str(sysu_config), "--checkpoint", str(missing)) == 2
    assert f"{missing}: checkpoint file does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    assert vireid("test", str(sysu_config), "--checkpoint", str(garbage)) == 2
    assert "cannot be read" in capsys.readouterr().err
    # a checkpoint without the PCB local branch does not fit a model with one: keys are listed
    assert vireid("test", str(sysu_config), "--checkpoint", str(straight_run / "checkpoints" / "last.pt"),
                  "model.local_parts=3") == 2
    err = capsys.readouterr().err
    assert "weights do not fit DAM" in err and "missing keys" in err


def test_untrained_is_explicit_and_labelled(sysu_config, tmp_path, capsys):
    out = tmp_path / "untrained.json"
    assert vireid("test", str(sysu_config), "--untrained", "--trials", "1", "--json", str(out)) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["untrained"] is True and results["checkpoint"] is None and len(results["trials"]) == 1
    with pytest.raises(SystemExit):  # neither --checkpoint nor --untrained
        vireid("test", str(sysu_config))


def test_regdb_trains_on_data_trial(tmp_path):
    generate("regdb", tmp_path / "regdb", ids=8, seed=0, images_per_camera=2, size=(32, 16), workers=1,
             progress=False)
    config = tmp_path / "regdb.yaml"
    write_dam_config(config, "regdb", tmp_path / "regdb")
    out = tmp_path / "run"
    assert vireid("train", str(config), f"output_dir={out}", "data.trial=3", "train.epochs=1",
                  "train.eval_every=0", "test.direction=infrared_to_visible") == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["trial"] for row in results["trials"]] == [3]
    assert results["protocol"]["direction"] == "infrared_to_visible"
    # trial 3's training split decides the classifier size
    from vireid.data import build_dataset

    pids = {r.pid for r in build_dataset("regdb", tmp_path / "regdb").train_records(trial=3)}
    assert load_checkpoint(out / "checkpoints" / "last.pt")["num_classes"] == len(pids)


def test_all_trials_trains_each_trial_and_averages(tmp_path, monkeypatch):
    """The loop of --all-trials, with run_training replaced by a recorder (10 real trainings are slow)."""
    generate("regdb", tmp_path / "regdb", ids=8, seed=0, images_per_camera=2, size=(32, 16), workers=1,
             progress=False)
    config = tmp_path / "regdb.yaml"
    write_dam_config(config, "regdb", tmp_path / "regdb")
    calls = []

    def fake_run_training(cfg, *, resume=False, dist=None):
        trial = int(cfg.data.trial)
        calls.append((trial, Path(cfg.output_dir).name, resume))
        row = {"trial": trial, "rank1": 10.0 * trial, "rank5": 50.0, "rank10": 60.0, "rank20": 70.0,
               "mAP": float(trial), "mINP": 1.0}
        results = {"dataset": "regdb", "protocol": {}, "trials": [row], "mean": dict(row)}
        run_module.write_json(results, Path(cfg.output_dir) / "results.json")
        return results

    monkeypatch.setattr(run_module, "run_training", fake_run_training)
    out = tmp_path / "all"
    assert vireid("train", str(config), f"output_dir={out}", "--all-trials") == 0
    assert calls == [(t, f"trial{t}", False) for t in range(1, 11)]
    results = json.loads((out / "results.json").read_text())
    assert [row["trial"] for row in results["trials"]] == list(range(1, 11))
    assert results["mean"]["mAP"] == pytest.approx(5.5) and results["mean"]["rank1"] == pytest.approx(55.0)
    # resume: finished trials are read back, trial 4 (its results removed) runs again
    (out / "trial4" / "results.json").unlink()
    calls.clear()
    assert vireid("train", str(config), f"output_dir={out}", "--all-trials", "--resume") == 0
    assert calls == [(4, "trial4", False)]


def test_all_trials_rejects_datasets_without_per_trial_training(sysu_config, tmp_path, capsys):
    assert vireid("train", str(sysu_config), f"output_dir={tmp_path / 'x'}", "--all-trials") == 2
    assert "one model per trial" in capsys.readouterr().err


LAUNCHER = """\
import sys
import vireid.cli as cli
cli.COMMAND_MODULES = ["train", "test"]
raise SystemExit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes(sysu_config, tmp_path):
    """``torchrun --standalone --nproc_per_node 2`` runs vireid train with Gloo; rank 0 writes the run."""
    import os
    import subprocess
    import sys

    launcher = tmp_path / "launch_vireid.py"
    launcher.write_text(LAUNCHER)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(cli.__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
         "train", str(sysu_config), f"output_dir={out}", "train.iters_per_epoch=2", "test.trials=1"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in (out / "log.txt").read_text()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 2 global batches per epoch split over 2 ranks: 1 step per rank per epoch, logged once (rank 0)
    assert [r["step"] for r in records if r["type"] == "epoch"] == [1, 2]
    assert len(load_checkpoint(out / "checkpoints" / "last.pt")["rng"]) == 2
    assert [row["trial"] for row in json.loads((out / "results.json").read_text())["trials"]] == [0]


@pytest.mark.parametrize("override, message", [
    ("data.name=nope", "data.name: unknown dataset 'nope'"),
    ("test.mode=outdoor", "test.mode='outdoor' is not valid"),
    ("test.shots=3", "test.shots=3 is not valid"),
    ("data.root=/nonexistent/sysu", "/nonexistent/sysu"),
    # known only to the registries: the model is built before the run folder exists
    ("model.arch=resnet5", "model.arch: unknown backbone 'resnet5'"),
    ("model.name=dma", "model.name: unknown model 'dma'"),
    ("loss.metric=nope", "loss.metric: unknown or unsupported metric loss 'nope'"),
    ("train.epochs=-1", "train.epochs=-1 is out of range"),
])
def test_a_run_that_fails_validation_leaves_no_run_folder(sysu_config, tmp_path, capsys, override, message):
    out = tmp_path / "never"
    assert vireid("train", str(sysu_config), f"output_dir={out}", override) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_options_the_protocol_ignores_are_reported_and_trials_capped(sysu_config, tmp_path, caplog):
    from vireid.config import load_config
    from vireid.data import build_dataset

    cfg = load_config(sysu_config, ["test.direction=infrared_to_visible", "test.trials=12"])
    dataset = build_dataset("sysu", cfg.data.root)
    with caplog.at_level("WARNING"):
        protocol = run_module.build_protocol(dataset, cfg)
        trials = run_module.final_test_trials(dataset, protocol, cfg)
    assert "test.direction='infrared_to_visible' is ignored" in caplog.text
    assert trials == list(range(10)) and "test.trials=12 but the sysu protocol has 10 trial(s)" in caplog.text


@pytest.mark.slow
def test_parallel_trials_equal_the_sequential_run(tmp_path):
    """--all-trials --parallel 2: each trial in its own process, the same rows as one after another."""
    generate("regdb", tmp_path / "regdb", ids=6, seed=0, images_per_camera=2, size=(32, 16), workers=1,
             progress=False)
    config = write_dam_config(tmp_path / "regdb.yaml", "regdb", tmp_path / "regdb")
    overrides = ["train.epochs=1", "train.eval_every=0", "test.trials=1"]
    assert vireid("train", str(config), f"output_dir={tmp_path / 'seq'}", *overrides, "--all-trials") == 0
    assert vireid("train", str(config), f"output_dir={tmp_path / 'par'}", *overrides, "--all-trials",
                  "--parallel", "2") == 0
    seq = json.loads((tmp_path / "seq" / "results.json").read_text())
    par = json.loads((tmp_path / "par" / "results.json").read_text())
    assert [r["trial"] for r in par["trials"]] == list(range(1, 11))
    assert par["trials"] == seq["trials"] and par["mean"] == seq["mean"]
    for t in (1, 10):
        a = load_checkpoint(tmp_path / "seq" / f"trial{t}" / "checkpoints" / "last.pt")["model"]
        b = load_checkpoint(tmp_path / "par" / f"trial{t}" / "checkpoints" / "last.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_parts_are_built_before_anything_is_written(sysu_config, tmp_path):
    """build_training_parts reads the data, builds the loader, the model and the evaluator and writes no run
    folder; the trainer it assembles takes the parts as they are, and trains as run_training would."""
    out = tmp_path / "run"
    cfg = load_config(sysu_config, [f"output_dir={out}", "train.epochs=1", "train.iters_per_epoch=1"])
    parts = run_module.build_training_parts(cfg)
    assert not out.exists()
    assert parts.trials == [0, 1] and parts.settings.epochs == 1 and parts.optim.name == cfg.optim.name
    records = parts.dataset.train_records()
    paired = {r.pid for r in records if r.modality == "visible"} & {r.pid for r in records if r.modality == "infrared"}
    assert parts.model.num_classes == parts.loader.num_classes == len(paired) > 0
    trainer = parts.trainer()
    assert trainer.model is parts.model and trainer.train_loader is parts.loader
    assert trainer.final_test_trials == [0, 1] and trainer.eval_trials == [0]
