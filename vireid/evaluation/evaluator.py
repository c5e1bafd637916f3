"""The evaluator: test features of a model, then the protocol's ranking metrics for each trial.

- **Features** (:func:`extract_features`): the model in eval mode, under ``torch.inference_mode``;
  each image is read with PIL and converted to RGB (infrared images get three equal channels), passed
  through the test transform, and given to ``model.extract(images, modality)`` with its own record's
  modality code (visible 0, infrared 1), so every image goes through its own modality's branch.
  With ``flip`` the feature is the **mean** of the features of the image and of its horizontal flip
  (the reference code sums them; the sum and the mean give the same normalised feature).
- **Distances**: features are L2-normalised and the distance is the negative dot product,
  ``d(q, g) = -<q/|q|, g/|g|>`` (same ranking as the Euclidean distance of the normalised features).
- **Metrics**: :func:`vireid.evaluation.metrics.rank_metrics` with ``protocol=protocol.metric`` for each
  trial; results are reported in percent.
- **Caching**: the images of all requested trials are extracted once per unique image (path and
  modality): SYSU-MM01's query set is shared by all trials and the galleries overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vireid.data.base import EvalProtocol
from vireid.data.records import MODALITY_CODES, ImageRecord, load_rgb
from vireid.data.training import default_workers
from vireid.data.transforms import build_test_transform
from vireid.evaluation.feature_metrics import rank_metrics_from_features
from vireid.evaluation.metrics import rank_metrics
from vireid.evaluation.verification import mean_verification, verification_metrics

#: The metrics of each trial and of the mean, in percent, in table order.
METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
#: CMC ranks reported (``rankK`` = ``cmc[K - 1]``).
RANKS = (1, 5, 10, 20)


class _TestImages(Dataset):
    def __init__(self, records: Sequence[ImageRecord], transform: Callable[[Image.Image], torch.Tensor]):
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rec = self.records[i]
        return self.transform(load_rgb(rec.path)), MODALITY_CODES[rec.modality]


def extract_features(
    model: torch.nn.Module,
    records: Sequence[ImageRecord],
    *,
    transform: Callable[[Image.Image], torch.Tensor],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    flip: bool = False,
    progress: bool = True,
    workers: int = 0,
    to_cpu: bool = True,
) -> torch.Tensor:
    """Test features ``[len(records), D]`` (float32, on the CPU) of ``model.extract`` in eval mode.

    Each record's image goes through its own modality's branch (``modality`` codes from the records,
    mixed batches allowed). ``flip``: mean of the features of the image and its horizontal flip.
    ``workers`` loads images in that many worker processes (0: in this process); ``to_cpu=False`` keeps
    the features on the model's device. The model's training/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(records) == 0:
        raise ValueError("no images to extract features from")
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    # on a GPU: pinned batches copied without blocking (the copy overlaps the previous batch's work); the
    # modality codes stay on the host, where the two-stream routing reads them without a synchronisation;
    # the features stay on the device until the end (one copy back, not one per batch)
    loader = DataLoader(
        _TestImages(records, transform), batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=on_gpu
    )
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            bar = tqdm(total=len(records), desc="extracting features", unit="img", disable=not progress)
            with bar:
                for images, codes in loader:
                    images = images.to(device, non_blocking=on_gpu)
                    codes = codes.to(dtype=torch.long)
                    feats = model.extract(images, codes).float()
                    if flip:
                        feats = (feats + model.extract(images.flip(-1), codes).float()) / 2
                    if feats.dim() != 2 or feats.shape[0] != images.shape[0]:
                        raise ValueError(
                            f"{type(model).__name__}.extract must return [N, D] features, got "
                            f"{tuple(feats.shape)} for {images.shape[0]} images"
                        )
                    chunks.append(feats)
                    bar.update(images.shape[0])
    finally:
        model.train(was_training)
    out = torch.cat(chunks)
    return out.cpu() if to_cpu else out


