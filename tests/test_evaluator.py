"""The evaluator: feature extraction per modality, caching across trials, metrics and the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vireid.config import load_config
from vireid.data.base import EvalProtocol
from vireid.data.records import ImageRecord
from vireid.data.transforms import build_test_transform
from vireid.evaluation.evaluator import Evaluator, extract_features, format_results_table
from vireid.evaluation.metrics import rank_metrics
from vireid.models.base import ReIDModel

H, W = 16, 8
INFRARED_MIX = torch.tensor(np.random.default_rng(1).normal(size=(12, 12)), dtype=torch.float32)


def pooled(images: torch.Tensor) -> torch.Tensor:
    """12-d features: the mean of each channel over each quarter of the image (2 x 2 grid)."""
    return F.adaptive_avg_pool2d(images, (2, 2)).flatten(1)


class FakeModel(ReIDModel):
    """Features = 2x2 pooled image; infrared images (code 1) go through a different linear "branch".

    Counts the images it sees and records the modality codes of each call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(1)  # a module whose mode matters
        self.images_seen = 0
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError("not used in evaluation")

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        assert not self.training and not torch.is_grad_enabled()
        assert isinstance(modality, torch.Tensor) and modality.dtype == torch.long
        self.images_seen += images.shape[0]
        self.calls.append((images.clone(), modality.clone()))
        feats = pooled(images)
        infrared = modality == 1
        feats[infrared] = feats[infrared] @ INFRARED_MIX
        return feats


