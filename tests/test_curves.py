"""CMC and per-trial plots from results files."""

import json

import numpy as np
import pytest
from PIL import Image

from vireid.errors import VireidError
from vireid.visualization.curves import load_results, plot_curves


def _results(path, rank1s, untrained=False):
    trials = []
    for t, r1 in enumerate(rank1s):
        cmc = list(np.minimum(100.0, np.linspace(r1, 100, 20)))
        trials.append({"trial": t, "rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "rank20": cmc[19],
                       "mAP": r1 / 2, "mINP": r1 / 3, "cmc": cmc})
    mean = {k: float(np.mean([r[k] for r in trials])) for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")}
    mean["cmc"] = list(np.mean([r["cmc"] for r in trials], axis=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": "sysu", "protocol": {}, "trials": trials, "mean": mean,
                                "untrained": untrained}))
    return path


def test_plot_two_runs(tmp_path):
    a = _results(tmp_path / "trained" / "results.json", [40, 50, 45])
    b = _results(tmp_path / "untrained" / "results.json", [5, 6, 4], untrained=True)
    out = plot_curves([a, b], tmp_path / "curves.png")
    im = Image.open(out)
    assert im.size[0] > im.size[1] > 300
    assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_bad_results_files(tmp_path):
    with pytest.raises(VireidError, match="not found"):
        load_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VireidError, match="not a readable JSON"):
        load_results(bad)
    bad.write_text(json.dumps({"trials": []}))
    with pytest.raises(VireidError, match="'trials' and 'mean'"):
        load_results(bad)
    old = _results(tmp_path / "old.json", [10])
    data = json.loads(old.read_text())
    del data["mean"]["cmc"]
    old.write_text(json.dumps(data))
    with pytest.raises(VireidError, match="no CMC curve"):
        plot_curves([old], tmp_path / "x.png")


def test_axes_follow_the_data_and_rank_one_has_a_tick(tmp_path, monkeypatch):
    import vireid.visualization.curves as curves
    from vireid.visualization.curves import axis_top

    assert [axis_top(v) for v in (4.0, 24.5, 27.9, 95.0, 100.0)] == [10.0, 30.0, 40.0, 100.0, 100.0]
    drawn = {}

    def keep(fig, path, **kw):
        drawn["fig"] = fig
        return path

    monkeypatch.setattr(curves, "save_png", keep)
    a = _results(tmp_path / "a" / "results.json", [12, 20, 15])
    data = json.loads(a.read_text())
    data["protocol"], data["synthetic_data"] = {"dataset": "sysu", "mode": "all", "shots": 1, "sampler": "community"}, True
    a.write_text(json.dumps(data))
    plot_curves([a], tmp_path / "c.png")
    ax_cmc, ax_trials = drawn["fig"].axes
    assert ax_trials.get_ylim() == (0.0, 30.0)  # every per-trial line is below 25: not a 0-100 axis
    assert 1 in ax_cmc.get_xticks()
    assert drawn["fig"]._suptitle.get_text().startswith("synthetic SYSU-MM01-layout data all-search")
