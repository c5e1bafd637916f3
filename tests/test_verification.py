"""Open-set figures (vireid.evaluation.verification): thresholds, TPR at FPR and AUC against hand-worked
cases and a brute-force count, and the removal rule."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.evaluation.verification import (
    auc,
    fpr_key,
    pair_scores,
    roc_figures,
    threshold_at_fpr,
    verification_metrics,
)


def test_threshold_accepts_at_most_floor_fpr_n_impostors():
    impostor = np.arange(1000, dtype=np.float64) / 1000  # 0.000 .. 0.999
    # FPR 1e-2 of 1000 pairs: 10 may be accepted -> threshold 0.989 (0.990 .. 0.999 lie strictly above)
    t = threshold_at_fpr(impostor, 1e-2)
    assert t == pytest.approx(0.989)
    assert np.count_nonzero(impostor > t) == 10
    assert threshold_at_fpr(impostor, 1e-3) == pytest.approx(0.998)  # one accepted
    assert threshold_at_fpr(impostor, 1e-4) is None  # 0.1 pairs: not resolvable
    with pytest.raises(ValueError, match="fpr must be in"):
        threshold_at_fpr(impostor, 0.0)
    with pytest.raises(ValueError, match="no impostor pairs"):
        threshold_at_fpr([], 0.1)


def test_ties_only_lower_the_false_positive_rate():
    impostor = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    t = threshold_at_fpr(impostor, 0.2)  # k = 2: the third largest is 0.9 -> nothing above it is accepted
    assert t == 0.9 and np.count_nonzero(impostor > t) == 0


def test_roc_figures_against_brute_force():
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.15, 500)
    impostor = rng.normal(0.1, 0.15, 20000)
    got = roc_figures(genuine, impostor, fprs=(1e-3, 1e-2, 1e-1))
    for f in (1e-3, 1e-2, 1e-1):
        # brute force: the lowest threshold among the impostor scores with at most floor(f N) above it
        best = max(np.mean(genuine > t) for t in impostor if np.count_nonzero(impostor > t) <= int(f * impostor.size))
        assert got[fpr_key(f)] == pytest.approx(100 * best)
    pairs = np.mean(genuine[:, None] > impostor[None, :]) + 0.5 * np.mean(genuine[:, None] == impostor[None, :])
    assert got["AUC"] == pytest.approx(100 * pairs)
    assert got["genuine_pairs"] == 500 and got["impostor_pairs"] == 20000


def test_auc_hand_worked():
    # genuine 0.8 beats both impostors, 0.5 ties one and beats one: (2 + 1.5) / 4
    assert auc(np.array([0.8, 0.5]), np.array([0.5, 0.2])) == pytest.approx(0.875)


def test_pairs_follow_the_removal_rule():
    sim = np.arange(6, dtype=np.float32).reshape(2, 3)
    # query 0 (pid 1, camera 3) ignores the camera-2 image under SYSU-MM01's rule; query 1 (camera 6) ignores nothing
    genuine, impostor = pair_scores(sim, [1, 2], [1, 1, 2], [3, 6], [2, 1, 4], protocol="sysu")
    assert sorted(genuine.tolist()) == [1.0, 5.0] and sorted(impostor.tolist()) == [2.0, 3.0, 4.0]
    genuine, impostor = pair_scores(sim, [1, 2], [1, 1, 2], protocol="regdb")
    assert sorted(genuine.tolist()) == [0.0, 1.0, 5.0]


def test_verification_of_features_is_cosine_similarity():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    g = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)
    v = verification_metrics(q, g, [1, 2], [1, 2, 2], protocol="regdb", fprs=(0.5,))
    # genuine: q0-g0 1.0, q1-g1 0.8, q1-g2 1.0; impostor: q0-g1 0.6, q0-g2 0.0, q1-g0 0.0
    # FPR 0.5 of 3 impostors: 1 accepted -> threshold 0.0 -> every genuine pair above it
    assert v[fpr_key(0.5)] == pytest.approx(100.0) and v["AUC"] == pytest.approx(100.0)


def test_no_impostor_pairs_gives_no_figures_rather_than_an_error():
    v = roc_figures([0.9, 0.8], [], fprs=(1e-2,))
    assert v == {fpr_key(1e-2): None, "AUC": None, "genuine_pairs": 2, "impostor_pairs": 0}
