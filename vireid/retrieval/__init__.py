"""Retrieval: ONNX export, feature extraction, a persistent gallery index, search and re-ranking.

- :mod:`vireid.retrieval.export` -- ``export_onnx``: one ONNX graph per modality, parity-checked;
- :mod:`vireid.retrieval.embed` -- ``load_model``, ``model_fingerprint``, ``TorchExtractor`` /
  ``OnnxExtractor``, ``embed``;
- :mod:`vireid.retrieval.image_lists` -- ``list_images`` (a folder or a manifest);
- :mod:`vireid.retrieval.feature_files` -- ``FeatureSet``, ``save_features`` / ``load_features``;
- :mod:`vireid.retrieval.index` -- ``GalleryIndex`` (FAISS + SQLite, crash-safe ``add``), ``SearchHit``;
- :mod:`vireid.retrieval.search` -- ``Searcher`` (query images in, ranked gallery images out);
- ``k_reciprocal_rerank`` -- k-reciprocal re-ranking (Zhong et al. CVPR 2017), from
  :mod:`vireid.evaluation.rerank` (an evaluation post-process that search uses too).

Names are imported lazily (``from vireid.retrieval import Searcher``), so importing the package loads
neither torch nor FAISS.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GalleryIndex": "index",
    "SearchHit": "index",
    "Embeddings": "index",
    "GalleryIndexError": "index",
    "ModelMismatchError": "index",
    "Searcher": "search",
    "FeatureSet": "feature_files",
    "load_features": "feature_files",
    "save_features": "feature_files",
    "load_model": "embed",
    "model_fingerprint": "embed",
    "TorchExtractor": "embed",
    "OnnxExtractor": "embed",
    "build_extractor": "embed",
    "list_images": "image_lists",
    "embed": "embed",
    "export_onnx": "export",
    "k_reciprocal_rerank": "vireid.evaluation.rerank",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = _EXPORTS[name]
        return getattr(importlib.import_module(module if "." in module else f"vireid.retrieval.{module}"), name)
    raise AttributeError(f"module 'vireid.retrieval' has no attribute {name!r}")