def record_key(rec: ImageRecord) -> tuple[str, str]:
    return str(rec.path), rec.modality


class Evaluator:
    """Evaluates a model under ``protocol`` (see the module docstring for the exact rules).

    ``evaluate(model, trials)`` returns, with every metric in percent::

        {"dataset": name, "protocol": protocol.describe(),
         "trials": [{"trial": t, "rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}, ...],
         "mean": {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}}
    """

    def __init__(
        self,
        protocol: EvalProtocol,
        *,
        transform: Callable[[Image.Image], torch.Tensor],
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        flip: bool = False,
        progress: bool = True,
        workers: int = 0,
        rank_on_device: bool | None = None,
    ):
        self.protocol = protocol
        #: keep the features where they were extracted and rank them there (torch, chunked; never the
        #: full Q x G matrix); default: on CUDA. The CPU default builds the distance matrix with NumPy.
        self.rank_on_device = torch.device(device).type == "cuda" if rank_on_device is None else bool(rank_on_device)
        self.transform = transform
        self.batch_size = batch_size
        self.device = device
        self.flip = flip
        self.progress = progress
        self.workers = workers

    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        protocol: EvalProtocol,
        *,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> Evaluator:
        """Test transform of ``data.height/width``, ``test.batch_size``, ``test.flip``, ``data.workers``."""
        return cls(
            protocol,
            transform=build_test_transform(cfg.data),
            batch_size=int(cfg.test.batch_size),
            device=device,
            flip=bool(cfg.test.flip),
            progress=progress,
            workers=default_workers(int(cfg.data.workers)),
        )

    @property
    def dataset_name(self) -> str:
        return str(self.protocol.describe().get("dataset", type(self.protocol).__name__))

    def features(
        self, model: torch.nn.Module, records: Sequence[ImageRecord]
    ) -> dict[tuple[str, str], torch.Tensor]:
        """L2-normalised features of each unique ``(path, modality)`` among ``records``, extracted once."""
        unique: dict[tuple[str, str], ImageRecord] = {}
        for rec in records:
            unique.setdefault(record_key(rec), rec)
        recs = list(unique.values())
        feats = extract_features(
            model,
            recs,
            transform=self.transform,
            batch_size=self.batch_size,
            device=self.device,
            flip=self.flip,
            progress=self.progress,
            workers=self.workers,
            to_cpu=not self.rank_on_device,
        )
        feats = F.normalize(feats, dim=1)
        return {key: feats[i] for i, key in enumerate(unique)}

    def trial_features(
        self, model: torch.nn.Module, trials: Sequence[int] | None = None
    ) -> Iterator[tuple[int, list[ImageRecord], list[ImageRecord], torch.Tensor, torch.Tensor]]:
        """``(trial, query, gallery, query_features, gallery_features)`` for each trial (default: all of
        the protocol's), every image's features extracted once across all trials."""
        trial_list = list(self.protocol.trials) if trials is None else [int(t) for t in trials]
        if not trial_list:
            raise ValueError("no trial to evaluate")
        for t in trial_list:
            self.protocol.check_trial(t)
        sets = {t: (self.protocol.query(t), self.protocol.gallery(t)) for t in trial_list}
        cache = self.features(model, [rec for q, g in sets.values() for rec in (*q, *g)])
        for t in trial_list:
            query, gallery = sets[t]
            q_feats = torch.stack([cache[record_key(r)] for r in query])
            g_feats = torch.stack([cache[record_key(r)] for r in gallery])
            yield t, query, gallery, q_feats, g_feats

    def evaluate(
        self,
        model: torch.nn.Module,
        trials: Sequence[int] | None = None,
        *,
        distance: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
        verification: bool = False,
    ) -> dict[str, Any]:
        """Metrics (percent) of each trial in ``trials`` (default: all of the protocol's) and their mean.

        ``distance(query_features, gallery_features)`` gives the ``[Q, G]`` distance matrix; the
        default is the negative dot product of the L2-normalised features (k-reciprocal re-ranking
        passes its own, :mod:`vireid.evaluation.rerank`). ``verification``: also the open-set figures of
        every query-gallery pair's cosine similarity (:mod:`vireid.evaluation.verification`: TPR at FPR
        1e-4, 1e-3, 1e-2 and AUC): ``results["verification"]`` holds their mean and ``"trials"``.
        """
        on_device = distance is None and self.rank_on_device
        distance = distance or (lambda q, g: (-(q @ g.T)).cpu().numpy())
        rows, opened = [], []
        for t, query, gallery, q_feats, g_feats in self.trial_features(model, trials):
            labels = ([r.pid for r in query], [r.pid for r in gallery], [r.camera for r in query],
                      [r.camera for r in gallery])
            if on_device:  # distances with torch where the features are, chunk by chunk
                metrics = rank_metrics_from_features(q_feats, g_feats, *labels, protocol=self.protocol.metric,
                                                     max_rank=max(RANKS))
            else:
                metrics = rank_metrics(distance(q_feats, g_feats), *labels, protocol=self.protocol.metric,
                                       max_rank=max(RANKS))
            rows.append({"trial": t, **percentages(metrics), "cmc": [100.0 * float(c) for c in metrics["cmc"]]})
            if verification:
                opened.append({"trial": t, **verification_metrics(q_feats.float().cpu().numpy(),
                                                                  g_feats.float().cpu().numpy(), *labels,
                                                                  protocol=self.protocol.metric)})
        results = {
            "dataset": self.dataset_name,
            "protocol": self.protocol.describe(),
            "flip": bool(self.flip),  # how the features were taken: part of how the number was tested
            "trials": rows,
            "mean": mean_of_trials(rows),
        }
        if verification:  # beside the ranking rows, which stay those of a training run's final test
            results["verification"] = {**mean_verification(opened), "trials": opened}
        return results


