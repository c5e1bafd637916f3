"""k-reciprocal re-ranking: hand-worked cases, independent loop implementations of the paper's
definitions and of the authors' code's arithmetic, a constructed case where it improves mAP, and
``vireid test --rerank``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.layouts import write_tiny_config
from vireid.evaluation import rerank as rerank_module
from vireid.evaluation.metrics import rank_metrics
from vireid.evaluation.rerank import k_reciprocal_rerank


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def expanded_set(ranking: list[list[int]], i: int, k1: int, half: int, accept) -> set[int]:
    """R*(i, k1) from ranking lists, with Python sets (Eqs. 4-7): R(i, k) = the first k + 1 entries of i's
    list that have i among their own first k + 1; each R(j, half) of j in R(i, k1) joins it when
    ``accept(|R(i, k1) & R(j, half)|, |R(j, half)|)`` (the two variants differ in that test)."""

    def reciprocal(a: int, k: int) -> set[int]:
        return {j for j in ranking[a][: k + 1] if a in ranking[j][: k + 1]}

    r = reciprocal(i, k1)
    out = set(r)
    for j in r:
        rj = reciprocal(j, half)
        if accept(len(r & rj), len(rj)):
            out |= rj
    return out


def reference_rerank(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al. (CVPR 2017), Eqs. 3-12, with Python sets and loops, straight from the definitions."""
    x = np.concatenate([q, g]).astype(np.float32)
    n, nq = len(x), len(q)
    d = np.clip((1.0 - (x @ x.T).astype(np.float64)) / 2.0, 0.0, 1.0)
    np.fill_diagonal(d, 0.0)
    ranking = [[i] + sorted((j for j in range(n) if j != i), key=lambda j: (d[i, j], j)) for i in range(n)]
    k1 = min(k1, n - 1)
    half = (k1 + 1) // 2

    v = np.zeros((n, n))
    for i in range(n):  # N(i, k): i first, then its k nearest others; Eq 7 as printed (>=)
        r_star = expanded_set(ranking, i, k1, half, lambda overlap, size: overlap >= 2 / 3 * size - 1e-12)
        for j in r_star:
            v[i, j] = math.exp(-d[i, j])
    k2 = min(k2, n)
    v = np.array([v[ranking[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((nq, n - nq))
    for p in range(nq):
        for gi in range(nq, n):
            jaccard = 1.0 - np.minimum(v[p], v[gi]).sum() / np.maximum(v[p], v[gi]).sum()
            out[p, gi - nq] = (1 - lam) * jaccard + lam * d[p, gi]
    return out


def reference_code_rerank(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """The authors' code's arithmetic re-derived with loops and sets: squared Euclidean distances, each
    column divided by its max then transposed; plain stable argsort ranking; k/2 = round-half-even;
    strict '> 2/3'; V rows normalised; d_J = 1 - m / (2 - m); lambda blends the normalised distance."""
    x = np.concatenate([q, g]).astype(np.float64)
    n, nq = len(x), len(q)
    d2 = np.array([[float(((x[i] - x[j]) ** 2).sum()) for j in range(n)] for i in range(n)])
    col_max = d2.max(axis=0)
    c = (d2 / col_max[None, :]).T
    ranking = [sorted(range(n), key=lambda j: (c[i, j], j)) for i in range(n)]

    half = int(round(k1 / 2))  # Python's round is half-to-even, as NumPy's around
    v = np.zeros((n, n))
    for i in range(n):  # the code's strict float test
        expanded = expanded_set(ranking, i, k1, half, lambda overlap, size: overlap > 2.0 / 3 * size)
        cols = sorted(expanded)
        w = np.exp(-c[i, cols])
        v[i, cols] = w / w.sum()
    if k2 != 1:
        v = np.array([v[ranking[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((nq, n - nq))
    for p in range(nq):
        for gi in range(nq, n):
            m = np.minimum(v[p], v[gi]).sum()
            out[p, gi - nq] = (1 - lam) * (1 - m / (2 - m)) + lam * c[p, gi]
    return out


def test_hand_worked_case_code_variant():
    # q, g1 at 30 degrees, g2 at 90 degrees: squared distances 2 - sqrt 3, 2 and 1 (g1-g2)
    b = 2 - math.sqrt(3)
    a = b / 2  # row q divided by its max 2; row g1 by its max 1
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[math.cos(math.pi / 6), math.sin(math.pi / 6)], [0.0, 1.0]], np.float32)
    # k1 = 1: R*(q) = {q, g1}, R*(g1) = {g1, q}, R*(g2) = {g2}; rows of V normalised
    vq = np.array([1.0, math.exp(-a)]) / (1 + math.exp(-a))  # V_q[q], V_q[g1]
    vg1 = np.array([math.exp(-b), 1.0]) / (1 + math.exp(-b))  # V_g1[q], V_g1[g1]
    m = float(np.minimum(vq, vg1).sum())
    expected = [[0.7 * (1 - m / (2 - m)) + 0.3 * a, 0.7 * 1.0 + 0.3 * 1.0]]
    got = k_reciprocal_rerank(q, g, k1=1, k2=1, lambda_value=0.3)  # variant="code" is the default
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(reference_code_rerank(q, g, 1, 1, 0.3), expected, atol=1e-9)


@pytest.mark.parametrize(
    "num_q, num_g, dim, k1, k2, lam",
    [(6, 40, 16, 20, 6, 0.3), (4, 12, 8, 20, 6, 0.3), (9, 55, 24, 5, 3, 0.5), (3, 30, 8, 7, 1, 0.0),
     (1, 25, 4, 4, 2, 1.0), (5, 30, 8, 21, 6, 0.3), (5, 30, 8, 3, 6, 0.3)],
)
def test_code_variant_matches_the_loop_reference(num_q, num_g, dim, k1, k2, lam):
    rng = np.random.default_rng(num_q * 100 + num_g + k1)
    q, g = unit(rng.normal(size=(num_q, dim))), unit(rng.normal(size=(num_g, dim)))
    got = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam, variant="code")
    np.testing.assert_allclose(got, reference_code_rerank(q, g, k1, k2, lam), atol=2e-6)


def test_variants_differ_and_are_labelled():
    rng = np.random.default_rng(1)
    q, g = unit(rng.normal(size=(20, 16))), unit(rng.normal(size=(80, 16)))
    code = k_reciprocal_rerank(q, g)
    paper = k_reciprocal_rerank(q, g, variant="paper")
    assert np.abs(code - paper).max() > 0.01
    assert rerank_module.rerank_params()["variant"] == "code"
    assert rerank_module.rerank_params(variant="paper")["variant"] == "paper"
    with pytest.raises(ValueError, match="variant.*code, paper"):
        k_reciprocal_rerank(q, g, variant="torchreid")


def test_hand_worked_case():
    # q, g1 at 30 degrees, g2 at 90 degrees from q: d(q,g1) = (1 - cos 30)/2, d(q,g2) = 1/2, d(g1,g2) = 1/4
    a = (1 - math.cos(math.pi / 6)) / 2
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[math.cos(math.pi / 6), math.sin(math.pi / 6)], [0.0, 1.0]], np.float32)
    # k1 = 1: R*(q) = {q, g1}, R*(g1) = {g1, q}, R*(g2) = {g2}; k2 = 1: no expansion
    # d_J(q, g1) = 1 - 2 e^-a / 2 = 1 - e^-a; d_J(q, g2) = 1 (no shared neighbour)
    expected = [[0.7 * (1 - math.exp(-a)) + 0.3 * a, 0.7 * 1.0 + 0.3 * 0.5]]
    np.testing.assert_allclose(k_reciprocal_rerank(q, g, k1=1, k2=1, lambda_value=0.3, variant="paper"), expected,
                               atol=1e-6)


@pytest.mark.parametrize(
    "num_q, num_g, dim, k1, k2, lam",
    [(6, 40, 16, 20, 6, 0.3), (4, 12, 8, 20, 6, 0.3), (9, 55, 24, 5, 3, 0.5), (3, 30, 8, 7, 1, 0.0), (1, 25, 4, 4, 2, 1.0)],
)
def test_matches_the_loop_reference(num_q, num_g, dim, k1, k2, lam):
    rng = np.random.default_rng(num_q * 100 + num_g)
    q, g = unit(rng.normal(size=(num_q, dim))), unit(rng.normal(size=(num_g, dim)))
    got = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam, variant="paper")
    np.testing.assert_allclose(got, reference_rerank(q, g, k1, k2, lam), atol=1e-9)


def test_ranking_lists_in_blocks():
    rng = np.random.default_rng(2)
    x = unit(rng.normal(size=(23, 6)))
    x[5] = x[9]  # a duplicate: distance 0 to another item, which must still come after the item itself
    d = rerank_module.original_distance(x)
    expected = np.array([[i] + sorted((j for j in range(23) if j != i), key=lambda j: (d[i, j], j))
                         for i in range(23)])
    for block in (1, 4, 1024):
        np.testing.assert_array_equal(rerank_module.ranking_lists(d, 7, block=block), expected[:, :7])
    np.testing.assert_array_equal(rerank_module.ranking_lists(d, 50, block=5), expected)


def test_chunked_jaccard_gives_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    q, g = unit(rng.normal(size=(8, 12))), unit(rng.normal(size=(50, 12)))
    for variant in ("code", "paper"):
        monkeypatch.setattr(rerank_module, "_PAIR_CHUNK", 1 << 22)
        whole = k_reciprocal_rerank(q, g, variant=variant)
        monkeypatch.setattr(rerank_module, "_PAIR_CHUNK", 7)
        np.testing.assert_allclose(k_reciprocal_rerank(q, g, variant=variant), whole, atol=1e-12)


def identities(seed: int, ids: int = 30, per_id: int = 6, dim: int = 32):
    """Gallery: ``per_id`` images around each identity centre. Queries: the same identities seen through
    another modality (a shift shared by all queries) with more noise, so that a query's nearest gallery
    images are often another identity's, while the gallery's own neighbourhoods stay clean."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    shift = rng.normal(size=dim)
    shift *= 0.8 / np.linalg.norm(shift) * np.linalg.norm(centres, axis=1).mean()
    g = unit(np.repeat(centres, per_id, axis=0) + 0.35 * rng.normal(size=(ids * per_id, dim)))
    q = unit(centres + shift + 1.0 * rng.normal(size=(ids, dim)))
    return q, g, np.arange(ids), np.repeat(np.arange(ids), per_id)


def test_improves_map_on_a_constructed_case():
    for seed in range(3):
        q, g, q_pids, g_pids = identities(seed)
        before = rank_metrics(-(q @ g.T), q_pids, g_pids, protocol="regdb")["mAP"]
        for variant in ("code", "paper"):
            after = rank_metrics(k_reciprocal_rerank(q, g, variant=variant), q_pids, g_pids, protocol="regdb")["mAP"]
            assert after > before + 0.01, (seed, variant, before, after)


def test_bad_input():
    q, g = unit(np.ones((2, 4))), unit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="expected features"):
        k_reciprocal_rerank(q, g[:, :3])
    with pytest.raises(ValueError, match="k1 and k2"):
        k_reciprocal_rerank(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="at least one"):
        k_reciprocal_rerank(q[:0], g)


def test_vireid_test_rerank(tmp_path, monkeypatch, capsys, small_sysu):
    import torch

    import vireid.cli as cli
    from vireid.config import config_to_yaml, load_config
    from vireid.data import build_dataset
    from vireid.data.transforms import build_test_transform
    from vireid.engine.run import build_protocol
    from vireid.evaluation.evaluator import extract_features
    from vireid.models import build_model
    from vireid.models.checkpoint import save_checkpoint

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["test"])
    config = tmp_path / "tiny.yaml"
    write_tiny_config(config, root=small_sysu, test={"trials": 1, "batch_size": 64})
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_model(cfg, 8).eval()
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", model=model, epoch=0, num_classes=8,
                           config_yaml=config_to_yaml(cfg))
    out = tmp_path / "results.json"
    assert cli.main(["test", str(config), "--checkpoint", str(ckpt), "--rerank", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())

    # independently: the same features, re-ranked, scored with rank_metrics
    protocol = build_protocol(build_dataset("sysu", small_sysu), cfg)
    query, gallery = protocol.query(0), protocol.gallery(0)
    feats = extract_features(model, [*query, *gallery], transform=build_test_transform(cfg.data), progress=False)
    feats = torch.nn.functional.normalize(feats, dim=1).numpy()
    dist = k_reciprocal_rerank(feats[: len(query)], feats[len(query) :])
    expected = rank_metrics(dist, [r.pid for r in query], [r.pid for r in gallery], [r.camera for r in query],
                            [r.camera for r in gallery], protocol="sysu")
    assert results["rerank"] is True and results["rerank_params"]["k1"] == 20
    assert results["rerank_params"]["k2"] == 6 and results["rerank_params"]["lambda"] == 0.3
    assert results["mean"]["mAP"] == pytest.approx(100 * expected["mAP"], abs=1e-4)
    assert results["mean"]["rank1"] == pytest.approx(100 * expected["cmc"][0], abs=1e-4)
    assert results["mean"]["mINP"] == pytest.approx(100 * expected["mINP"], abs=1e-4)
    assert results["rerank_params"]["variant"] == "code"  # the authors' code's arithmetic by default
    assert "RE-RANKED: k-reciprocal, code variant (k1=20, k2=6, lambda=0.3)" in printed.splitlines()[1]
    # --rerank-variant paper: the printed equations, labelled as such
    assert cli.main(["test", str(config), "--checkpoint", str(ckpt), "--rerank", "--rerank-variant", "paper",
                     "--json", str(out)]) == 0
    assert "paper variant" in capsys.readouterr().out.splitlines()[1]
    paper = json.loads(out.read_text())
    dist = k_reciprocal_rerank(feats[: len(query)], feats[len(query) :], variant="paper")
    expected = rank_metrics(dist, [r.pid for r in query], [r.pid for r in gallery], [r.camera for r in query],
                            [r.camera for r in gallery], protocol="sysu")
    assert paper["rerank_params"]["variant"] == "paper"
    assert paper["mean"]["mAP"] == pytest.approx(100 * expected["mAP"], abs=1e-4)


def test_features_that_are_not_unit_length_are_refused_or_normalised_on_request():
    rng = np.random.default_rng(5)
    q, g = unit(rng.normal(size=(6, 8))), unit(rng.normal(size=(30, 8)))
    scale = rng.uniform(0.2, 5.0, size=(30, 1)).astype(np.float32)
    for variant in ("code", "paper"):
        with pytest.raises(ValueError, match=r"g_feats: .*expects L2-normalised.*30 of 30 rows.*normalize=True"):
            k_reciprocal_rerank(q, g * scale, variant=variant)
        # normalize=True gives exactly the re-ranking of the unit features
        np.testing.assert_allclose(k_reciprocal_rerank(q * 3, g * scale, variant=variant, normalize=True),
                                   k_reciprocal_rerank(q, g, variant=variant), atol=1e-6)
    half = np.float16  # features stored in half precision still count as unit length
    k_reciprocal_rerank(q.astype(half), g.astype(half))
