"""bench/learning.py's several training seeds (``--train-seeds``): the summary over seeds against hand-worked
means and sample standard deviations, the refusal of bad seed lists, and a two-seed run of a few steps whose
runs land in their own folders with their own seeds; bench/budget_curve.py's means per schedule length and
its refusal of a file that is not a learning report."""

import json
import statistics
from pathlib import Path

import pytest

from tests.bench_scripts import bench_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def learning():
    return bench_script("learning")


def _row(seed, rank1, mAP, ii=None):
    return {"model": "dam", "train_seed": seed, "trained": {"rank1": rank1, "mAP": mAP, "rank10": 50.0, "mINP": 10.0},
            "untrained": {"rank1": 3.0, "mAP": 7.0}, "train_id_accuracy": 40.0,
            "visible_to_visible": {"rank1": 70.0}, "infrared_to_infrared": {"rank1": ii} if ii is not None else {}}


def test_over_seeds_matches_hand_worked_means_and_sample_deviations(learning):
    summary = learning.over_seeds([_row(0, 20.0, 25.0, 30.0), _row(1, 26.0, 29.0, 36.0), _row(2, 23.0, 27.0, 33.0)])
    f = summary["figures"]
    assert summary["seeds"] == [0, 1, 2]
    # 20, 26, 23: mean 23; squared deviations 9 + 9 + 0 over n - 1 = 2 -> sd 3
    assert f["trained_rank1"] == {"mean": 23.0, "sd": 3.0, "min": 20.0, "max": 26.0}
    # 25, 29, 27: mean 27; (4 + 4 + 0) / 2 = 4 -> sd 2
    assert f["trained_mAP"]["mean"] == 27.0 and f["trained_mAP"]["sd"] == 2.0
    assert f["infrared_to_infrared_rank1"]["mean"] == 33.0 and f["infrared_to_infrared_rank1"]["sd"] == 3.0
    assert f["untrained_rank1"] == {"mean": 3.0, "sd": 0.0, "min": 3.0, "max": 3.0}
    text = learning.format_over_seeds([summary])
    assert "trained Rank-1 23.00 +- 3.00 (20.00-26.00)" in text and "I->I 33.00 +- 3.00" in text


def test_over_seeds_leaves_out_a_figure_one_run_lacks_and_gives_one_seed_no_spread(learning):
    f = learning.over_seeds([_row(0, 20.0, 25.0, 30.0), _row(1, 26.0, 29.0)])["figures"]
    assert "infrared_to_infrared_rank1" not in f and "trained_rank1" in f
    assert learning.over_seeds([_row(4, 21.5, 24.0)])["figures"]["trained_rank1"]["sd"] == 0.0
    assert "I->I -" in learning.format_over_seeds([learning.over_seeds([_row(0, 20.0, 25.0)])])


def test_over_seeds_refuses_runs_of_two_models(learning):
    other = dict(_row(1, 26.0, 29.0), model="agw")
    with pytest.raises(ValueError, match=r"one model, got \['agw', 'dam'\]"):
        learning.over_seeds([_row(0, 20.0, 25.0), other])


