"""Losses against hand-worked values on tiny tensors, plain-Python references and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from vireid.config.defaults import VireidConfig
from vireid.errors import ConfigError
from vireid.losses import (
    AdaptiveWeightTripletLoss,
    BatchHardTripletLoss,
    CenterLoss,
    CrossEntropyLabelSmooth,
    HeteroCenterLoss,
    HeteroCenterTripletLoss,
    ModalityMeanMSELoss,
    WeightedRegularizationTriplet,
    build_metric_loss,
)


def points(*xy: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float32)


def long(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def random_batch(seed: int, ids: int = 3, per: int = 2, dim: int = 5, codes=(0, 1, 2)):
    """A mixed batch: every identity has ``per`` samples of each modality code in ``codes``."""
    gen = torch.Generator().manual_seed(seed)
    pids = torch.tensor([i for i in range(ids) for _ in codes for _ in range(per)])
    modality = torch.tensor([c for _ in range(ids) for c in codes for _ in range(per)])
    features = torch.randn(len(pids), dim, generator=gen)
    return features, pids, modality


# Five points on a line (embedded in 2-D), identities 0 at x = 0, 1, 3 and 1 at x = 5, 6.
LINE = points((0, 0), (1, 0), (3, 0), (5, 0), (6, 0))
LINE_PIDS = long(0, 0, 0, 1, 1)
# codes: x=0 visible, x=1 infrared, x=3 derived view (visible side), x=5 visible, x=6 infrared
LINE_MODALITY = long(0, 1, 2, 0, 1)


# ---------------------------------------------------------------- CrossEntropyLabelSmooth (FAFE eq 13)


def test_label_smoothing_hand_worked():
    # sample 1: p = (1/4, 1/2, 1/4), y = 1; xi = 0.3, N = 3: q_y = 1 - 2/3 * 0.3 = 0.8, q_other = 0.1
    #   L = -(0.8 ln 1/2 + 0.1 ln 1/4 + 0.1 ln 1/4) = 1.2 ln 2
    # sample 2: uniform p = 1/3: L = ln 3 whatever q is
    logits = torch.tensor([[0.0, math.log(2.0), 0.0], [5.0, 5.0, 5.0]])
    loss = CrossEntropyLabelSmooth(epsilon=0.3)(logits, long(1, 0))
    assert loss.item() == pytest.approx((1.2 * math.log(2) + math.log(3)) / 2, rel=1e-6)


def test_label_smoothing_zero_is_cross_entropy_and_one_is_uniform():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 11, generator=gen)
    targets = torch.randint(0, 11, (7,), generator=gen)
    plain = CrossEntropyLabelSmooth(epsilon=0.0)(logits, targets)
    assert torch.allclose(plain, F.cross_entropy(logits, targets), atol=1e-6)
    uniform = CrossEntropyLabelSmooth(epsilon=1.0)(logits, targets)
    assert torch.allclose(uniform, -F.log_softmax(logits, 1).mean(), atol=1e-6)
    default = CrossEntropyLabelSmooth()(logits, targets)
    expected = 0.9 * F.cross_entropy(logits, targets) + 0.1 * -F.log_softmax(logits, 1).mean()
    assert torch.allclose(default, expected, atol=1e-6)
    assert torch.allclose(default, F.cross_entropy(logits, targets, label_smoothing=0.1), atol=1e-6)


def test_label_smoothing_bad_input():
    loss = CrossEntropyLabelSmooth(epsilon=0.1)
    with pytest.raises(ValueError, match="targets must lie in 0..2"):
        loss(torch.zeros(2, 3), long(0, 3))
    with pytest.raises(ValueError, match="integer"):
        loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        loss(torch.zeros(3), long(0, 1, 2))
    with pytest.raises(ValueError, match="epsilon"):
        CrossEntropyLabelSmooth(epsilon=1.5)
    with pytest.raises(TypeError):
        CrossEntropyLabelSmooth(0.1)  # keyword-only


# ---------------------------------------------------------------- AdaptiveWeightTripletLoss (FAFE eqs 14-15)


def test_adaptive_triplet_rectangle_hand_worked():
    # rectangle 3 x 4: each anchor has one positive at 3 and negatives at 4 and 5
    # weighted negative distance = (4 e^-4 + 5 e^-5) / (e^-4 + e^-5); t = 3 - that for every anchor
    feats = points((0, 0), (3, 0), (0, 4), (3, 4))
    pids = long(0, 0, 1, 1)
    t = 3 - (4 * math.exp(-4) + 5 * math.exp(-5)) / (math.exp(-4) + math.exp(-5))
    assert t == pytest.approx(-1.26894, abs=1e-5)
    assert AdaptiveWeightTripletLoss(margin=1.0)(feats, pids).item() == 0.0  # satisfied with margin 1
    assert AdaptiveWeightTripletLoss(margin=2.0)(feats, pids).item() == pytest.approx(t + 2, abs=1e-5)
    soft = AdaptiveWeightTripletLoss(mode="softplus")(feats, pids).item()
    assert soft == pytest.approx(math.log1p(math.exp(t)), abs=1e-5)


def test_adaptive_triplet_line_hand_worked():
    # distances written out: (positives, negatives) of each anchor of LINE
    per_anchor = [
        ([1, 3], [5, 6]),  # x=0
        ([1, 2], [4, 5]),  # x=1
        ([3, 2], [2, 3]),  # x=3
        ([1], [5, 4, 2]),  # x=5
        ([1], [6, 5, 3]),  # x=6
    ]

    def weighted(ds, sign):
        z = sum(math.exp(sign * d) for d in ds)
        return sum(d * math.exp(sign * d) / z for d in ds)

    terms = [weighted(p, +1) - weighted(n, -1) for p, n in per_anchor]
    hinge = sum(max(0.0, t + 1.0) for t in terms) / 5
    soft = sum(math.log1p(math.exp(t)) for t in terms) / 5
    assert AdaptiveWeightTripletLoss(margin=1.0)(LINE, LINE_PIDS).item() == pytest.approx(hinge, abs=1e-5)
    assert AdaptiveWeightTripletLoss(mode="softplus")(LINE, LINE_PIDS).item() == pytest.approx(soft, abs=1e-5)
    # the adaptive weights differ from a plain mean over positives and negatives
    plain = sum(max(0.0, sum(p) / len(p) - sum(n) / len(n) + 1.0) for p, n in per_anchor) / 5
    assert abs(hinge - plain) > 1e-3


def reference_adaptive(feats, pids, margin, mode):
    """Plain-Python FAFE eq 15 (anchor not its own positive), mean over anchors."""
    xs, ys = feats.tolist(), pids.tolist()
    out = []
    for a, (xa, ya) in enumerate(zip(xs, ys)):
        pos = [math.dist(xa, xb) for b, (xb, yb) in enumerate(zip(xs, ys)) if yb == ya and b != a]
        neg = [math.dist(xa, xb) for xb, yb in zip(xs, ys) if yb != ya]
        if not pos or not neg:
            continue
        zp, zn = sum(math.exp(d) for d in pos), sum(math.exp(-d) for d in neg)
        t = sum(d * math.exp(d) / zp for d in pos) - sum(d * math.exp(-d) / zn for d in neg)
        out.append(max(0.0, t + margin) if mode == "hinge" else math.log1p(math.exp(t)))
    return sum(out) / len(out)


@pytest.mark.parametrize("mode", ["hinge", "softplus"])
def test_adaptive_triplet_matches_reference(mode):
    feats, pids, _ = random_batch(1, ids=4, per=2, dim=6)
    feats = feats * 0.6
    got = AdaptiveWeightTripletLoss(margin=1.0, mode=mode)(feats, pids).item()
    assert got == pytest.approx(reference_adaptive(feats, pids, 1.0, mode), abs=1e-5)
    assert got > 0


def test_wrt_softmax_variant_is_softplus_mode():
    feats, pids, _ = random_batch(2, ids=3, per=2)
    wrt = WeightedRegularizationTriplet(variant="softmax")
    assert wrt.mode == "softplus"
    assert isinstance(wrt, AdaptiveWeightTripletLoss)
    assert torch.equal(wrt(feats, pids), AdaptiveWeightTripletLoss(mode="softplus", margin=5.0)(feats, pids))


def reference_code_wrt(feats: torch.Tensor, pids: torch.Tensor) -> float:
    """The AGW reference code's TripletLoss_WRT re-derived row by row in float64: distance
    sqrt(max(||a||^2 + ||b||^2 - 2ab, 1e-12)); masks include the anchor among its positives; the
    softmax weights subtract the row maximum of (dist * mask) (for negatives of (-dist * mask)) and add
    1e-6 to the normaliser; SoftMarginLoss with target 1 = mean softplus(-(neg - pos))."""
    x = feats.double().numpy()
    p = pids.numpy()
    n = len(p)
    total = 0.0
    for a in range(n):
        d = np.array([math.sqrt(max(float(x[a] @ x[a] + x[j] @ x[j] - 2 * x[a] @ x[j]), 1e-12)) for j in range(n)])
        is_pos = (p == p[a]).astype(float)
        is_neg = (p != p[a]).astype(float)
        d_ap, d_an = d * is_pos, d * is_neg

        def weights(values, mask):
            shifted = values - np.max(values * mask)
            z = np.sum(np.exp(shifted) * mask) + 1e-6
            return np.exp(shifted) * mask / z

        far_pos = np.sum(d_ap * weights(d_ap, is_pos))
        close_neg = np.sum(d_an * weights(-d_an, is_neg))
        total += math.log1p(math.exp(-(close_neg - far_pos)))
    return total / n


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0])
def test_wrt_reference_variant_matches_the_reference_arithmetic(scale):
    feats, pids, _ = random_batch(3, ids=4, per=3)
    got = WeightedRegularizationTriplet()(feats * scale, pids).item()
    assert WeightedRegularizationTriplet().variant == "reference"
    assert got == pytest.approx(reference_code_wrt(feats * scale, pids), rel=1e-5, abs=1e-6)


def test_wrt_reference_far_negatives_tend_to_softplus_of_the_positive_distance():
    # 2048-d features whose identities lie far apart (negatives at distance >= ~40): exp(-d) << 1e-6, so
    # the reference's negative weights no longer sum to 1 and the loss becomes softplus(positive term)
    g = torch.Generator().manual_seed(5)
    centres = torch.randn(4, 2048, generator=g)
    pids = long(*[i for i in range(4) for _ in range(4)])
    feats = centres[pids] + 0.05 * torch.randn(16, 2048, generator=g)
    reference = WeightedRegularizationTriplet()(feats, pids).item()
    softmax = WeightedRegularizationTriplet(variant="softmax")(feats, pids).item()
    # float32 distances of 2048-d features (norms ~45) carry ~1e-4 relative cancellation error
    assert reference == pytest.approx(reference_code_wrt(feats, pids), rel=5e-4)
    dist = torch.cdist(feats.double(), feats.double())
    assert dist[pids.unsqueeze(1) != pids.unsqueeze(0)].min() > 14
    same = (pids.unsqueeze(1) == pids.unsqueeze(0)).double()
    shifted = torch.exp(dist * same - (dist * same).amax(1, keepdim=True)) * same
    far_pos = ((dist * shifted).sum(1) / (shifted.sum(1) + 1e-6))
    assert reference == pytest.approx(torch.nn.functional.softplus(far_pos).mean().item(), rel=5e-4)
    assert softmax < 1e-6 < 1.0 < reference  # the normalised weights see well-separated identities


def test_wrt_variant_is_a_config_key():
    cfg = OmegaConf.structured(VireidConfig)
    assert cfg.loss.wrt_variant == "reference"
    cfg.loss.metric = "wrt"
    assert build_metric_loss(cfg).variant == "reference"
    cfg.loss.wrt_variant = "softmax"
    assert build_metric_loss(cfg).variant == "softmax"
    cfg.loss.wrt_variant = "paper"
    with pytest.raises(ConfigError, match="loss.wrt_variant.*reference.*softmax"):
        build_metric_loss(cfg)


def test_adaptive_triplet_skips_anchor_without_positive():
    # identity 2 has one sample: it has no positive, so only the four rectangle anchors count
    feats = points((0, 0), (3, 0), (0, 4), (3, 4), (100, 100))
    pids = long(0, 0, 1, 1, 2)
    rect = AdaptiveWeightTripletLoss(margin=2.0)(feats[:4], pids[:4])
    # the far-away point is a negative with weight ~0 for the others, so the value is unchanged
    assert AdaptiveWeightTripletLoss(margin=2.0)(feats, pids).item() == pytest.approx(rect.item(), abs=1e-5)
    one_id = AdaptiveWeightTripletLoss()(feats[:2].clone().requires_grad_(), pids[:2])
    assert one_id.item() == 0.0 and one_id.requires_grad


# ---------------------------------------------------------------- BatchHardTripletLoss (FAFE eq 14, DAM eq 10)


def test_batch_hard_hand_worked():
    # hardest positive / nearest negative per anchor of LINE: x=0: 3/5, x=1: 2/4, x=3: 3/2, x=5: 1/2, x=6: 1/3
    loss = BatchHardTripletLoss(margin=0.3)(LINE, LINE_PIDS)
    assert loss.item() == pytest.approx((0 + 0 + 1.3 + 0 + 0) / 5, abs=1e-6)
    loss = BatchHardTripletLoss(margin=2.5)(LINE, LINE_PIDS)
    assert loss.item() == pytest.approx((0.5 + 0.5 + 3.5 + 1.5 + 0.5) / 5, abs=1e-6)


def test_batch_hard_cross_modality_hand_worked():
    # visible side {x=0, x=3 (code 2), x=5}, infrared side {x=1, x=6}; margin 2.5:
    # x=0: pos {1} 1, neg {6} 6 -> 0;  x=3: pos {1} 2, neg {6} 3 -> 1.5;  x=5: pos {6} 1, neg {1} 4 -> 0
    # x=1: pos {0, 3} max 2, neg {5} 4 -> 0.5;  x=6: pos {5} 1, neg {0, 3} min 3 -> 0.5
    loss = BatchHardTripletLoss(margin=2.5, cross_modality=True)(LINE, LINE_PIDS, LINE_MODALITY)
    assert loss.item() == pytest.approx(2.5 / 5, abs=1e-6)
    # modality is ignored (only checked) without cross_modality
    plain = BatchHardTripletLoss(margin=2.5)(LINE, LINE_PIDS, LINE_MODALITY)
    assert plain.item() == pytest.approx(6.5 / 5, abs=1e-6)


def reference_batch_hard(feats, pids, modality, margin, cross):
    xs, ys, ms = feats.tolist(), pids.tolist(), modality.tolist()
    out = []
    for a in range(len(xs)):
        others = [b for b in range(len(xs)) if b != a and (not cross or (ms[a] == 1) != (ms[b] == 1))]
        pos = [math.dist(xs[a], xs[b]) for b in others if ys[b] == ys[a]]
        neg = [math.dist(xs[a], xs[b]) for b in others if ys[b] != ys[a]]
        if pos and neg:
            out.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(out) / len(out)


@pytest.mark.parametrize("cross", [False, True])
def test_batch_hard_matches_reference(cross):
    feats, pids, modality = random_batch(3, ids=4, per=2, dim=4)
    got = BatchHardTripletLoss(margin=0.3, cross_modality=cross)(feats, pids, modality).item()
    assert got == pytest.approx(reference_batch_hard(feats, pids, modality, 0.3, cross), abs=1e-5)
    assert got > 0


def test_batch_hard_zero_when_satisfied_and_errors():
    feats = points((0, 0), (0, 1), (10, 0), (10, 1))
    pids, modality = long(0, 0, 1, 1), long(0, 1, 0, 1)
    assert BatchHardTripletLoss(margin=0.3, cross_modality=True)(feats, pids, modality).item() == 0.0
    with pytest.raises(ValueError, match="modality is required"):
        BatchHardTripletLoss(cross_modality=True)(feats, pids)
    with pytest.raises(ValueError, match=r"got \[3\]"):
        BatchHardTripletLoss(cross_modality=True)(feats, pids, long(0, 1, 3, 1))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        BatchHardTripletLoss()(feats, long(0, 0, 1))
    with pytest.raises(ValueError, match="margin"):
        BatchHardTripletLoss(margin=-1.0)
    # a batch without infrared samples has no cross-modality pair: 0, still attached to the graph
    single = feats.clone().requires_grad_()
    out = BatchHardTripletLoss(cross_modality=True)(single, pids, long(0, 0, 2, 2))
    assert out.item() == 0.0 and out.requires_grad


# ---------------------------------------------------------------- CenterLoss (Wen et al., FAFE Table 4)


def test_center_loss_hand_worked():
    loss = CenterLoss(num_classes=3, feat_dim=2)
    assert loss.centers.shape == (3, 2) and loss.centers.requires_grad
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]]))
    # 1/2 ||(1,0) - (0,0)||^2 = 0.5 and 1/2 ||(3,1) - (1,1)||^2 = 2 -> mean 1.25
    out = loss(points((1, 0), (3, 1)), long(0, 1))
    assert out.item() == pytest.approx(1.25)
    out.backward()
    # d/dc_0 = -(x - c)/N = (-0.5, 0), d/dc_1 = (-1, 0), c_2 unused
    assert torch.allclose(loss.centers.grad, torch.tensor([[-0.5, 0.0], [-1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="pids must lie in 0..2"):
        loss(points((1, 0)), long(3))
    with pytest.raises(ValueError, match="feat_dim=2"):
        loss(torch.zeros(1, 3), long(0))


# ---------------------------------------------------------------- Hetero-centre losses (DAM eqs 11-13)

# 2 identities x 3 modalities x 2 samples in 2-D; each pair of samples is centre +/- an offset.
CENTRES = {
    (0, 0): (0.0, 0.0),  # c_0^v
    (0, 1): (0.0, 3.0),  # c_0^t
    (0, 2): (0.0, 1.0),  # c_0^m
    (1, 0): (4.0, 0.0),  # c_1^v
    (1, 1): (4.0, 3.0),  # c_1^t
    (1, 2): (4.0, 4.0),  # c_1^m
}


def centre_batch(centres, offset=(1.0, -0.5)):
    feats, pids, modality = [], [], []
    for (pid, code), (cx, cy) in centres.items():
        for sign in (1, -1):
            feats.append((cx + sign * offset[0], cy + sign * offset[1]))
            pids.append(pid)
            modality.append(code)
    return torch.tensor(feats), torch.tensor(pids), torch.tensor(modality)


def test_hetero_center_triplet_hand_worked():
    # rho = 2.5; anchor -> own positive centre, nearest other-identity centre of any modality:
    # c0v: +c0t 3, nearest c1v 4            -> 2.5 + 3 - 4 = 1.5
    # c0t: +c0v 3, nearest c1t 4            -> 1.5
    # c0m: +c0t 2, nearest c1v sqrt(17)     -> 4.5 - sqrt(17) = 0.3769
    # c1v: +c1t 3, nearest c0v 4            -> 1.5
    # c1t: +c1v 3, nearest c0t 4            -> 1.5
    # c1m: +c1t 1, nearest c0t sqrt(17)     -> 3.5 - sqrt(17) < 0 -> 0
    feats, pids, modality = centre_batch(CENTRES)
    loss = HeteroCenterTripletLoss(margin=2.5)(feats, pids, modality)
    assert loss.item() == pytest.approx((4 * 1.5 + 4.5 - math.sqrt(17)) / 6, abs=1e-5)
    # rho = 1.5: only the four v/t anchors are active, 0.5 each
    assert HeteroCenterTripletLoss(margin=1.5)(feats, pids, modality).item() == pytest.approx(2 / 6, abs=1e-5)
    # a large gap between identities satisfies every term
    far = feats + (pids.unsqueeze(1) * torch.tensor([100.0, 0.0]))
    assert HeteroCenterTripletLoss(margin=2.5)(far, pids, modality).item() == 0.0


def test_hetero_center_triplet_missing_modalities():
    # identity 1 without its derived view: its m term goes, and c1m is no longer a negative
    # c0v 1.5, c0t 1.5, c0m: nearest of {c1v sqrt(17), c1t sqrt(20)} -> 0.3769, c1v 1.5, c1t 1.5
    centres = {k: v for k, v in CENTRES.items() if k != (1, 2)}
    loss = HeteroCenterTripletLoss(margin=2.5)(*centre_batch(centres))
    assert loss.item() == pytest.approx((4 * 1.5 + 4.5 - math.sqrt(17)) / 5, abs=1e-5)
    # identity 1 without infrared either: only identity 0's three anchors, against c1v alone
    # c0v: 2.5 + 3 - 4 = 1.5, c0t: 2.5 + 3 - 5 = 0.5, c0m: 2.5 + 2 - sqrt(17)
    centres = {k: v for k, v in centres.items() if k != (1, 1)}
    loss = HeteroCenterTripletLoss(margin=2.5)(*centre_batch(centres))
    assert loss.item() == pytest.approx((1.5 + 0.5 + 4.5 - math.sqrt(17)) / 3, abs=1e-5)
    # a single identity has no negative centre: 0, attached to the graph
    feats, pids, modality = centre_batch({k: v for k, v in CENTRES.items() if k[0] == 0})
    feats.requires_grad_()
    out = HeteroCenterTripletLoss()(feats, pids, modality)
    assert out.item() == 0.0 and out.requires_grad


def reference_hetero_center_triplet(feats, pids, modality, margin):
    groups: dict[tuple[int, int], list[list[float]]] = {}
    for x, y, m in zip(feats.tolist(), pids.tolist(), modality.tolist()):
        groups.setdefault((y, m), []).append(x)
    centre = {k: [sum(col) / len(v) for col in zip(*v)] for k, v in groups.items()}
    out = []
    for anchor_code, positive_code in ((0, 1), (1, 0), (2, 1)):
        for y in sorted({k[0] for k in centre}):
            if (y, anchor_code) not in centre or (y, positive_code) not in centre:
                continue
            negs = [math.dist(centre[y, anchor_code], c) for k, c in centre.items() if k[0] != y]
            if negs:
                d_pos = math.dist(centre[y, anchor_code], centre[y, positive_code])
                out.append(max(0.0, margin + d_pos - min(negs)))
    return sum(out) / len(out)


def test_hetero_center_triplet_matches_reference():
    feats, pids, modality = random_batch(4, ids=4, per=3, dim=5)
    got = HeteroCenterTripletLoss(margin=0.8)(feats, pids, modality).item()
    assert got == pytest.approx(reference_hetero_center_triplet(feats, pids, modality, 0.8), abs=1e-5)
    assert got > 0


# centres for eqs 12 and 13: ||c0v - c0t||^2 = 1 + 4 = 5, ||c1v - c1t||^2 = 0 + 9 = 9; code-2 centres far away
HC_CENTRES = {
    (0, 0): (0.0, 0.0),
    (0, 1): (1.0, 2.0),
    (0, 2): (50.0, -7.0),
    (1, 0): (4.0, 0.0),
    (1, 1): (4.0, 3.0),
    (1, 2): (-30.0, 20.0),
}


def test_hetero_center_loss_hand_worked():
    feats, pids, modality = centre_batch(HC_CENTRES)
    assert HeteroCenterLoss()(feats, pids, modality).item() == pytest.approx(14.0, abs=1e-5)
    # identity 1 without infrared: only identity 0 counts
    one = centre_batch({k: v for k, v in HC_CENTRES.items() if k != (1, 1)})
    assert HeteroCenterLoss()(*one).item() == pytest.approx(5.0, abs=1e-5)


def test_modality_mean_mse_hand_worked():
    feats, pids, modality = centre_batch(HC_CENTRES)
    # squared differences (1, 4) and (0, 9): mean over 2 identities x 2 dimensions = 14 / 4
    assert ModalityMeanMSELoss()(feats, pids, modality).item() == pytest.approx(3.5, abs=1e-5)
    one = centre_batch({k: v for k, v in HC_CENTRES.items() if k != (1, 0)})
    assert ModalityMeanMSELoss()(*one).item() == pytest.approx(2.5, abs=1e-5)
    # no identity with both modalities: 0, attached to the graph
    vis, vis_pids, vis_modality = centre_batch({k: v for k, v in HC_CENTRES.items() if k[1] != 1})
    out = ModalityMeanMSELoss()(vis.requires_grad_(), vis_pids, vis_modality)
    assert out.item() == 0.0 and out.requires_grad


@pytest.mark.parametrize("loss", [HeteroCenterTripletLoss(), HeteroCenterLoss(), ModalityMeanMSELoss()])
def test_center_losses_need_modality(loss):
    feats, pids, modality = centre_batch(CENTRES)
    with pytest.raises(ValueError, match="modality is required"):
        loss(feats, pids, None)
    with pytest.raises(ValueError, match=r"got \[5\]"):
        loss(feats, pids, torch.full_like(modality, 5))
    with pytest.raises(ValueError, match="floating"):
        loss(feats.long(), pids, modality)


# ---------------------------------------------------------------- properties of every batch loss

BATCH_LOSSES = [
    ("adaptive", lambda: AdaptiveWeightTripletLoss(margin=1.0), False),
    ("wrt", WeightedRegularizationTriplet, False),
    ("batch_hard", lambda: BatchHardTripletLoss(margin=0.3), True),
    ("batch_hard_cross", lambda: BatchHardTripletLoss(margin=0.3, cross_modality=True), True),
    ("hetero_center_triplet", lambda: HeteroCenterTripletLoss(margin=0.3), True),
    ("hetero_center", HeteroCenterLoss, True),
    ("modality_mse", ModalityMeanMSELoss, True),
]


@pytest.mark.parametrize("name,make,takes_modality", BATCH_LOSSES, ids=[b[0] for b in BATCH_LOSSES])
def test_permutation_invariance_and_gradient(name, make, takes_modality):
    feats, pids, modality = random_batch(5, ids=3, per=2, dim=4)
    feats = (feats * 0.3).requires_grad_()
    loss = make()
    args = (pids, modality) if takes_modality else (pids,)
    value = loss(feats, *args)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    perm = torch.randperm(len(pids), generator=torch.Generator().manual_seed(9))
    shuffled = loss(feats.detach()[perm], *(a[perm] for a in args))
    assert shuffled.item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6)


def test_identical_features_give_finite_gradients():
    feats = torch.zeros(4, 3, requires_grad=True)
    pids, modality = long(0, 0, 1, 1), long(0, 1, 0, 1)
    total = (
        AdaptiveWeightTripletLoss()(feats, pids)
        + WeightedRegularizationTriplet()(feats, pids)
        + BatchHardTripletLoss(cross_modality=True)(feats, pids, modality)
        + HeteroCenterTripletLoss()(feats, pids, modality)
    )
    total.backward()
    assert torch.isfinite(feats.grad).all()


def test_float16_features_are_computed_in_float32():
    feats, pids, modality = random_batch(6)
    big = feats * 200  # squared norms ~ 2e5 overflow float16
    expected = BatchHardTripletLoss(margin=0.3)(big, pids)
    got = BatchHardTripletLoss(margin=0.3)(big.half(), pids)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert got.item() == pytest.approx(expected.item(), rel=1e-2)


# ---------------------------------------------------------------- configuration


def test_from_config_and_build_metric_loss():
    cfg = OmegaConf.structured(VireidConfig)
    cfg.loss.metric, cfg.loss.margin, cfg.loss.cross_modality = "batch_hard", 0.7, True
    built = build_metric_loss(cfg)
    assert isinstance(built, BatchHardTripletLoss) and built.margin == 0.7 and built.cross_modality
    cfg.loss.metric = "adaptive"
    built = build_metric_loss(cfg)
    assert type(built) is AdaptiveWeightTripletLoss and built.margin == 0.7 and built.mode == "hinge"
    cfg.loss.metric = "wrt"
    assert type(build_metric_loss(cfg)) is WeightedRegularizationTriplet
    cfg.loss.metric = "none"
    assert build_metric_loss(cfg) is None
    cfg.loss.metric = "triplet"
    with pytest.raises(ConfigError, match="loss.metric.*'triplet'.*wrt, batch_hard, adaptive, esd, center, none"):
        build_metric_loss(cfg)
    cfg.loss.id_smoothing = 0.2
    assert CrossEntropyLabelSmooth.from_config(cfg).epsilon == 0.2
    cfg.loss.id_smoothing = 1.5
    with pytest.raises(ConfigError, match="loss.id_smoothing"):
        CrossEntropyLabelSmooth.from_config(cfg)
    cfg.loss.margin = -0.1
    with pytest.raises(ConfigError, match="loss.margin"):
        HeteroCenterTripletLoss.from_config(cfg)