def mean_of_trials(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean over per-trial rows of each metric in :data:`METRIC_KEYS` and, where every row has one,
    of the CMC curve (``"cmc"``, percent, element-wise)."""
    if not rows:
        raise ValueError("no trial results to average")
    mean: dict[str, Any] = {k: sum(float(r[k]) for r in rows) / len(rows) for k in METRIC_KEYS}
    if all("cmc" in r for r in rows):
        mean["cmc"] = [sum(vals) / len(rows) for vals in zip(*(r["cmc"] for r in rows))]
    return mean


def percentages(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``rank1/5/10/20``, ``mAP`` and ``mINP`` in percent from a :func:`rank_metrics` result."""
    cmc = metrics["cmc"]
    out = {f"rank{k}": 100.0 * float(cmc[k - 1]) for k in RANKS}
    out["mAP"] = 100.0 * float(metrics["mAP"])
    out["mINP"] = 100.0 * float(metrics["mINP"])
    return out


def format_results_table(results: Mapping[str, Any]) -> str:
    """A fixed-width table of an :meth:`Evaluator.evaluate` result: a header naming the dataset and
    protocol, one row per trial and the mean, values in percent with two decimals."""
    describe = results.get("protocol", {})
    settings = ", ".join(f"{k}={v}" for k, v in describe.items() if k != "dataset")
    title = f"{results.get('dataset', '?')} ({settings})" if settings else str(results.get("dataset", "?"))
    headers = ("trial", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
    widths = (7,) + (8,) * (len(headers) - 1)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    lines = [title, line(headers), line(["-" * w for w in widths])]
    for row in results["trials"]:
        lines.append(line([str(row["trial"])] + [f"{row[k]:.2f}" for k in METRIC_KEYS]))
    lines.append(line(["-" * w for w in widths]))
    lines.append(line(["mean"] + [f"{results['mean'][k]:.2f}" for k in METRIC_KEYS]))
    return "\n".join(lines)
