"""Person search: query images in, ranked gallery images of a :class:`GalleryIndex` out.

:class:`Searcher` pairs an index with the model it was built with. :meth:`Searcher.from_index` reads the
model from the index (the resolved config and checkpoint path recorded at build time), loads it with
PyTorch or ONNX Runtime, and refuses it when its fingerprint differs from the index's (a retrained or
replaced checkpoint). Queries are embedded with the index's test-time settings (input size, flip) and
by default through the **other** modality's branch than the gallery's (an infrared query against a
visible gallery; any modality can be given explicitly).

With ``rerank=True`` the results are re-ranked with k-reciprocal encoding
(:mod:`vireid.evaluation.rerank`, Zhong et al. CVPR 2017) among the ``rerank_candidates`` best gallery
images of each query (the union over the queries of one call): the neighbourhood structure is
computed on the queries and those candidates, since a large gallery's full pairwise distances would not
fit in memory. For an IVF-PQ index the candidates' features are the product-quantised reconstructions.

Open-set search (:meth:`Searcher.set_threshold`, :mod:`vireid.retrieval.open_set`): with a threshold, only
hits whose cosine similarity is strictly above it are returned, so a query may get none ("no match").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vireid.config import config_from_yaml
from vireid.data.records import INFRARED, MODALITIES, VISIBLE
from vireid.errors import CheckpointError
from vireid.retrieval.embed import (
    FeatureExtractor,
    OnnxExtractor,
    TorchExtractor,
    load_model,
)
from vireid.retrieval.index import Embeddings, GalleryIndex, ModelMismatchError, SearchHit
from vireid.retrieval.open_set import MatchThreshold, accepted, calibrate_threshold, given_threshold

logger = logging.getLogger("vireid.retrieval")

#: Gallery candidates per query among which ``rerank=True`` re-ranks.
DEFAULT_RERANK_CANDIDATES = 100
ONNX_CACHE_DIR = "onnx"


def other_modality(modality: str) -> str:
    return INFRARED if modality == VISIBLE else VISIBLE


class Searcher:
    """Embeds query images with the index's model and searches the index (see the module docstring)."""

    def __init__(
        self,
        *,
        index: GalleryIndex,
        extractor: FeatureExtractor,
        rerank_candidates: int = DEFAULT_RERANK_CANDIDATES,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        rerank_variant: str = "code",
        threshold: MatchThreshold | None = None,
    ):
        from vireid.evaluation.rerank import check_variant

        if extractor.fingerprint != index.fingerprint:
            mi = index.model_info
            raise ModelMismatchError(
                f"the {extractor.backend} model given is {extractor.fingerprint[:12]}, but the index {index.folder} "
                f"was built with model {index.fingerprint[:12]} (checkpoint {mi.get('checkpoint')}); its features are "
                "not comparable (was the checkpoint retrained or replaced? rebuild the index with this model)"
            )
        if rerank_candidates < 1:
            raise ValueError(f"rerank_candidates must be >= 1, got {rerank_candidates}")
        self.index = index
        self.extractor = extractor
        self.rerank_candidates = int(rerank_candidates)
        self.k1, self.k2, self.lambda_value = int(k1), int(k2), float(lambda_value)
        self.rerank_variant = check_variant(rerank_variant)
        self.threshold = threshold  # open-set search: hits at or below it are dropped (vireid.retrieval.open_set)

    def set_threshold(self, value: float | None = None, *, fpr: float | None = None) -> MatchThreshold | None:
        """Answer "no match" below a similarity: ``value`` as given, or calibrated for false-positive rate
        ``fpr`` on the gallery's impostor pairs (:func:`~vireid.retrieval.open_set.calibrate_threshold`);
        neither clears it. Returns the threshold in use."""
        if value is not None and fpr is not None:
            raise ValueError("give a threshold value or a false-positive rate, not both")
        if value is not None:
            self.threshold = given_threshold(value)
        elif fpr is not None:
            self.threshold = calibrate_threshold(self.index, fpr)
        else:
            self.threshold = None
        return self.threshold

    @classmethod
    def from_index(
        cls,
        index_dir: str | Path,
        *,
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        backend: str = "torch",
        onnx: str | Path | Sequence[str | Path] | None = None,
        flip: bool | None = None,
        batch_size: int = 64,
        nprobe: int | None = None,
        **options: Any,
    ) -> Searcher:
        """Open the index in ``index_dir`` and load its model.

        ``backend``: ``torch`` (the recorded checkpoint, or ``checkpoint`` -- which must have the
        recorded fingerprint) or ``onnx`` (the graphs ``onnx``; when not given, they are exported once
        from the checkpoint into ``index_dir/onnx/<fingerprint>/``). ``flip`` defaults to the index's
        setting. ``nprobe`` overrides an IVF-PQ index's. ``options``: ``rerank_candidates``, ``k1``,
        ``k2``, ``lambda_value``, ``rerank_variant`` (``code``, the authors' code, or ``paper``).
        """
        index = GalleryIndex.open(index_dir, nprobe=nprobe)
        info = index.model_info
        flip = bool(info.get("flip", False)) if flip is None else bool(flip)
        if backend == "onnx" and onnx is not None:
            extractor: FeatureExtractor = OnnxExtractor.from_paths(onnx, batch_size=batch_size, flip=flip, device=device)
            return cls(index=index, extractor=extractor, **options)
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        loaded = _load_index_model(index, checkpoint, device="cpu" if backend == "onnx" else device)
        if backend == "torch":
            extractor = TorchExtractor(loaded, device=device, batch_size=batch_size, flip=flip)
        else:
            extractor = OnnxExtractor(_cached_onnx(index, loaded), batch_size=batch_size, flip=flip, device=device)
        return cls(index=index, extractor=extractor, **options)

    # -- properties ------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.extractor.fingerprint

    def default_query_modality(self) -> str:
        """The other modality than the gallery's (the majority one when the gallery holds both)."""
        counts = self.index.modalities()
        gallery = max(MODALITIES, key=lambda m: counts.get(m, 0))
        return other_modality(gallery)

    def _modality(self, modality: str | None) -> str:
        if modality is None:
            return self.default_query_modality()
        if modality not in MODALITIES:
            raise ValueError(f"query modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
        return modality

    # -- embedding -------------------------------------------------------------------------------
    def embed_images(self, images: Sequence[Any], modality: str | None = None) -> np.ndarray:
        """L2-normalised features ``[len(images), D]`` of PIL images through ``modality``'s branch
        (default: :meth:`default_query_modality`)."""
        return self.extractor.embed_images(list(images), self._modality(modality))

    def embed_paths(self, paths: Sequence[str | Path], modality: str | None = None) -> np.ndarray:
        """Features of image files (a missing or unreadable file is a DatasetError naming it)."""
        return self.extractor.embed_paths(list(paths), self._modality(modality))

    # -- search ------------------------------------------------------------------------------------
    def search_features(self, features: np.ndarray | Embeddings, topk: int = 10, rerank: bool = False) -> list[list[SearchHit]]:
        """Results of query features (an :class:`Embeddings` is checked against the index's model; a
        plain array is taken as embedded by this searcher's model)."""
        emb = features if isinstance(features, Embeddings) else Embeddings(np.asarray(features), self.fingerprint)
        results = self.index.search(emb, topk) if not rerank else self._search_reranked(emb, topk)
        return [accepted(hits, self.threshold) for hits in results]

    def search_images(self, images: Sequence[Any], modality: str | None = None, topk: int = 10,
                      rerank: bool = False) -> list[list[SearchHit]]:
        """The ``topk`` best gallery images for each PIL query image, best first."""
        return self.search_features(self.embed_images(images, modality), topk, rerank)

    def search_paths(self, paths: Sequence[str | Path], modality: str | None = None, topk: int = 10,
                     rerank: bool = False) -> list[list[SearchHit]]:
        """The ``topk`` best gallery images for each query image file, best first."""
        return self.search_features(self.embed_paths(paths, modality), topk, rerank)

    def _search_reranked(self, emb: Embeddings, topk: int) -> list[list[SearchHit]]:
        from vireid.evaluation.rerank import k_reciprocal_rerank

        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        _, ids = self.index.search_ids(emb, max(int(topk), self.rerank_candidates))
        cand = np.unique(ids[ids >= 0])
        q = emb.features.astype(np.float32)
        q = q[None, :] if q.ndim == 1 else q
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = self.index.reconstruct(cand)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        dist = k_reciprocal_rerank(q, g, k1=self.k1, k2=self.k2, lambda_value=self.lambda_value,
                                   variant=self.rerank_variant)
        scores = q @ g.T
        meta = self.index.get_many(cand.tolist())
        results = []
        for qi in range(q.shape[0]):
            order = np.argsort(dist[qi], kind="stable")[: int(topk)]
            hits = []
            for rank, j in enumerate(order, start=1):
                row = meta[int(cand[j])]
                hits.append(SearchHit(id=int(cand[j]), score=float(scores[qi, j]), rank=rank, path=row["path"],
                                      camera=row["camera"], modality=row["modality"], pid=row["pid"],
                                      timestamp=row["timestamp"], rerank_distance=float(dist[qi, j])))
            results.append(hits)
        return results


def _load_index_model(index: GalleryIndex, checkpoint: str | Path | None, *, device: str) -> Any:
    info = index.model_info
    if not info.get("config"):
        raise CheckpointError(f"{index.folder}: the index records no model config; it cannot load its model "
                              "(use the onnx backend with the exported graphs)")
    path = checkpoint if checkpoint is not None else info.get("checkpoint")
    if not path:
        raise CheckpointError(f"{index.folder}: the index records no checkpoint; give one (--checkpoint)")
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint recorded by the index {index.folder} does not exist; "
                              "give its new location (--checkpoint PATH)")
    cfg = config_from_yaml(info["config"], f"{index.folder} (recorded config)")
    loaded = load_model(cfg, path, device=device)
    if loaded.fingerprint != index.fingerprint:
        raise ModelMismatchError(
            f"{path}: this checkpoint (model {loaded.fingerprint[:12]}) is not the model the index {index.folder} "
            f"was built with ({index.fingerprint[:12]}, checkpoint {info.get('checkpoint')}); its features are not "
            "comparable with the gallery's (rebuild the index with this checkpoint)"
        )
    return loaded


def _cached_onnx(index: GalleryIndex, loaded: Any) -> dict[str, Path]:
    """Graphs of both modalities for ``loaded``, exported once into the index folder."""
    from vireid.retrieval.export import export_onnx, onnx_output_paths

    folder = index.folder / ONNX_CACHE_DIR / loaded.fingerprint[:16]
    paths = {m: p for m, p in onnx_output_paths(folder / "model.onnx", "both").items() if m in MODALITIES}
    if all(p.is_file() for p in paths.values()):
        return paths
    logger.info("exporting the index's model to ONNX in %s", folder)
    try:
        for m, path in paths.items():  # the one-branch graphs only: the search runs one branch per query
            export_onnx(loaded, path, modality=m)
        return paths
    except OSError as exc:
        from vireid.errors import VireidError

        raise VireidError(f"{folder}: cannot write the ONNX graphs there ({exc}); export them with 'vireid export' "
                          "and pass them (onnx=..., --onnx)") from exc