def expected_feature(rec: ImageRecord, flip: bool = False) -> torch.Tensor:
    """The fake model's feature computed independently from the image file."""
    arr = (
        np.asarray(Image.open(rec.path).convert("RGB").resize((W, H), Image.BILINEAR), dtype=np.float64)
        / 255.0
    )

    def feat(a: np.ndarray) -> np.ndarray:
        quarters = [
            a[r : r + H // 2, c : c + W // 2].mean(axis=(0, 1)) for r in (0, H // 2) for c in (0, W // 2)
        ]
        f = np.stack(quarters, axis=1).reshape(-1)  # channel-major, as flatten of [3, 2, 2]
        if rec.modality == "infrared":
            f = f @ INFRARED_MIX.double().numpy()
        return f

    f = feat(arr)
    if flip:
        f = (f + feat(arr[:, ::-1])) / 2
    return torch.tensor(f)


class FakeProtocol(EvalProtocol):
    """SYSU-like: one infrared query set shared by every trial, a different visible gallery per trial."""

    trials = (0, 1, 2)

    def __init__(self, records: list[ImageRecord], metric: str):
        self.metric = metric  # type: ignore[misc]
        self.queries = [r for r in records if r.modality == "infrared"]
        self.visible = [r for r in records if r.modality == "visible"]

    def query(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        return list(self.queries)

    def gallery(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        # overlapping galleries: every image whose index is not congruent to the trial mod 3
        return [r for i, r in enumerate(self.visible) if i % 3 != trial]

    def describe(self) -> dict[str, Any]:
        return {"dataset": "fake", "metric": self.metric, "mode": "all"}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[ImageRecord]:
    root: Path = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    out = []
    for pid in range(1, 6):
        base = rng.integers(0, 256, size=(H, W, 3))
        for modality, cameras in (("visible", (1, 2, 4, 5)), ("infrared", (3, 6))):
            for cam in cameras:
                # images of a person are noisy copies of a base pattern, so matches rank high but not always
                arr = np.clip(base + rng.normal(0, 60, size=base.shape), 0, 255).astype(np.uint8)
                if modality == "infrared":
                    arr[..., 1] = arr[..., 2] = arr[..., 0]
                path = root / modality / f"{pid}_{cam}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr, mode="RGB").save(path)
                out.append(ImageRecord(path, pid, cam, modality))
    return out


@pytest.fixture(scope="module")
def transform():
    return build_test_transform(load_config(None, [f"data.height={H}", f"data.width={W}"]).data)


@pytest.mark.parametrize("flip", [False, True])
def test_extract_features_per_modality(records, transform, flip) -> None:
    model = FakeModel()
    model.train()
    feats = extract_features(model, records, transform=transform, batch_size=4, flip=flip, progress=False)
    assert feats.shape == (len(records), 12) and feats.dtype == torch.float32
    expected = torch.stack([expected_feature(r, flip) for r in records]).float()
    assert torch.allclose(feats, expected, atol=1e-4)
    assert model.training  # mode restored
    codes = torch.cat([m for _, m in model.calls])
    per_image = 2 if flip else 1
    assert model.images_seen == per_image * len(records)
    seen_codes = codes if not flip else torch.cat([m for i, (_, m) in enumerate(model.calls) if i % 2 == 0])
    assert seen_codes.tolist() == [0 if r.modality == "visible" else 1 for r in records]
    if flip:
        first, second = model.calls[0][0], model.calls[1][0]
        assert torch.equal(second, first.flip(-1))


def test_extract_features_with_workers(records, transform) -> None:
    a = extract_features(FakeModel(), records, transform=transform, batch_size=5, progress=False)
    b = extract_features(FakeModel(), records, transform=transform, batch_size=3, progress=False, workers=2)
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        extract_features(FakeModel(), [], transform=transform, progress=False)


def reference_results(
    protocol: FakeProtocol, trials: list[int], flip: bool = False
) -> list[dict[str, float]]:
    """Metrics computed directly: float64 features from the image files, rank_metrics, x 100."""
    rows = []
    for t in trials:
        q, g = protocol.query(t), protocol.gallery(t)
        qf = F.normalize(torch.stack([expected_feature(r, flip) for r in q]), dim=1)
        gf = F.normalize(torch.stack([expected_feature(r, flip) for r in g]), dim=1)
        m = rank_metrics(
            (-(qf @ gf.T)).numpy(),
            np.array([r.pid for r in q]),
            np.array([r.pid for r in g]),
            np.array([r.camera for r in q]),
            np.array([r.camera for r in g]),
            protocol=protocol.metric,
            max_rank=20,
        )
        rows.append(
            {
                "trial": t,
                "rank1": 100 * m["cmc"][0],
                "rank5": 100 * m["cmc"][4],
                "rank10": 100 * m["cmc"][9],
                "rank20": 100 * m["cmc"][19],
                "mAP": 100 * m["mAP"],
                "mINP": 100 * m["mINP"],
            }
        )
    return rows


@pytest.mark.parametrize("metric", ["sysu", "regdb"])
def test_evaluate_matches_rank_metrics_and_caches_features(records, transform, metric) -> None:
    protocol = FakeProtocol(records, metric)
    model = FakeModel()
    evaluator = Evaluator(protocol, transform=transform, batch_size=7, progress=False)
    results = evaluator.evaluate(model)
    # every image once: the 10 shared queries and the union of the overlapping galleries (all 20 visible)
    assert model.images_seen == 10 + 20
    assert set(results) == {"dataset", "protocol", "flip", "trials", "mean"}
    assert results["dataset"] == "fake" and results["protocol"] == protocol.describe()
    assert results["flip"] is False  # how the features were taken is recorded with the numbers
    keys = {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    assert [row["trial"] for row in results["trials"]] == [0, 1, 2]
    assert all(set(row) == keys | {"trial", "cmc"} for row in results["trials"])
    assert set(results["mean"]) == keys | {"cmc"}
    expected = reference_results(protocol, [0, 1, 2])
    for row, ref in zip(results["trials"], expected):
        for k in keys:
            assert row[k] == pytest.approx(ref[k], abs=1e-6), (row["trial"], k)
    for k in keys:
        assert results["mean"][k] == pytest.approx(np.mean([r[k] for r in expected]), abs=1e-6)
    for row in results["trials"]:  # the full CMC curve (percent) agrees with the named ranks
        assert len(row["cmc"]) == 20
        assert [row["cmc"][k - 1] for k in (1, 5, 10, 20)] == [row[f"rank{k}"] for k in (1, 5, 10, 20)]
    assert results["mean"]["cmc"] == pytest.approx(np.mean([r["cmc"] for r in results["trials"]], axis=0))
    # not a constant: the metrics differ between trials (different galleries)
    assert len({round(row["mAP"], 6) for row in results["trials"]}) > 1
    # open-set figures on request: each trial's pairs of its own features, and their mean
    from vireid.evaluation.verification import pair_scores, roc_figures

    opened = evaluator.evaluate(model, [0, 1], verification=True)
    assert opened["trials"] == evaluator.evaluate(model, [0, 1])["trials"]  # the ranking rows are unchanged
    per_trial = opened["verification"]["trials"]
    for row, (t, query, gallery, q, g) in zip(per_trial, evaluator.trial_features(model, [0, 1])):
        genuine, impostor = pair_scores(q.numpy() @ g.numpy().T, [r.pid for r in query], [r.pid for r in gallery],
                                        [r.camera for r in query], [r.camera for r in gallery], protocol=metric)
        assert row == pytest.approx({"trial": t, **roc_figures(genuine, impostor)})
    assert opened["verification"]["AUC"] == pytest.approx(np.mean([r["AUC"] for r in per_trial]))


def test_evaluate_subset_of_trials_and_flip(records, transform) -> None:
    protocol = FakeProtocol(records, "sysu")
    model = FakeModel()
    results = Evaluator(protocol, transform=transform, flip=True, progress=False).evaluate(model, trials=[2])
    assert [row["trial"] for row in results["trials"]] == [2]
    assert model.images_seen == 2 * (10 + len(protocol.gallery(2)))
    ref = reference_results(protocol, [2], flip=True)[0]
    for k in ("rank1", "mAP", "mINP"):
        assert results["trials"][0][k] == pytest.approx(ref[k], abs=1e-6)
        assert results["mean"][k] == results["trials"][0][k]
    with pytest.raises(ValueError, match="trial 7"):
        Evaluator(protocol, transform=transform, progress=False).evaluate(model, trials=[7])


@pytest.mark.parametrize("metric", ["sysu", "regdb", "llcm"])
def test_ranking_on_the_features_device_gives_the_same_results(records, transform, metric) -> None:
    """The GPU path (features kept where they were extracted, ranked by rank_metrics_from_features with
    torch) run on CPU tensors: the same numbers as the default NumPy distance-matrix path."""
    protocol = FakeProtocol(records, metric)
    default = Evaluator(protocol, transform=transform, progress=False).evaluate(FakeModel())
    evaluator = Evaluator(protocol, transform=transform, progress=False, rank_on_device=True)
    assert evaluator.rank_on_device and not Evaluator(protocol, transform=transform).rank_on_device  # CPU default
    on_device = evaluator.evaluate(FakeModel())
    assert on_device["trials"] == default["trials"] and on_device["mean"] == default["mean"]


def test_from_config(records) -> None:
    cfg = load_config(None, [f"data.height={H}", f"data.width={W}", "test.batch_size=3", "test.flip=true"])
    evaluator = Evaluator.from_config(cfg, FakeProtocol(records, "regdb"), progress=False)
    assert evaluator.batch_size == 3 and evaluator.flip is True
    assert evaluator.workers >= 0  # data.workers=-1 (the default) is resolved from the CPU count
    img = Image.new("RGB", (20, 40))
    assert evaluator.transform(img).shape == (3, H, W)


def test_format_results_table() -> None:
    results = {
        "dataset": "sysu",
        "protocol": {"dataset": "sysu", "metric": "sysu", "mode": "all"},
        "trials": [
            {
                "trial": 0,
                "rank1": 50.0,
                "rank5": 75.5,
                "rank10": 80.0,
                "rank20": 90.0,
                "mAP": 45.125,
                "mINP": 30.0,
            },
            {
                "trial": 1,
                "rank1": 60.0,
                "rank5": 76.5,
                "rank10": 82.0,
                "rank20": 92.0,
                "mAP": 47.0,
                "mINP": 31.0,
            },
        ],
        "mean": {"rank1": 55.0, "rank5": 76.0, "rank10": 81.0, "rank20": 91.0, "mAP": 46.0625, "mINP": 30.5},
    }
    table = format_results_table(results)
    lines = table.splitlines()
    assert lines[0] == "sysu (metric=sysu, mode=all)"
    assert lines[1].split() == ["trial", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP"]
    assert lines[3].split() == ["0", "50.00", "75.50", "80.00", "90.00", "45.12", "30.00"]
    assert lines[4].split() == ["1", "60.00", "76.50", "82.00", "92.00", "47.00", "31.00"]
    assert lines[-1].split() == ["mean", "55.00", "76.00", "81.00", "91.00", "46.06", "30.50"]
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width
