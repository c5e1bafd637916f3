"""Ranked-list pictures and the gallery exclusion rule they share with the metrics."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vireid.data.records import ImageRecord
from vireid.evaluation.metrics import gallery_exclusion_mask, rank_metrics
from vireid.visualization.ranks import (
    GREEN,
    RED,
    draw_ranked_lists,
    first_match_ranks,
    pick_queries,
    ranked_lists,
)


def test_exclusion_mask_rules_by_hand():
    # queries: (pid 1, cam 3), (pid 2, cam 6); gallery: (1, cam 2), (2, cam 2), (3, cam 1), (1, cam 3)
    q_pids, q_cams = [1, 2], [3, 6]
    g_pids, g_cams = [1, 2, 3, 1], [2, 2, 1, 3]
    sysu = gallery_exclusion_mask(q_pids, g_pids, q_cams, g_cams, protocol="sysu")
    # camera-3 query ignores every camera-2 image (ids 1 and 2); camera-6 query ignores nothing
    assert sysu.tolist() == [[True, True, False, False], [False, False, False, False]]
    llcm = gallery_exclusion_mask(q_pids, g_pids, q_cams, g_cams, protocol="llcm")
    # same id and same camera only: query (1, 3) vs gallery (1, 3)
    assert llcm.tolist() == [[False, False, False, True], [False, False, False, False]]
    assert not gallery_exclusion_mask(q_pids, g_pids, protocol="regdb").any()
    with pytest.raises(ValueError, match="cameras"):
        gallery_exclusion_mask(q_pids, g_pids, protocol="llcm")


def test_mask_agrees_with_rank_metrics():
    """Removing the masked columns by hand and evaluating with no removal (regdb-style raw CMC would
    differ in de-duplication, so compare mAP, which is on the raw ranking in every protocol)."""
    rng = np.random.default_rng(0)
    q_pids, g_pids = rng.integers(0, 5, 12), rng.integers(0, 5, 30)
    q_cams, g_cams = rng.choice([3, 6], 12), rng.choice([1, 2, 4, 5], 30)
    dist = rng.random((12, 30))
    mask = gallery_exclusion_mask(q_pids, g_pids, q_cams, g_cams, protocol="sysu")
    aps = []
    for i in range(12):
        keep = ~mask[i]
        if not (g_pids[keep] == q_pids[i]).any():
            continue
        m = rank_metrics(dist[i : i + 1, keep], q_pids[i : i + 1], g_pids[keep], protocol="regdb")
        aps.append(m["mAP"])
    full = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, protocol="sysu")
    assert full["num_valid_queries"] == len(aps)
    assert full["mAP"] == pytest.approx(np.mean(aps), abs=1e-9)


def _records(tmp_path: Path, specs, modality):
    recs = []
    for i, (pid, cam) in enumerate(specs):
        p = tmp_path / f"{modality}_{i}.png"
        Image.new("RGB", (16, 32), (pid * 40 % 255, 80, 120)).save(p)
        recs.append(ImageRecord(p, pid, cam, modality))
    return recs


def test_ranked_lists_and_picture(tmp_path):
    queries = _records(tmp_path, [(1, 3), (2, 6)], "infrared")
    gallery = _records(tmp_path, [(1, 2), (1, 1), (2, 4), (3, 5)], "visible")
    dist = np.array([[0.0, 0.2, 0.1, 0.3], [0.5, 0.1, 0.1, 0.0]])
    ranks = ranked_lists(dist, queries, gallery, protocol="sysu", topk=4)
    # query 0 (cam 3) ignores gallery 0 (cam 2): order 2 (0.1), 1 (0.2), 3 (0.3), then nothing
    assert ranks[0].tolist() == [2, 1, 3, -1]
    # query 1: 3 (0.0), then the tie 1/2 at 0.1 broken by gallery index, then 0
    assert ranks[1].tolist() == [3, 1, 2, 0]
    out = draw_ranked_lists(dist, queries, gallery, tmp_path / "r.png", protocol="sysu", topk=4,
                            thumb=(32, 16), title="t")
    im = np.asarray(Image.open(out).convert("RGB"))
    colours = {tuple(c) for c in im.reshape(-1, 3)}
    assert GREEN in colours and RED in colours
    assert not list(tmp_path.glob(".r.png.*"))  # no temporary file left behind


def test_pick_queries_worst_and_per_identity(tmp_path):
    queries = _records(tmp_path, [(1, 6), (1, 6), (2, 6)], "infrared")
    gallery = _records(tmp_path, [(1, 1), (2, 1), (3, 1)], "visible")
    # query 0: its match (g0) first; query 1: match third; query 2: match (g1) second
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0.1, 0.2, 0.3]])
    assert first_match_ranks(dist, queries, gallery, protocol="sysu").tolist() == [1, 3, 2]
    assert pick_queries(dist, queries, gallery, protocol="sysu", how="worst", count=2) == [1, 2]  # two people
    assert pick_queries(dist, queries, gallery, protocol="sysu", how="per_identity") == [0, 2]


def test_worst_rows_are_distinct_people_and_show_where_the_true_match_is(tmp_path):
    from vireid.visualization.ranks import SLIDE_SIZE, row_cells

    # person 1 has three bad queries (one per camera of two), person 2 one; gallery: 1 true image each
    queries = _records(tmp_path, [(1, 3), (1, 3), (1, 6), (2, 6)], "infrared")
    gallery = _records(tmp_path, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 4)], "visible")
    dist = np.array([[0.9, 0.1, 0.2, 0.3, 0.4],   # true match (g0) fifth
                     [0.8, 0.1, 0.2, 0.3, 0.9],   # fourth
                     [0.7, 0.1, 0.2, 0.8, 0.9],   # third
                     [0.5, 0.6, 0.1, 0.2, 0.3]])  # person 2's match (g1) fifth
    assert first_match_ranks(dist, queries, gallery, protocol="sysu").tolist() == [5, 4, 3, 5]
    # worst first, one per person before a second of any, then a new camera of person 1 before a repeat
    assert pick_queries(dist, queries, gallery, protocol="sysu", how="worst", count=3) == [0, 3, 2]
    ranked = ranked_lists(dist, queries, gallery, protocol="sysu", topk=2)
    no_removal = np.zeros(5, dtype=bool)
    cells = row_cells(dist, queries, gallery, 0, ranked=ranked, first_rank=5, excluded=no_removal)
    assert cells == [(1, 1, False), (2, 2, False), (0, 5, True)]  # the true match, below the cut-off, at rank 5
    assert row_cells(dist, queries, gallery, 0, ranked=ranked_lists(dist, queries, gallery, protocol="sysu", topk=5),
                     first_rank=5, excluded=no_removal)[-1] == (0, 5, True)  # within the list: not repeated
    out = draw_ranked_lists(dist, queries, gallery, tmp_path / "slide.png", protocol="sysu", rows=[0, 3], topk=2,
                            title="t", canvas=SLIDE_SIZE)
    assert Image.open(out).size == SLIDE_SIZE


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1-step tiny AGW run on a small synthetic SYSU-MM01 set."""
    from vireid.config import load_config
    from vireid.data.synthetic import generate
    from vireid.engine.run import run_training

    root = tmp_path_factory.mktemp("viz")
    generate("sysu", root / "sysu", ids=10, seed=0, images_per_camera=2, size=(64, 32), progress=False)
    overrides = [f"data.root={root / 'sysu'}", f"output_dir={root / 'run'}", "train.epochs=1",
                 "train.iters_per_epoch=1", "test.trials=2", "data.height=64", "data.width=32",
                 "data.ids_per_batch=2", "data.images_per_id=2"]
    run_training(load_config("configs/sysu/agw_tiny.yaml", overrides))
    return root, overrides


def test_visualize_ranks_and_curves_cli(tiny_run, tmp_path):
    from vireid import cli

    root, overrides = tiny_run
    ckpt = root / "run" / "checkpoints" / "last.pt"
    out = tmp_path / "worst.png"
    assert cli.main(["visualize", "ranks", "configs/sysu/agw_tiny.yaml", *overrides, "--checkpoint", str(ckpt),
                     "--worst", "3", "--topk", "5", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 5 * 32
    assert cli.main(["visualize", "ranks", "configs/sysu/agw_tiny.yaml", *overrides, "--checkpoint", str(ckpt),
                     "--query-index", "100000", "--out", str(out)]) == 2
    curves = tmp_path / "curves.png"
    assert cli.main(["visualize", "curves", str(root / "run" / "results.json"), "--out", str(curves)]) == 0
    assert curves.is_file()
    assert cli.main(["visualize", "ranks", "configs/sysu/agw_tiny.yaml", *overrides, "--checkpoint",
                     str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
