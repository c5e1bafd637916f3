"""The values a gallery index takes and gives: :class:`Embeddings` (features with the fingerprint of the
model that embedded them), :class:`SearchHit` (one ranked gallery image), and the check that features are
a finite, L2-normalised float32 matrix."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vireid.retrieval.faiss_build import ADD_CHUNK

KINDS = ("auto", "flat", "ivfpq")


#: Largest deviation of a feature's L2 norm from 1 accepted as "L2-normalised".
NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SearchHit:
    """One gallery image returned for a query.

    ``id`` is the image's row id in the index (SQLite), ``score`` the inner product of the L2-normalised
    query and gallery features (the cosine similarity), ``rank`` the 1-based position in the results.
    ``rerank_distance`` is the k-reciprocal re-ranked distance when the results were re-ranked (the
    order then follows it, and ``score`` is still the cosine similarity).
    """

    id: int
    score: float
    rank: int
    path: str
    camera: int
    modality: str
    pid: int | None
    timestamp: str | float | int | None = None
    rerank_distance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Embeddings:
    """Features ``[N, D]`` (float32, L2-normalised) together with the fingerprint of the model that
    produced them; :meth:`GalleryIndex.search` and :meth:`GalleryIndex.add` check the fingerprint."""

    features: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return int(self.features.shape[0])


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_features(features: Any, name: str = "features", *, dim: int | None = None) -> np.ndarray:
    """``features`` as a C-contiguous float32 ``[N, D]`` array of L2-normalised rows, or ValueError."""
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[1]}; the index holds {dim}-dimensional features")
    for start in range(0, arr.shape[0], ADD_CHUNK):  # in blocks: no temporary as large as the features
        block = arr[start : start + ADD_CHUNK]
        if not np.isfinite(block).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        worst = int(np.argmax(np.abs(norms - 1.0)))
        if abs(float(norms[worst]) - 1.0) > NORM_TOLERANCE:
            raise ValueError(
                f"{name} must be L2-normalised (row norms 1 +- {NORM_TOLERANCE}); row {start + worst} has norm "
                f"{norms[worst]:.6f}"
            )
    return arr


def unpack_embeddings(features: Any, fingerprint: str | None) -> tuple[Any, str | None]:
    if isinstance(features, Embeddings):
        if fingerprint is not None and fingerprint != features.fingerprint:
            raise ValueError("fingerprint= differs from the fingerprint the Embeddings carry")
        return features.features, features.fingerprint
    return features, fingerprint
