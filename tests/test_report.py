"""``vireid report`` and ``vireid train --seeds``: the published-rows file against docs/reproduce.md, the
figures of a report re-computed by hand, the matching to published rows, and real tiny runs made here."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest
import torch
import yaml

import vireid.cli as cli
from tests.layouts import SMALL_BATCH, write_tiny_config
from vireid.config import load_config
from vireid.engine import seeds as seeds_module
from vireid.report import build_report, format_report, load_published, read_runs
from vireid.report.published import REPO_ROOT
from vireid.report.runs import RUN_LOCAL_KEYS

REPRODUCE = REPO_ROOT / "docs" / "reproduce.md"
#: An absolute published percentage in a table cell (a relative "+2.77" or a weight "0.0005" is not one).
FIGURE = re.compile(r"(?<![+\-\d.])\d{2,3}\.\d{2}(?!\d)")


def vireid(*argv: str) -> int:
    return cli.main(list(argv))


# ---------------------------------------------------------------------------------------------
# the published rows
# ---------------------------------------------------------------------------------------------
def docs_table_rows() -> dict[str, list[float]]:
    """First cell -> the published figures of every docs/reproduce.md table row that has some."""
    rows = {}
    for line in REPRODUCE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        figures = [float(x) for cell in cells[1:] for x in FIGURE.findall(cell)]
        if figures:
            assert cells[0] not in rows, f"two rows of docs/reproduce.md start with {cells[0]!r}"
            rows[cells[0]] = figures
    return rows


def test_published_rows_are_the_numbers_of_docs_reproduce():
    published = load_published()
    by_docs_row: dict[str, list[float]] = {}
    for row in published:
        by_docs_row.setdefault(row.docs_row, []).extend(row.metrics.values())
    docs = docs_table_rows()
    assert set(by_docs_row) == set(docs), (set(by_docs_row) ^ set(docs))
    for name, figures in docs.items():
        assert by_docs_row[name] == figures, name  # same figures, in the order the docs print them
    assert len(published) == 42


def test_published_rows_name_configs_that_load_and_settings_they_test():
    for row in load_published():
        cfg = load_config(REPO_ROOT / row.config)
        assert cfg.model.name == row.method.lower() or row.method == "FAFE", row.label
        for key, value in row.setting.items():
            assert key in ("mode", "direction") and value in ("all", "indoor", "visible_to_infrared",
                                                              "infrared_to_visible"), row.label
        assert set(row.metrics) <= {"rank1", "rank10", "rank20", "mAP", "mINP"}, row.label


# ---------------------------------------------------------------------------------------------
# hand-made run folders: the arithmetic and the matching
# ---------------------------------------------------------------------------------------------
def make_run(folder: Path, config: dict, trials: list[dict], **results) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    body = {"dataset": config["data"]["name"], "protocol": {"dataset": config["data"]["name"], "mode": "all"},
            "trials": trials, **results}
    (folder / "results.json").write_text(json.dumps(body), encoding="utf-8")
    return folder


def paper_config(path: str, **overrides) -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_config(REPO_ROOT / path, [f"{k}={v}" for k, v in overrides.items()]),
                                 resolve=True)
    return cfg


def rows(values: list[tuple[float, float]]) -> list[dict]:
    return [{"trial": t, "rank1": r1, "rank10": 90.0, "rank20": 95.0, "mAP": m, "mINP": 40.0}
            for t, (r1, m) in enumerate(values)]


def test_seeds_are_grouped_and_their_spread_is_over_seeds(tmp_path):
    base = paper_config("configs/sysu/dam.yaml", **{"data.root": str(tmp_path / "nodata")})
    a = make_run(tmp_path / "s0", {**base, "train": {**base["train"], "seed": 0}}, rows([(70, 60), (72, 62)]))
    b = make_run(tmp_path / "s1", {**base, "train": {**base["train"], "seed": 1}}, rows([(74, 66), (76, 68)]))
    (group,) = build_report([a, b])
    assert group.seeds == [0, 1] and group.num_trials == 2
    s = group.stats("rank1")
    assert s["mean"] == pytest.approx(73.0)
    assert s["std_seeds"] == pytest.approx(statistics.stdev([71.0, 75.0]))  # of the seeds' means
    assert s["std_trials"] == pytest.approx(statistics.stdev([70.0, 72.0]))  # within a seed, averaged
    assert s["std"] == s["std_seeds"]
    # one seed alone: the spread is over its trials
    (single,) = build_report([a])
    assert single.stats("mAP")["std"] == pytest.approx(statistics.stdev([60.0, 62.0]))


def test_rows_are_named_by_what_differs_and_matched_to_published_numbers(tmp_path):
    root = {"data.root": str(tmp_path / "nodata")}
    full = make_run(tmp_path / "dam", paper_config("configs/sysu/dam.yaml", **root), rows([(73.0, 69.0)] * 2))
    ablated = make_run(tmp_path / "dam_no_mca", paper_config("configs/sysu/dam.yaml", **root, **{"model.mca_after": "[]"}),
                       rows([(71.0, 67.0)] * 2))
    flipped = make_run(tmp_path / "caj_flip", paper_config("configs/sysu/caj.yaml", **root), rows([(70.0, 66.0)] * 2),
                       flip=True)
    groups = build_report([full, ablated, flipped], against_published=True)
    names = [g.name for g in groups]
    # DAM, DAM without MCA and CAJ differ in too many keys to name: their folders, and how they were tested
    assert names == ["dam", "dam_no_mca", "caj_flip, flip"]
    assert groups[0].published["label"] == "DAM, Table 2: DAM all-search"
    assert groups[0].published["metrics"]["rank1"] == 74.18 and groups[0].published_note == ""
    assert groups[1].published is None and "model.mca_after" in groups[1].published_note
    # CAJ's published number was selected on the test set and flipped; this one is flipped, last weights
    assert groups[2].published["label"].startswith("CAJ")
    assert "selected on the test set" in groups[2].published_note
    md = format_report(groups, "md", against=True)
    assert "| dam | seed 0, 2 trials | 73.00 ± 0.00 |" in md
    assert "74.18 (-1.18)" in md  # published figure and this row minus it
    table = list(csv.DictReader(io.StringIO(format_report(groups, "csv", against=True))))
    assert float(table[0]["rank1_diff"]) == pytest.approx(73.0 - 74.18)
    assert table[2]["tested"] == "flip"
    latex = format_report(groups, "latex", against=True)
    assert r"\begin{tabular}" in latex and "73.00$\\pm$0.00" in latex


def test_only_the_ablation_keys_name_the_rows_of_a_two_run_ablation(tmp_path):
    root = {"data.root": str(tmp_path / "nodata")}
    full = make_run(tmp_path / "a", paper_config("configs/regdb/dam.yaml", **root), rows([(90.0, 80.0)]))
    off = make_run(tmp_path / "b", paper_config("configs/regdb/dam.yaml", **root, **{"model.pca_after": "[]"}),
                   rows([(88.0, 79.0)]))
    groups = build_report([full, off])
    assert groups[1].name == "without PCA" and groups[0].name == "model.pca_after=[4]"


def test_the_same_run_twice_and_bad_inputs_are_refused(tmp_path):
    from vireid.errors import ConfigError

    base = paper_config("configs/sysu/dam.yaml", **{"data.root": str(tmp_path / "x")})
    a = make_run(tmp_path / "a", base, rows([(1.0, 1.0)]))
    with pytest.raises(ConfigError, match="same seed"):
        build_report([a, a])
    with pytest.raises(ConfigError, match="no such run folder"):
        read_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no results.json"):
        read_runs(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not a JSON result file"):
        read_runs(tmp_path / "bad.json")


def test_run_local_keys_do_not_split_groups():
    from vireid.report.runs import comparable

    a = {"data.root": "x", "train.device": "cpu", "train.seed": 0, "test.mode": "all", "model.pretrained": "imagenet",
         "model.name": "dam"}
    b = {"data.root": "y", "train.device": "cuda", "train.seed": 3, "test.mode": "indoor",
         "model.pretrained": "/w/resnet50.pth", "model.name": "dam"}
    assert comparable(a) == comparable(b) == {"model.pretrained": "pretrained", "model.name": "dam"}
    assert "test." in RUN_LOCAL_KEYS


# ---------------------------------------------------------------------------------------------
# real tiny runs: --seeds, vireid test --json, vireid report
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, small_sysu):
    saved = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = ["train", "test", "report"]
    before = torch.are_deterministic_algorithms_enabled()
    base = tmp_path_factory.mktemp("report")
    try:
        config = write_tiny_config(base / "tiny.yaml", root=small_sysu, data={"name": "sysu", **SMALL_BATCH},
                                   model={"name": "dam"},
                                   train={"epochs": 1, "iters_per_epoch": 1, "eval_every": 0, "deterministic": True},
                                   test={"trials": 2, "batch_size": 64})
        assert vireid("train", str(config), f"output_dir={base / 'seeds'}", "--seeds", "0", "1") == 0
        assert vireid("train", str(config), f"output_dir={base / 'no_hc'}", "loss.lambda3=0") == 0
        assert vireid("test", str(config), "--checkpoint", str(base / "no_hc" / "checkpoints" / "last.pt"),
                      "test.flip=true", "--json", str(base / "no_hc" / "flip.json")) == 0
        yield base, config
    finally:
        cli.COMMAND_MODULES = saved
        torch.use_deterministic_algorithms(before)


def test_seeds_make_one_run_folder_each_and_a_summary(tiny_runs):
    base, _ = tiny_runs
    summary = json.loads((base / "seeds" / "results.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["runs"] == {"0": "seed0", "1": "seed1"}
    per_seed = [json.loads((base / "seeds" / f"seed{s}" / "results.json").read_text())["mean"] for s in (0, 1)]
    assert summary["mean"]["mAP"] == pytest.approx((per_seed[0]["mAP"] + per_seed[1]["mAP"]) / 2)
    assert summary["std_over_seeds"]["mAP"] == pytest.approx(statistics.stdev([p["mAP"] for p in per_seed]))
    assert [load_config(base / "seeds" / f"seed{s}" / "config.yaml").train.seed for s in (0, 1)] == [0, 1]


def test_report_of_the_tiny_runs(tiny_runs, capsys, tmp_path):
    base, _ = tiny_runs
    out_png = tmp_path / "report.png"
    assert vireid("report", str(base / "seeds"), str(base / "no_hc"), str(base / "no_hc" / "flip.json"),
                  "--against", "published", "--plot", str(out_png), "--out", str(tmp_path / "t.md")) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| row | runs | Rank-1 | Rank-10 | Rank-20 | mAP | mINP | tested |")
    assert "| loss.lambda3=2.0 | 2 seeds x 2 trials |" in text  # the seeds' row, named by what differs
    assert "| without the hetero-center loss (eq 12) | seed 0, 2 trials |" in text
    # the flipped test of the same checkpoint: the model as trained (from the checkpoint), tested with flip
    assert "| without the hetero-center loss (eq 12), flip | seed 0, 2 trials |" in text
    assert text.count("| synthetic data |") == 2 and "| synthetic data, flip |" in text
    assert "synthetic data: not comparable with any published number" in text
    # the figures are the runs' own: the two seeds' trials pooled
    seeds = [json.loads((base / "seeds" / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    pooled = statistics.fmean(r["rank1"] for s in seeds for r in s["trials"])
    assert f"| {pooled:.2f} ± " in lines[1]
    assert out_png.stat().st_size > 10_000 and (tmp_path / "t.md").read_text() in text
    # without --against: the same rows, no published lines
    assert vireid("report", str(base / "seeds"), str(base / "no_hc"), "--format", "csv") == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["row"] for r in table] == ["loss.lambda3=2.0", "without the hetero-center loss (eq 12)"]
    assert float(table[0]["rank1"]) == pytest.approx(pooled) and "rank1_published" not in table[0]
    assert table[0]["seeds"] == "0 1" and table[0]["trials"] == "2"


def test_seeds_resume_reads_finished_seeds_back(tmp_path, monkeypatch):
    calls = []

    def fake_training(cfg, *, resume=False, dist=None):
        calls.append((int(cfg.train.seed), Path(cfg.output_dir).name, resume))
        row = {"trial": 0, "rank1": 10.0 + cfg.train.seed, "rank5": 0.0, "rank10": 0.0, "rank20": 0.0, "mAP": 1.0,
               "mINP": 1.0}
        results = {"dataset": "sysu", "protocol": {}, "trials": [row], "mean": dict(row)}
        out = Path(cfg.output_dir)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "last.pt").write_bytes(b"")
        (out / "results.json").write_text(json.dumps(results))
        return results

    monkeypatch.setattr(seeds_module, "run_training", fake_training)
    cfg = load_config(None, [f"output_dir={tmp_path / 'm'}"])
    seeds_module.run_seeds(cfg, [3, 1])
    assert calls == [(3, "seed3", False), (1, "seed1", False)]
    (tmp_path / "m" / "seed1" / "results.json").unlink()  # seed 1 was killed after its checkpoint
    calls.clear()
    summary = seeds_module.run_seeds(cfg, [3, 1], resume=True)
    assert calls == [(1, "seed1", True)]
    assert summary["mean"]["rank1"] == pytest.approx(12.0) and summary["seeds"] == [3, 1]
    from vireid.errors import ConfigError

    with pytest.raises(ConfigError, match="more than once"):
        seeds_module.run_seeds(cfg, [1, 1])