@pytest.mark.parametrize(("argv", "message"), [
    (["--train-seeds", "0", "0"], "seed(s) [0] more than once"),
    (["--train-seeds", "zero"], "--train-seeds takes integers, got 'zero'"),
    (["--train-seeds", "0", "1", "--parallel", "0"], "--parallel must be at least 1, got 0"),
])
def test_bad_seed_options_are_refused_before_any_work(learning, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        learning.main([*argv, "--work", str(tmp_path / "work")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_two_training_seeds_run_in_their_own_folders_and_are_summarised(learning, small_sysu, tmp_path):
    work, out = tmp_path / "work", tmp_path / "learning.json"
    few_steps = ["train.epochs=1", "train.iters_per_epoch=2", "train.eval_every=0", "test.trials=1",
                 "data.height=32", "data.width=16", "data.ids_per_batch=2"]
    # the overrides after the seeds go back to the overrides
    learning.main(["--models", "agw", "--data", str(small_sysu), "--work", str(work), "--out", str(out),
                   "--train-seeds", "3", "5", *few_steps])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [r["train_seed"] for r in report["models"]] == [3, 5]
    for seed in (3, 5):
        saved = (work / "runs" / "agw" / f"seed{seed}" / "config.yaml").read_text(encoding="utf-8")
        assert f"seed: {seed}" in saved
    (summary,) = report["over_seeds"]
    values = [r["trained"]["rank1"] for r in report["models"]]
    assert summary["model"] == "agw" and summary["seeds"] == [3, 5]
    assert summary["figures"]["trained_rank1"]["mean"] == pytest.approx(statistics.fmean(values))
    assert summary["figures"]["trained_rank1"]["sd"] == pytest.approx(statistics.stdev(values))


@pytest.fixture(scope="module")
def budget():
    return bench_script("budget_curve")


def _report(path, rows):
    path.write_text(json.dumps({"models": rows}), encoding="utf-8")
    return path


def _run(model, steps, seed, rank1, mAP, vv, ii):
    return {"model": model, "steps": steps, "train_seed": seed, "trained": {"rank1": rank1, "mAP": mAP},
            "chance_rank1": 1.92, "visible_to_visible": {"rank1": vv}, "infrared_to_infrared": {"rank1": ii},
            "curve": [{"epoch": 3, "step": steps // 2, "rank1": rank1 / 2, "mAP": mAP / 2},
                      {"epoch": 7, "step": steps, "rank1": rank1, "mAP": mAP}]}


def test_budget_curve_averages_the_seeds_of_each_schedule_length(budget, tmp_path):
    short = _report(tmp_path / "a.json", [_run("dam", 480, 0, 20.0, 25.0, 70.0, 30.0), _run("agw", 480, 0, 9.0, 9.0, 9.0, 9.0)])
    long = _report(tmp_path / "b.json", [_run("dam", 720, 1, 27.0, 31.0, 80.0, 36.0), _run("dam", 720, 2, 29.0, 33.0, 82.0, 34.0)])
    runs = budget.read_runs([long, short], "dam")
    assert sorted((r["steps"], r["seed"]) for r in runs) == [(480, 0), (720, 1), (720, 2)]
    s480, s720 = budget.by_steps(runs)
    assert (s480["steps"], s480["runs"], s480["rank1"], s480["ii"]) == (480, 1, 20.0, 30.0)
    assert (s720["seeds"], s720["rank1"], s720["mAP"], s720["vv"], s720["ii"]) == ([1, 2], 28.0, 32.0, 81.0, 35.0)
    out = tmp_path / "steps.png"
    assert budget.main([str(short), str(long), "--out", str(out), "--target", "40"]) == 0
    from PIL import Image

    with Image.open(out) as image:
        assert image.width > 1000 and image.height > 400


def test_budget_curve_names_the_file_that_is_not_a_learning_report(budget, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}', encoding="utf-8")
    assert budget.main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{bad}: not a bench/learning.py JSON file with a 'models' list" in capsys.readouterr().err
    agw_only = _report(tmp_path / "agw.json", [_run("agw", 480, 0, 9.0, 9.0, 9.0, 9.0)])
    assert budget.main([str(agw_only), "--out", str(tmp_path / "x.png")]) == 2
    assert f"no dam run in {agw_only}" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_budget_curve_names_a_run_without_its_figures(budget, tmp_path, capsys):
    broken = _run("dam", 480, 0, 20.0, 25.0, 70.0, 30.0)
    del broken["trained"]
    path = _report(tmp_path / "broken.json", [broken])
    assert budget.main([str(path), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{path}: a dam run is not a bench/learning.py row with steps, trained rank1" in capsys.readouterr().err
    listed = _report(tmp_path / "strings.json", ["dam"])
    assert budget.main([str(listed), "--out", str(tmp_path / "x.png")]) == 2
    assert "'models' must be a list of bench/learning.py rows" in capsys.readouterr().err
