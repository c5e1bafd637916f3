"""Hand-made cross-modal matchers: what a dataset gives away without any learning.

Two classic descriptors of the image centre (where the person stands), each compared by the cosine of
the square roots of the normalised histograms (the Hellinger kernel):

- :func:`colour_histograms`: a joint RGB histogram, ``bins`` levels per channel (6 x 6 x 6 = 216 bins);
- :func:`grey_histograms`: ``stripes`` horizontal stripes, each a ``bins``-level grey histogram (4 x 16 =
  64 bins; grey is the mean of the three channels, so an infrared image's single channel as it is).

:func:`handcrafted_results` runs them through a dataset's own protocol (the same queries, galleries,
trials and removal rules as a trained model's test). On a benchmark such a matcher finds the person
across modalities at about chance: if it does much better on a synthetic set, the set leaks identity
through colour or grey levels that a real camera would not give, and the set is too easy. The synthetic
generator is tested against this (``tests/test_synthetic.py``) and ``bench/learning.py`` prints them
beside the trained models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vireid.config.defaults import DataConfig

#: Joint RGB histogram levels per channel, grey-histogram stripes and levels.
COLOUR_BINS, GREY_STRIPES, GREY_BINS = 6, 4, 16
#: The image centre the descriptors look at (fractions of height and width): the person, less background.
CENTRE_ROWS, CENTRE_COLS = (0.0625, 0.9375), (0.25, 0.75)
DESCRIPTORS = ("colour", "grey")
#: The resize filter, the models' default (``data.resize``).
RESIZE = DataConfig.resize


def _centre(images: np.ndarray) -> np.ndarray:
    h, w = images.shape[1:3]
    return images[:, int(CENTRE_ROWS[0] * h): int(round(CENTRE_ROWS[1] * h)),
                  int(CENTRE_COLS[0] * w): int(round(CENTRE_COLS[1] * w))]


def _hellinger(hist: np.ndarray) -> np.ndarray:
    """Square roots of the normalised histograms, scaled to unit length (their dot product is the cosine)."""
    root = np.sqrt(hist / np.maximum(hist.sum(1, keepdims=True), 1e-12))
    return root / np.maximum(np.linalg.norm(root, axis=1, keepdims=True), 1e-12)


def colour_histograms(images: np.ndarray, bins: int = COLOUR_BINS) -> np.ndarray:
    """``[N, bins**3]`` descriptors of ``[N, H, W, 3]`` images with values in [0, 1]."""
    q = np.clip((_centre(images) * bins).astype(np.int64), 0, bins - 1)
    idx = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).reshape(len(images), -1)
    hist = np.stack([np.bincount(i, minlength=bins**3) for i in idx]).astype(np.float64)
    return _hellinger(hist)


def grey_histograms(images: np.ndarray, stripes: int = GREY_STRIPES, bins: int = GREY_BINS) -> np.ndarray:
    """``[N, stripes * bins]`` descriptors of ``[N, H, W, 3]`` images with values in [0, 1]: one grey
    histogram per horizontal stripe, the stripes normalised together."""
    grey = _centre(images).mean(-1)
    n, h = grey.shape[:2]
    q = np.clip((grey * bins).astype(np.int64), 0, bins - 1)
    stripe = (np.arange(h) * stripes // h)[:, None]
    idx = (stripe * bins + q).reshape(n, -1)
    hist = np.stack([np.bincount(i, minlength=stripes * bins) for i in idx]).astype(np.float64)
    return _hellinger(hist)


def describe(images: np.ndarray, descriptor: str) -> np.ndarray:
    if descriptor == "colour":
        return colour_histograms(images)
    if descriptor == "grey":
        return grey_histograms(images)
    raise ValueError(f"descriptor must be one of {DESCRIPTORS}, got {descriptor!r}")


def load_images(records: Sequence[Any], size: tuple[int, int] | None = None, resize: str = RESIZE) -> np.ndarray:
    """``[N, H, W, 3]`` float images in [0, 1] of the records' files, read as the models read them
    (:func:`vireid.data.training.load_rgb`: a missing or corrupt file is a ``DatasetError`` naming it) and
    resized to ``size`` = (height, width) with the models' filter (``data.resize``) when given; otherwise
    all files must have one size."""
    from torchvision.transforms import Resize

    from vireid.data.records import load_rgb
    from vireid.data.transforms import RESIZE_FILTERS

    to_size = None if size is None else Resize(tuple(size), interpolation=RESIZE_FILTERS[resize])
    out = []
    for r in records:
        im = load_rgb(r.path)
        if to_size is not None and im.size != (size[1], size[0]):
            im = to_size(im)
        out.append(np.asarray(im, dtype=np.float32) / 255.0)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"images of several sizes {sorted(shapes)}: pass size=(height, width)")
    return np.stack(out)


def handcrafted_results(protocol: Any, descriptor: str, *, trials: Sequence[int] | None = None,
                        size: tuple[int, int] | None = None, resize: str = RESIZE) -> dict[str, Any]:
    """Rank-1, Rank-10 and mAP (percent, mean over ``trials``, default all of the protocol's) of a
    hand-made matcher under ``protocol`` (an ``EvalProtocol``), with chance Rank-1 (1 / gallery
    identities) beside them; images at ``size`` (:func:`load_images`)."""
    from vireid.evaluation.metrics import rank_metrics

    features: dict[Any, np.ndarray] = {}

    def feats(records: Sequence[Any]) -> np.ndarray:
        missing = [r for r in records if r not in features]
        if missing:
            for r, f in zip(missing, describe(load_images(missing, size, resize), descriptor)):
                features[r] = f
        return np.stack([features[r] for r in records])

    rows = []
    for t in protocol.trials if trials is None else trials:
        query, gallery = protocol.query(t), protocol.gallery(t)
        distance = -(feats(query) @ feats(gallery).T)
        m = rank_metrics(distance, [r.pid for r in query], [r.pid for r in gallery], [r.camera for r in query],
                         [r.camera for r in gallery], protocol=protocol.metric)
        rows.append({"rank1": 100 * float(m["cmc"][0]), "rank10": 100 * float(m["cmc"][9]), "mAP": 100 * float(m["mAP"]),
                     "chance_rank1": 100.0 / len({r.pid for r in gallery})})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"trials": len(rows), "descriptor": descriptor}
