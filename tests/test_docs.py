"""Docs that run: every command of README.md parses and its config resolves; the README's tour and its
Python blocks, and docs/reproduce.md's Python one-liners, are executed on small synthetic data. (docs/reproduce.md's
``vireid`` commands are parsed and their configs resolved by tests/test_configs.py.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vireid.config import load_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
REPRODUCE = REPO / "docs" / "reproduce.md"


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def shell_commands(path: Path) -> list[str]:
    """The command lines of the bash blocks (comments stripped, continuations joined)."""
    out = []
    for block in blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


README_VIREID = [c for c in shell_commands(README) if c.startswith(("vireid ", "torchrun "))]


def as_vireid_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "torchrun":  # torchrun ... -m vireid ARGS
        argv = argv[argv.index("vireid") + 1:]
    else:
        argv = argv[1:]
    return argv


def test_readme_has_a_tour():
    assert len(README_VIREID) >= 15
    assert not [c for c in README_VIREID if "..." in c or "<" in c], "placeholders in the README tour"


@pytest.mark.parametrize("command", README_VIREID, ids=[c[:80] for c in README_VIREID])
def test_readme_command_parses_and_its_config_resolves(command):
    import vireid.cli as cli

    try:
        args = cli.build_parser().parse_args(as_vireid_argv(command))
    except SystemExit as exc:
        raise AssertionError(f"README.md: {command!r} does not parse (exit {exc.code})") from None
    config = getattr(args, "config", None)
    if isinstance(config, str) and config.endswith(".yaml"):
        cfg = load_config(REPO / config, list(getattr(args, "overrides", []) or []))
        assert cfg.model.name


def test_reproduce_md_python_one_liners_run(tmp_path):
    """The RegDB averaging command, on per-trial result files written as `vireid test --json` writes them."""
    commands = [c for c in shell_commands(REPRODUCE) if c.startswith("python -c")]
    assert commands
    rows = []
    for t in range(1, 11):
        row = {"trial": t, "rank1": float(t), "rank5": 2.0 * t, "rank10": 50.0, "rank20": 60.0, "mAP": 10.0 + t,
               "mINP": 5.0}
        rows.append(row)
        for model in ("agw", "caj", "dam"):
            folder = tmp_path / "runs" / "regdb" / model / f"trial{t}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "infrared_to_visible.json").write_text(json.dumps({"trials": [row], "mean": row}))
    for command in commands:
        argv = shlex.split(command)
        argv[0] = sys.executable  # "python" of the environment vireid is installed in
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("10 trials")
        assert "'rank1': 5.5" in result.stdout and "'mAP': 15.5" in result.stdout


@pytest.mark.slow
def test_readme_tour_runs_start_to_end_on_small_data(tmp_path, monkeypatch, capsys):
    """The tour's bash block of README.md, command by command as a newcomer pastes it, in a fresh folder:
    on a smaller synthetic set (12 identities, 4 for testing) and with 2 training steps instead of 480,
    every command succeeds and leaves what the next one uses. ``vireid serve`` (which runs until stopped)
    is only parsed; tests/test_service.py serves the same kind of index."""
    import vireid.cli as cli

    tour = next(b for b in blocks(README, "bash") if "vireid synth" in b)
    commands = [c for c in shell_commands_of(tour) if c.startswith("vireid ")]
    assert len(commands) >= 14
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] == "synth":
            argv[argv.index("--ids") + 1] = "12"
            argv[argv.index("--test-ids") + 1] = "4"
        if argv[0] == "train":  # overrides right after CONFIG (options like --onnx take several values)
            argv[2:2] = ["train.epochs=1", "train.iters_per_epoch=2", "test.trials=2", "data.ids_per_batch=4"]
        if argv[0] == "test":
            argv[2:2] = ["test.trials=2"]
        if argv[0] == "visualize" and argv[1] == "ranks":
            argv[argv.index("--worst") + 1] = "2"
        if argv[0] == "serve":
            cli.build_parser().parse_args(argv)
            continue
        code = cli.main(argv)
        captured = capsys.readouterr()
        assert code == 0, (command, captured.err[-2000:])
    assert (tmp_path / "out" / "idx").is_dir() and (tmp_path / "out" / "worst.png").is_file()
    assert (tmp_path / "out" / "curves.png").is_file() and (tmp_path / "runs" / "dam_tiny" / "test.json").is_file()
    assert (tmp_path / "out" / "report.png").is_file()  # vireid report --plot

    # the README's Python blocks, in order, where the tour left its files (the API section builds on it)
    code = "\n".join(blocks(README, "python"))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Rank-1" in result.stdout and "mAP" in result.stdout


def shell_commands_of(block: str) -> list[str]:
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
