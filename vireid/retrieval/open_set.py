"""Open-set search: a similarity threshold below which a search answers "no match" instead of returning the
nearest stranger.

The threshold is given (``value``: accept a gallery image when its cosine similarity to the query is
strictly above it) or **calibrated** for a false-positive rate on the gallery's own impostor pairs
(:func:`calibrate_threshold`): pairs of gallery images of different people, cross-modal pairs (visible x
infrared) when the gallery holds both modalities, else pairs within its one modality. The threshold is the
similarity that at most ``floor(fpr N)`` of the ``N`` impostor pairs exceed
(:func:`vireid.evaluation.verification.threshold_at_fpr`). Within one modality impostors look more alike
than across modalities, so a threshold calibrated on a one-modality gallery is conservative for
cross-modal queries (their false-positive rate is at most the one asked for, typically lower).

Calibration needs the person ids of the gallery (an index built from a dataset layout or a manifest); a
large gallery is sampled (:data:`CALIBRATION_IMAGES` images, fixed seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vireid.data.records import INFRARED, VISIBLE
from vireid.errors import ConfigError
from vireid.evaluation.verification import threshold_at_fpr

#: Gallery images sampled for calibration (about CALIBRATION_IMAGES² / 2 pairs).
CALIBRATION_IMAGES = 4000


@dataclass(frozen=True)
class MatchThreshold:
    """Accept a hit when its cosine similarity is strictly above ``value``; how the value was set."""

    value: float
    fpr: float | None = None  # the false-positive rate it was calibrated for (None: given by hand)
    impostor_pairs: int = 0
    images: int = 0
    pairs: str = ""  # "visible-infrared", "visible-visible", ...

    def describe(self) -> str:
        if self.fpr is None:
            return f"threshold {self.value:.4f} (given)"
        return (f"threshold {self.value:.4f} (FPR {self.fpr:g} on {self.impostor_pairs:,} {self.pairs} impostor "
                f"pairs of {self.images:,} gallery images)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def given_threshold(value: float) -> MatchThreshold:
    if not -1.0 <= float(value) <= 1.0:
        raise ConfigError(f"--threshold is a cosine similarity in [-1, 1], got {value}")
    return MatchThreshold(value=float(value))


def calibrate_threshold(index: Any, fpr: float, *, max_images: int = CALIBRATION_IMAGES, seed: int = 0) -> MatchThreshold:
    """The threshold of false-positive rate ``fpr`` on ``index``'s impostor pairs (module docstring)."""
    if not 0.0 < float(fpr) < 1.0:
        raise ConfigError(f"--fpr is a false-positive rate in (0, 1), got {fpr}")
    meta = index.metadata()
    if not meta:
        raise ConfigError(f"{index.folder}: the index is empty; nothing to calibrate a threshold on")
    missing = sum(m["pid"] is None for m in meta)
    if missing:
        raise ConfigError(f"{index.folder}: {missing} of {len(meta)} indexed images have no person id, so the gallery's "
                          "impostor pairs are unknown and --fpr cannot be calibrated; build the index from a dataset "
                          "layout or a manifest (which carry ids), or give --threshold")
    ids = np.array([m["id"] for m in meta], dtype=np.int64)
    if ids.size > max_images:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_images, replace=False))
        by_id = {m["id"]: m for m in meta}
        meta = [by_id[int(i)] for i in ids]
    feats = index.reconstruct(ids)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    pids = np.array([m["pid"] for m in meta])
    mods = np.array([m["modality"] for m in meta])
    both = {VISIBLE, INFRARED} <= set(mods.tolist())
    pairs = f"{VISIBLE}-{INFRARED}" if both else f"{mods[0]}-{mods[0]}"
    upper = np.triu(np.ones((ids.size, ids.size), dtype=bool), k=1)
    impostor = upper & (pids[:, None] != pids[None, :])
    if both:
        impostor &= mods[:, None] != mods[None, :]
    scores = (feats @ feats.T)[impostor]
    if scores.size == 0:
        raise ConfigError(f"{index.folder}: no impostor pairs ({pairs} pairs of different people) to calibrate on")
    value = threshold_at_fpr(scores, fpr)
    if value is None:
        raise ConfigError(f"--fpr {fpr:g} is finer than the gallery resolves: {scores.size:,} impostor pairs allow "
                          f"rates down to {1 / scores.size:.1e}; give a larger --fpr or a --threshold")
    return MatchThreshold(value=value, fpr=float(fpr), impostor_pairs=int(scores.size), images=int(ids.size), pairs=pairs)


def accepted(hits: list[Any], threshold: MatchThreshold | None) -> list[Any]:
    """The hits whose cosine similarity is strictly above the threshold (all of them without one)."""
    if threshold is None:
        return hits
    return [h for h in hits if h.score > threshold.value]
