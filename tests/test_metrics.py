"""Tests of vireid.evaluation.metrics: hand-worked cases, every removal rule, ties, and agreement with a
straightforward per-query reference written here, independently of the library."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import vireid.evaluation.feature_metrics as feature_metrics_module
from vireid.evaluation import pairwise_distances, rank_metrics, rank_metrics_from_features
from vireid.evaluation.metrics import default_chunk_size


# --------------------------------------------------------------------------------------------
# the reference: one query at a time, plain Python lists, written from the protocol notes
# --------------------------------------------------------------------------------------------
def reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, protocol, max_rank):
    num_q, num_g = distmat.shape
    first_ranks, aps, inps = [], [], []
    for i in range(num_q):
        # rank by distance, ties by gallery index
        ranked = sorted(range(num_g), key=lambda j: (float(distmat[i, j]), j))
        kept = []
        for j in ranked:
            if protocol == "sysu" and q_cams[i] == 3 and g_cams[j] == 2:
                continue
            if protocol == "llcm" and g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i]:
                continue
            kept.append(j)
        is_match = [g_pids[j] == q_pids[i] for j in kept]
        if not any(is_match):
            continue
        hits, precisions, last = 0, [], 0
        for position, m in enumerate(is_match, start=1):
            if m:
                hits += 1
                precisions.append(hits / position)
                last = position
        aps.append(sum(precisions) / len(precisions))
        inps.append(hits / last)
        if protocol == "regdb":
            ranking_ids = [g_pids[j] for j in kept]
        else:
            seen, ranking_ids = set(), []
            for j in kept:
                if g_pids[j] not in seen:
                    seen.add(g_pids[j])
                    ranking_ids.append(g_pids[j])
        first_ranks.append(ranking_ids.index(q_pids[i]) + 1)
    if not first_ranks:
        return None
    cmc = [sum(r <= k for r in first_ranks) / len(first_ranks) for k in range(1, max_rank + 1)]
    return {
        "cmc": np.array(cmc),
        "mAP": sum(aps) / len(aps),
        "mINP": sum(inps) / len(inps),
        "num_valid_queries": len(first_ranks),
    }


def assert_same(result, expected, tol=1e-6):
    assert result["num_valid_queries"] == expected["num_valid_queries"]
    assert result["cmc"].shape == expected["cmc"].shape
    np.testing.assert_allclose(result["cmc"], expected["cmc"], rtol=0, atol=tol)
    assert result["mAP"] == pytest.approx(expected["mAP"], abs=tol)
    assert result["mINP"] == pytest.approx(expected["mINP"], abs=tol)


def assert_identical(a, b):
    assert a["num_valid_queries"] == b["num_valid_queries"]
    np.testing.assert_array_equal(a["cmc"], b["cmc"])
    assert a["mAP"] == b["mAP"]
    assert a["mINP"] == b["mINP"]


# --------------------------------------------------------------------------------------------
# hand-worked cases
# --------------------------------------------------------------------------------------------
def test_hand_worked_regdb_one_query():
    # gallery  idx:   0    1    2    3    4
    #          pid:   2    1    3    1    2
    #          dist: .1   .3   .2   .5   .4
    # ranking by distance: idx0 (pid2), idx2 (pid3), idx1 (pid1), idx4 (pid2), idx3 (pid1)
    # true matches at positions 3 and 5:
    #   AP  = (1/3 + 2/5) / 2 = 11/30;  INP = 2 / 5;  first match at rank 3 -> CMC = 0, 0, 1, 1, 1
    d = np.array([[0.1, 0.3, 0.2, 0.5, 0.4]])
    r = rank_metrics(d, [1], [2, 1, 3, 1, 2], protocol="regdb", max_rank=5)
    np.testing.assert_array_equal(r["cmc"], [0, 0, 1, 1, 1])
    assert r["mAP"] == pytest.approx(11 / 30, abs=1e-12)
    assert r["mINP"] == pytest.approx(2 / 5, abs=1e-12)
    assert r["num_valid_queries"] == 1
    assert r["cmc"].dtype == np.float64 and len(r["cmc"]) == 5


def test_two_queries_average():
    # query 0 (pid 1): the case above: AP 11/30, INP 2/5, first rank 3
    # query 1 (pid 2): distances .9 .8 .7 .1 .6 -> ranking idx3 (pid1), idx4 (pid2), idx2 (pid3),
    #   idx1 (pid1), idx0 (pid2); matches at 2 and 5: AP = (1/2 + 2/5)/2 = 9/20, INP = 2/5, first rank 2
    # mAP = (11/30 + 9/20)/2 = 49/120; mINP = 2/5; CMC@1 = 0, @2 = 1/2, @3 = 1
    d = np.array([[0.1, 0.3, 0.2, 0.5, 0.4], [0.9, 0.8, 0.7, 0.1, 0.6]])
    r = rank_metrics(d, [1, 2], [2, 1, 3, 1, 2], protocol="regdb", max_rank=4)
    np.testing.assert_allclose(r["cmc"], [0, 0.5, 1, 1])
    assert r["mAP"] == pytest.approx(49 / 120, abs=1e-12)
    assert r["mINP"] == pytest.approx(0.4, abs=1e-12)


def test_multi_shot_dedup_vs_raw():
    # gallery pids 2 2 2 1 3 at distances .1 .2 .3 .4 .5, query pid 1 from camera 6 (SYSU: nothing removed)
    # raw ranking: 2 2 2 1 3 -> first match at rank 4 (RegDB CMC)
    # deduplicated ranking: 2 1 3 -> first match at rank 2 (SYSU / LLCM CMC)
    # AP = INP = 1/4 in both (raw ranking)
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    pids = [2, 2, 2, 1, 3]
    cams = [1, 4, 5, 1, 4]
    raw = rank_metrics(d, [1], pids, protocol="regdb", max_rank=5)
    dedup = rank_metrics(d, [1], pids, [6], cams, protocol="sysu", max_rank=5)
    llcm = rank_metrics(d, [1], pids, [6], cams, protocol="llcm", max_rank=5)
    np.testing.assert_array_equal(raw["cmc"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(dedup["cmc"], [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(llcm["cmc"], [0, 1, 1, 1, 1])
    for r in (raw, dedup, llcm):
        assert r["mAP"] == pytest.approx(0.25, abs=1e-12)
        assert r["mINP"] == pytest.approx(0.25, abs=1e-12)


# --------------------------------------------------------------------------------------------
# removal rules
# --------------------------------------------------------------------------------------------
SYSU_D = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
SYSU_G_PIDS = [2, 1, 3, 1, 1]
SYSU_G_CAMS = [2, 2, 1, 4, 5]


def test_sysu_camera3_query_ignores_every_camera2_image():
    # query pid 1 from camera 3; gallery idx0 (pid2, cam2) and idx1 (pid1, cam2) are removed,
    # including idx0 of ANOTHER identity. Left: idx2 (pid3), idx3 (pid1), idx4 (pid1).
    # AP = (1/2 + 2/3)/2 = 7/12; INP = 2/3; deduplicated ranking 3, 1 -> first match at rank 2;
    # only 2 identities remain, so CMC saturates at 1 from rank 2 up to max_rank.
    r = rank_metrics(SYSU_D, [1], SYSU_G_PIDS, [3], SYSU_G_CAMS, protocol="sysu", max_rank=5)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1, 1, 1])
    assert r["mAP"] == pytest.approx(7 / 12, abs=1e-12)
    assert r["mINP"] == pytest.approx(2 / 3, abs=1e-12)


def test_sysu_camera6_query_keeps_camera2():
    # the same gallery for a camera-6 query: nothing removed. Ranking pids 2 1 3 1 1:
    # matches at 2, 4, 5: AP = (1/2 + 2/4 + 3/5)/3 = 8/15; INP = 3/5; dedup ranking 2 1 3 -> rank 2
    r = rank_metrics(SYSU_D, [1], SYSU_G_PIDS, [6], SYSU_G_CAMS, protocol="sysu", max_rank=5)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1, 1, 1])
    assert r["mAP"] == pytest.approx(8 / 15, abs=1e-12)
    assert r["mINP"] == pytest.approx(3 / 5, abs=1e-12)


def test_sysu_removal_of_other_identity_changes_rank1():
    # gallery: idx0 pid 2 cam 2 (d .1), idx1 pid 1 cam 1 (d .2)
    # camera 3 query: idx0 removed -> rank 1, AP 1.  camera 6 query: rank 2, AP 1/2.
    d = np.array([[0.1, 0.2], [0.1, 0.2]])
    r3 = rank_metrics(d[:1], [1], [2, 1], [3], [2, 1], protocol="sysu", max_rank=2)
    r6 = rank_metrics(d[:1], [1], [2, 1], [6], [2, 1], protocol="sysu", max_rank=2)
    np.testing.assert_array_equal(r3["cmc"], [1, 1])
    assert r3["mAP"] == 1.0
    np.testing.assert_array_equal(r6["cmc"], [0, 1])
    assert r6["mAP"] == 0.5
    # both queries together: CMC@1 = 1/2, mAP = 3/4
    both = rank_metrics(d, [1, 1], [2, 1], [3, 6], [2, 1], protocol="sysu", max_rank=2)
    np.testing.assert_array_equal(both["cmc"], [0.5, 1])
    assert both["mAP"] == 0.75


def test_sysu_camera3_query_with_matches_only_in_camera2_is_skipped():
    # query 0: pid 1, camera 3, its only match is in camera 2 -> no match left -> skipped
    # query 1: pid 1, camera 6, the camera-2 match counts -> valid, rank 2 (pid 3 first)
    d = np.array([[0.2, 0.1], [0.2, 0.1]])
    r = rank_metrics(d, [1, 1], [1, 3], [3, 6], [2, 1], protocol="sysu", max_rank=3)
    assert r["num_valid_queries"] == 1
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1])
    assert r["mAP"] == 0.5


def test_llcm_removes_same_identity_same_camera_only():
    # query pid 1 camera 4. gallery:
    #   idx0 pid1 cam4 d.1 -> removed (same id, same camera)
    #   idx1 pid2 cam4 d.2 -> kept (other id, same camera)
    #   idx2 pid1 cam5 d.3 -> kept (same id, other camera)
    #   idx3 pid2 cam1 d.4 -> kept
    #   idx4 pid1 cam4 d.5 -> removed
    # left: pid2, pid1, pid2: AP = 1/2, INP = 1/2; dedup ranking 2 1 -> rank 2
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    pids, cams = [1, 2, 1, 2, 1], [4, 4, 5, 1, 4]
    r = rank_metrics(d, [1], pids, [4], cams, protocol="llcm", max_rank=3)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1])
    assert r["mAP"] == 0.5
    assert r["mINP"] == 0.5
    # RegDB removes nothing: pids 1 2 1 2 1 -> matches at 1, 3, 5: AP = (1 + 2/3 + 3/5)/3 = 34/45, INP 3/5
    g = rank_metrics(d, [1], pids, [4], cams, protocol="regdb", max_rank=3)
    np.testing.assert_array_equal(g["cmc"], [1, 1, 1])
    assert g["mAP"] == pytest.approx(34 / 45, abs=1e-12)
    assert g["mINP"] == pytest.approx(3 / 5, abs=1e-12)


def test_llcm_query_with_only_same_camera_matches_is_skipped():
    d = np.array([[0.1, 0.2], [0.1, 0.2]])
    r = rank_metrics(d, [1, 1], [1, 2], [4, 5], [4, 4], protocol="llcm", max_rank=2)
    assert r["num_valid_queries"] == 1  # query 0 (camera 4) loses its only match
    np.testing.assert_array_equal(r["cmc"], [1, 1])


# --------------------------------------------------------------------------------------------
# ties, skipping, saturation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8])
def test_ties_broken_by_gallery_index(dtype):
    # idx0 and idx1 at the same distance 5: the lower index ranks first.
    # match at idx1 -> rank 2, AP 1/2;  match at idx0 -> rank 1, AP 1
    d = np.array([[5, 5, 9]], dtype=dtype)
    behind = rank_metrics(d, [1], [2, 1, 3], protocol="regdb", max_rank=3)
    np.testing.assert_array_equal(behind["cmc"], [0, 1, 1])
    assert behind["mAP"] == 0.5
    ahead = rank_metrics(d, [1], [1, 2, 3], protocol="regdb", max_rank=3)
    np.testing.assert_array_equal(ahead["cmc"], [1, 1, 1])
    assert ahead["mAP"] == 1.0


def test_ties_between_negative_and_positive_zero():
    # -0.0 == +0.0: a tie, broken by index (idx0 first) even though idx1 holds -0.0
    d = np.array([[0.0, -0.0, 1.0]], dtype=np.float32)
    r = rank_metrics(d, [1], [2, 1, 3], protocol="regdb", max_rank=2)
    np.testing.assert_array_equal(r["cmc"], [0, 1])


@pytest.mark.parametrize("kind", ["float64", "int64"])
def test_values_one_unit_apart_are_not_ties(kind):
    # 16 gallery images whose distances differ only in the last bit(s), in decreasing order: the
    # correct ranking is the reverse of the index order. Query pid 0 matches only idx 7, so its
    # rank is 16 - 7 = 9 (RegDB, raw). A 64-bit key that lost its low bits would rank it 8th.
    if kind == "float64":
        row = [0.3]
        for _ in range(15):
            row.append(np.nextafter(row[-1], 0.0))
        d = np.array([row])  # row[0] largest ... row[15] smallest
        d = np.concatenate([d, [[-1e300] * 16]])  # a second query: keeps values beyond float32
    else:
        d = np.array([[2**40 + 15 - k for k in range(16)], [-(2**41)] * 16], dtype=np.int64)
    g_pids = [1] * 16
    g_pids[7] = 0
    r = rank_metrics(d, [0, 5], g_pids, protocol="regdb", max_rank=10)
    assert r["num_valid_queries"] == 1
    np.testing.assert_array_equal(r["cmc"], [0] * 8 + [1, 1])
    assert r["mAP"] == pytest.approx(1 / 9, abs=1e-12)


def test_tie_in_dedup_ranking():
    # distances 1 1 1 0: idx3 (pid 4) first, then idx0 pid2, idx1 pid3, idx2 pid1 by index.
    # dedup ranking 4 2 3 1 -> rank 4; AP = 1/4
    d = np.array([[1.0, 1.0, 1.0, 0.0]])
    r = rank_metrics(d, [1], [2, 3, 1, 4], [6], [1, 1, 1, 1], protocol="sysu", max_rank=4)
    np.testing.assert_array_equal(r["cmc"], [0, 0, 0, 1])
    assert r["mAP"] == 0.25


def test_queries_without_match_are_skipped():
    d = np.array([[0.1, 0.3, 0.2, 0.5, 0.4], [0.3, 0.3, 0.3, 0.3, 0.3]])
    alone = rank_metrics(d[:1], [1], [2, 1, 3, 1, 2], protocol="regdb", max_rank=5)
    with_stranger = rank_metrics(d, [1, 99], [2, 1, 3, 1, 2], protocol="regdb", max_rank=5)
    assert with_stranger["num_valid_queries"] == 1
    assert_identical(alone, with_stranger)


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query has a true match"):
        rank_metrics(np.zeros((2, 3)), [7, 8], [1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match="no query has a true match"):
        rank_metrics(np.zeros((1, 2)), [1], [1, 2], [3], [2, 1], protocol="sysu")


def test_cmc_saturates_when_gallery_is_shorter_than_max_rank():
    # 3 gallery images, max_rank 6: the curve keeps 6 entries; from the gallery length on it is flat.
    # query 0 (pid 1) first match at rank 3; query 1 (pid 2) at rank 1 -> .5 .5 1 1 1 1
    d = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    r = rank_metrics(d, [1, 2], [2, 3, 1], protocol="regdb", max_rank=6)
    np.testing.assert_array_equal(r["cmc"], [0.5, 0.5, 1, 1, 1, 1])
    # deduplicated: 2 identities left for a camera-3 query in SYSU: flat from rank 2
    r = rank_metrics(d[:1], [1], [2, 2, 1], [3], [1, 4, 5], protocol="sysu", max_rank=6)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1, 1, 1, 1])


def test_inputs_as_torch_tensors():
    torch = pytest.importorskip("torch")
    d = np.array([[0.1, 0.3, 0.2, 0.5, 0.4]])
    a = rank_metrics(d, [1], [2, 1, 3, 1, 2], protocol="regdb", max_rank=5)
    b = rank_metrics(torch.tensor(d), torch.tensor([1]), torch.tensor([2, 1, 3, 1, 2]), protocol="regdb", max_rank=5)
    assert_identical(a, b)


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------
def test_validation_messages():
    d = np.zeros((2, 3))
    ok = dict(q_pids=[1, 2], g_pids=[1, 2, 3])
    with pytest.raises(ValueError, match="protocol must be one of"):
        rank_metrics(d, **ok, protocol="market")
    with pytest.raises(ValueError, match="q_pids has 3 entries"):
        rank_metrics(d, [1, 2, 3], [1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match="g_pids has 2 entries"):
        rank_metrics(d, [1, 2], [1, 2], protocol="regdb")
    with pytest.raises(ValueError, match="2-D"):
        rank_metrics(np.zeros(3), [1], [1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match="g_cams not given"):
        rank_metrics(d, **ok, q_cams=[3, 6], protocol="sysu")
    with pytest.raises(ValueError, match="q_cams and g_cams not given"):
        rank_metrics(d, **ok, protocol="llcm")
    with pytest.raises(ValueError, match="g_cams has 2 entries"):
        rank_metrics(d, **ok, q_cams=[3, 6], g_cams=[1, 2], protocol="sysu")
    with pytest.raises(ValueError, match="q_cams has 1 entries"):
        rank_metrics(d, **ok, q_cams=[3], g_cams=[1, 2, 4], protocol="regdb")
    with pytest.raises(ValueError, match="max_rank"):
        rank_metrics(d, **ok, protocol="regdb", max_rank=0)
    with pytest.raises(ValueError, match="chunk_size"):
        rank_metrics(d, **ok, protocol="regdb", chunk_size=0)
    with pytest.raises(ValueError, match="integers"):
        rank_metrics(d, [1.5, 2.0], [1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([[0.1, np.nan, 0.2], [0, 0, 0]]), **ok, protocol="regdb")
    with pytest.raises(ValueError, match="empty"):
        rank_metrics(np.zeros((0, 3)), [], [1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match="real numbers"):
        rank_metrics(d.astype(complex), **ok, protocol="regdb")
    with pytest.raises(ValueError, match="metric must be one of"):
        rank_metrics_from_features(np.ones((2, 4)), np.ones((3, 4)), **ok, protocol="regdb", metric="cityblock")
    with pytest.raises(ValueError, match=r"q_feats must be 2-D \[queries, 4\]"):
        rank_metrics_from_features(np.ones((2, 5)), np.ones((3, 4)), **ok, protocol="regdb")


def test_default_chunk_size_is_bounded():
    assert default_chunk_size(3010) * 3010 <= (1 << 21)
    assert default_chunk_size(10**9) == 1
    assert default_chunk_size(10, num_queries=7) == 7


# --------------------------------------------------------------------------------------------
# randomised agreement with the reference
# --------------------------------------------------------------------------------------------
def random_case(rng, protocol, num_q, num_g, num_ids, ties):
    q_pids = rng.integers(0, num_ids + 2, num_q)  # some query ids absent from the gallery
    g_pids = rng.integers(0, num_ids, num_g)
    if protocol == "sysu":
        q_cams, g_cams = rng.choice([3, 6], num_q), rng.choice([1, 2, 4, 5], num_g)
    elif protocol == "llcm":
        q_cams, g_cams = rng.integers(1, 4, num_q), rng.integers(1, 4, num_g)
    else:
        q_cams = g_cams = None
    if ties == "none":
        d = rng.standard_normal((num_q, num_g))
    elif ties == "int":
        d = rng.integers(0, 6, (num_q, num_g)).astype(np.float64)
    elif ties == "f64":  # ties between float64 values that float32 cannot hold: the exact fallback
        d = rng.integers(0, 6, (num_q, num_g)) * 0.1 + 1e-10
    elif ties == "int64big":  # integers spanning more than 2**32: 64-bit keys and the fallback
        d = rng.integers(0, 6, (num_q, num_g)) * (2**40) - 2**41
    else:
        raise AssertionError(ties)
    return d, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
@pytest.mark.parametrize("ties", ["none", "int", "f64", "int64big"])
def test_agrees_with_reference(protocol, ties):
    rng = np.random.default_rng(zlib.crc32(f"{protocol}-{ties}".encode()))
    for trial in range(3):
        num_q, num_g = int(rng.integers(20, 45)), int(rng.integers(1, 70) if trial else 3)
        d, qp, gp, qc, gc = random_case(rng, protocol, num_q, num_g, num_ids=int(rng.integers(2, 9)), ties=ties)
        expected = reference_metrics(d, qp, gp, qc, gc, protocol, max_rank=10)
        if expected is None:
            with pytest.raises(ValueError):
                rank_metrics(d, qp, gp, qc, gc, protocol=protocol, max_rank=10)
            continue
        results = [
            rank_metrics(d, qp, gp, qc, gc, protocol=protocol, max_rank=10, chunk_size=cs)
            for cs in (None, 1, 7, num_q + 3)
        ]
        for r in results:
            assert_same(r, expected)
            assert_identical(r, results[0])  # chunking never changes a bit
        assert_identical(
            rank_metrics(np.asfortranarray(d), qp, gp, qc, gc, protocol=protocol, max_rank=10, chunk_size=4),
            results[0],
        )
        if ties in ("none", "int"):
            assert_identical(
                rank_metrics(d.astype(np.float32), qp, gp, qc, gc, protocol=protocol, max_rank=10, chunk_size=5),
                results[0],
            )


@pytest.mark.parametrize("protocol", ["sysu", "llcm"])
def test_multi_shot_gallery_against_reference(protocol):
    # many images per (identity, camera): deduplication matters a lot
    rng = np.random.default_rng(11)
    num_ids = 6
    g_pids = np.repeat(np.arange(num_ids), 12)
    g_cams = np.tile(np.repeat([1, 2, 4, 5] if protocol == "sysu" else [1, 2, 3, 4], 3), num_ids)
    q_pids = rng.integers(0, num_ids, 40)
    q_cams = rng.choice([3, 6], 40) if protocol == "sysu" else rng.integers(1, 5, 40)
    d = rng.integers(0, 20, (40, g_pids.size)).astype(np.float32)
    perm = rng.permutation(g_pids.size)  # gallery not sorted by identity
    args = (d[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm])
    expected = reference_metrics(*args, protocol, max_rank=20)
    assert_same(rank_metrics(*args, protocol=protocol, max_rank=20, chunk_size=9), expected)
    # and the deduplicated CMC really differs from the raw one here
    raw = reference_metrics(*args, "regdb", max_rank=20)
    if protocol == "sysu":
        assert not np.allclose(raw["cmc"], expected["cmc"])


# --------------------------------------------------------------------------------------------
# from features
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("matmul_rows", [256, 1, 13])
def test_from_features_equals_full_distmat(protocol, metric, dtype, matmul_rows, monkeypatch):
    # matmul_rows: query rows per matrix product (1 and 13: several products, 13 not a multiple of
    # the chunk size)
    monkeypatch.setattr(feature_metrics_module, "MATMUL_ROWS", matmul_rows)
    rng = np.random.default_rng(5)
    num_q, num_g = 53, 81
    _, qp, gp, qc, gc = random_case(rng, protocol, num_q, num_g, num_ids=7, ties="none")
    centres = rng.standard_normal((9, 16))
    q = (centres[qp] + 0.8 * rng.standard_normal((num_q, 16))).astype(dtype)
    g = (centres[gp] + 0.8 * rng.standard_normal((num_g, 16))).astype(dtype)
    full = rank_metrics(pairwise_distances(q, g, metric=metric), qp, gp, qc, gc, protocol=protocol)
    for cs in (None, 1, 10, 17):
        chunked = rank_metrics_from_features(
            q, g, qp, gp, qc, gc, protocol=protocol, metric=metric, chunk_size=cs
        )
        assert_identical(chunked, full)
    assert full["mAP"] > 0.3  # features carry identity: not a degenerate case


def test_pairwise_distances_formulas():
    q = np.array([[3.0, 4.0], [1.0, 0.0]])
    g = np.array([[0.0, 2.0], [6.0, 8.0], [-1.0, 0.0]])
    # cosine: -(q/|q|).(g/|g|): q0 = (.6,.8): -.8, -1, .6;  q1 = (1, 0): 0, -.6, 1
    np.testing.assert_allclose(pairwise_distances(q, g), [[-0.8, -1.0, 0.6], [0.0, -0.6, 1.0]], atol=1e-12)
    # euclidean: |q0-g0| = |(3,2)| = sqrt 13, |(-3,-4)| = 5, |(4,4)| = sqrt 32; q1: sqrt 5, sqrt 89, 2
    np.testing.assert_allclose(
        pairwise_distances(q, g, metric="euclidean"),
        [[np.sqrt(13), 5.0, np.sqrt(32)], [np.sqrt(5), np.sqrt(89), 2.0]],
        atol=1e-12,
    )


@pytest.mark.parametrize("protocol", ["sysu", "llcm"])
def test_from_features_integer_features_with_ties(protocol):
    # small integer features: Euclidean distances repeat exactly, so ties are broken by index in both paths
    rng = np.random.default_rng(9)
    num_q, num_g = 31, 47
    _, qp, gp, qc, gc = random_case(rng, protocol, num_q, num_g, num_ids=5, ties="none")
    q = rng.integers(0, 2, (num_q, 3))
    g = rng.integers(0, 2, (num_g, 3))
    d = pairwise_distances(q, g, metric="euclidean")
    expected = reference_metrics(d, qp, gp, qc, gc, protocol, max_rank=20)
    got = rank_metrics_from_features(q, g, qp, gp, qc, gc, protocol=protocol, metric="euclidean", chunk_size=4)
    assert_same(got, expected)
    assert_identical(got, rank_metrics(d, qp, gp, qc, gc, protocol=protocol))


def test_from_features_torch_tensors_match_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    q, g = rng.standard_normal((20, 8)), rng.standard_normal((30, 8))
    qp, gp = rng.integers(0, 4, 20), rng.integers(0, 4, 30)
    qc, gc = rng.choice([3, 6], 20), rng.choice([1, 2, 4, 5], 30)
    a = rank_metrics_from_features(q, g, qp, gp, qc, gc, protocol="sysu", chunk_size=6)
    b = rank_metrics_from_features(torch.from_numpy(q), torch.from_numpy(g), qp, gp, qc, gc, protocol="sysu", chunk_size=6)
    assert_same(b, a, tol=1e-9)


# --------------------------------------------------------------------------------------------
# evaluate_rank: torchreid's and fastreid's call (the Market-1501 rule)
# --------------------------------------------------------------------------------------------
def peer_evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid's / fastreid's eval_market1501 rule, re-derived one query at a time: argsort each row,
    drop gallery items with the query's pid and camera, skip queries without a match, cumulative-sum
    CMC clipped at 1, AP over the hits, INP = hits / position of the last hit; max_rank capped at G."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = (g_pids[order][keep] == q_pids[i]).astype(np.int32)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        cmcs.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = hits / np.arange(1, raw.size + 1)
        aps.append(float((precision * raw).sum() / raw.sum()))
        inps.append(float(raw.sum() / (np.flatnonzero(raw)[-1] + 1)))
    cmc = np.asarray(cmcs).astype(np.float32).sum(0) / len(cmcs)
    return cmc, aps, inps


def test_evaluate_rank_hand_worked_case():
    from vireid.evaluation import evaluate_rank

    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.1, 0.2, 0.3, 0.4]])
    q_pids, q_cams = np.array([1, 2]), np.array([1, 2])
    g_pids, g_cams = np.array([1, 2, 1, 3, 2]), np.array([1, 1, 2, 2, 2])
    # query 0 loses g0 (same pid, same camera): kept ranking 2, 1, 3, 2 -> first hit at 2, AP 1/2, INP 1/2
    # query 1 loses g4: kept ranking 2, 1, 3, 1 -> hit at 1, AP 1, INP 1
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    np.testing.assert_allclose(cmc, [0.5, 1.0, 1.0])
    assert cmc.dtype == np.float32
    assert mAP == pytest.approx(0.75)
    cmc_f, all_ap, all_inp = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, 3, returns="fastreid")
    np.testing.assert_allclose(all_ap, [0.5, 1.0])
    np.testing.assert_allclose(all_inp, [0.5, 1.0])
    result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    assert result.mINP == pytest.approx(0.75) and result.num_valid_queries == 2
    assert len(result.cmc) == 5  # max_rank 50 shortened to the gallery's 5 images, as the peers do


def test_evaluate_rank_agrees_with_the_peers_rule():
    from vireid.evaluation import evaluate_rank

    rng = np.random.default_rng(3)
    dist = rng.random((40, 90))
    q_pids, g_pids = rng.integers(0, 12, 40), rng.integers(0, 12, 90)
    q_cams, g_cams = rng.integers(0, 4, 40), rng.integers(0, 4, 90)  # any camera numbering
    cmc_ref, ap_ref, inp_ref = peer_evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=1e-6)
    assert mAP == pytest.approx(np.mean(ap_ref), abs=1e-12)
    _, all_ap, all_inp = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, 20, returns="fastreid")
    np.testing.assert_allclose(all_ap, ap_ref, atol=1e-12)
    np.testing.assert_allclose(all_inp, inp_ref, atol=1e-12)


def test_evaluate_rank_refuses_what_it_does_not_do():
    from vireid.evaluation import evaluate_rank

    dist = np.zeros((1, 2))
    with pytest.raises(ValueError, match="use_metric_cuhk03"):
        evaluate_rank(dist, [1], [1, 2], [1], [2], 50, True)
    with pytest.raises(ValueError, match="returns must be one of"):
        evaluate_rank(dist, [1], [1, 2], [1], [2], returns="matlab")
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_rank(dist, [1], [1, 2], [2], [2, 2])  # the only match shares the query's camera


@pytest.mark.parametrize("protocol, q_cams, g_cams, expected", [
    ("sysu", [3, 6], [0, 1, 3, 4], r"g_cams holds camera ids 0, but protocol 'sysu' numbers its cameras 1\.\.6"),
    ("sysu", [3, 7], [1, 2, 4, 5], r"q_cams holds camera ids 7"),
    ("llcm", [1, 10], [1, 2, 4, 5], r"q_cams holds camera ids 10, but protocol 'llcm' numbers its cameras 1\.\.9"),
])
def test_protocols_refuse_foreign_camera_ids(protocol, q_cams, g_cams, expected):
    dist = np.arange(8, dtype=np.float32).reshape(2, 4)
    with pytest.raises(ValueError, match=expected):
        rank_metrics(dist, [1, 2], [1, 2, 1, 2], q_cams, g_cams, protocol=protocol)


def test_zero_based_sysu_cameras_get_a_hint():
    # SYSU-MM01 numbered 0..5 (camera 3 is then 2): the camera-3 / camera-2 rule would silently move
    dist = np.arange(8, dtype=np.float32).reshape(2, 4)
    with pytest.raises(ValueError, match="look 0-based: add 1"):
        rank_metrics(dist, [1, 2], [1, 2, 1, 2], [2, 5], [0, 1, 3, 4], protocol="sysu")
    ok = rank_metrics(dist, [1, 2], [1, 2, 1, 2], [3, 6], [1, 2, 4, 5], protocol="sysu")
    assert ok["num_valid_queries"] == 2


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm", "market1501"])
def test_value_rank_path_equals_exact_path_and_threads_change_nothing(protocol):
    """float32 distances take the value-ranks path (rows where a tie matters go to the exact one); the
    same order as dense integer ranks takes the exact path: every figure, per query, must agree."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(11)
    q, g = 120, 260
    dist = rng.random((q, g)).astype(np.float32)
    dist[::3] = np.round(dist[::3], 2)  # a third of the rows full of ties, some of them on true matches
    q_pids, g_pids = rng.integers(0, 15, q), rng.integers(0, 15, g)
    cams = (rng.choice([3, 6], q), rng.choice([1, 2, 4, 5], g)) if protocol == "sysu" else \
        (rng.integers(1, 10, q), rng.integers(1, 10, g))
    as_ints = rankdata(dist, method="dense", axis=1).astype(np.int64)  # the exact path's input
    fast = rank_metrics(dist, q_pids, g_pids, *cams, protocol=protocol, per_query=True, chunk_size=17, threads=1)
    exact = rank_metrics(as_ints, q_pids, g_pids, *cams, protocol=protocol, per_query=True, chunk_size=17, threads=1)
    threaded = rank_metrics(dist, q_pids, g_pids, *cams, protocol=protocol, per_query=True, chunk_size=17, threads=3)
    for other in (exact, threaded):
        for key in ("cmc", "AP", "INP", "first_rank", "valid"):
            np.testing.assert_array_equal(fast[key], other[key], err_msg=key)
    ref = reference_metrics(dist, q_pids, g_pids, *cams, protocol, 20) if protocol != "market1501" else None
    if ref is not None:
        np.testing.assert_allclose(fast["cmc"], ref["cmc"])
        assert fast["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
