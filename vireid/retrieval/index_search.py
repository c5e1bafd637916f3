"""Searching a gallery index: queries checked against the index's model, FAISS search (or NumPy matrix
products for batches on a flat index), exact re-scoring of an IVF-PQ shortlist from the raw vectors, and
hits with their metadata. A part of :class:`vireid.retrieval.index.GalleryIndex` (its search methods)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vireid.retrieval.gallery import Embeddings, SearchHit, unpack_embeddings

#: Flat indexes answer batches of at least this many queries with NumPy matrix products (below: FAISS).
NUMPY_FLAT_MIN_QUERIES = 4
#: Query x gallery similarities computed per block by the batched flat search (64 MiB of float32).
FLAT_BLOCK_ELEMENTS = 1 << 24


class GallerySearch:
    # -- search ------------------------------------------------------------------------------------
    def _queries(self, queries: Any, fingerprint: str | None) -> np.ndarray:
        raw, fingerprint = unpack_embeddings(queries, fingerprint)
        self.check_fingerprint(fingerprint, "queries")
        arr = np.asarray(raw)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"queries must be a 2-D array [Q, D], got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"queries must be floating point, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {arr.shape[1]}; the index holds {self.dim}-dimensional features")
        if not np.isfinite(arr).all():
            raise ValueError("queries contain NaN or infinite values")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"query {int(np.argmin(norms[:, 0]))} is the zero vector")
        return arr / norms

    def search_ids(
        self, queries: Any, topk: int = 10, *, fingerprint: str | None = None, nprobe: int | None = None,
        refine: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``[Q, k]`` (cosine, descending) and ids ``[Q, k]`` (``-1`` where the gallery has fewer
        than ``topk`` entries). Queries are L2-normalised here. IVF-PQ: ``nprobe`` and ``refine`` (0:
        the PQ scores, no exact re-scoring) override the index's settings for this call."""
        import faiss

        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        q = self._queries(queries, fingerprint)
        k = int(topk)
        with self._lock:
            self._check_open()
            if self.kind == "ivfpq":
                probe = int(nprobe if nprobe is not None else self.nprobe)  # type: ignore[arg-type]
                if probe < 1:
                    raise ValueError(f"nprobe must be >= 1, got {probe}")
                params = faiss.SearchParametersIVF(nprobe=probe)
                refine = int(self._info["params"].get("refine") or 0) if refine is None else int(refine)
                shortlist = min(len(self), k * refine) if self._vectors is not None and refine else k
                scores, ids = self._faiss.search(q, max(shortlist, k), params=params)
                if self._vectors is not None and refine:
                    scores, ids = self._rescore(q, ids, k)
            elif q.shape[0] >= NUMPY_FLAT_MIN_QUERIES:
                scores, ids = self._flat_search_batched(q, k)
            else:
                scores, ids = self._faiss.search(q, k)
        return scores, ids

    def _rescore(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the candidate ``ids`` ``[Q, K]`` (``-1``: none) from the stored features; the
        best ``k`` of each row, descending (ties by id)."""
        assert self._vectors is not None
        valid = ids >= 0
        rows = self._vectors[np.where(valid, ids, 0).ravel()].reshape(*ids.shape, -1)
        exact = np.einsum("qd,qkd->qk", q, rows).astype(np.float32)
        exact[~valid] = -np.inf
        order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), -exact), axis=1)[:, :k]
        scores = np.take_along_axis(exact, order, axis=1)
        out = np.take_along_axis(ids, order, axis=1)
        out[np.isneginf(scores)] = -1
        return scores, out

    def _flat_search_batched(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of a flat index by NumPy matrix products over blocks of the stored vectors (read in
        place from FAISS's storage): the same result as ``IndexFlatIP.search``, several times faster for
        batches of queries with NumPy's BLAS than with the one bundled with faiss-cpu."""
        import faiss

        flat = faiss.downcast_index(self._faiss.index)
        n, d = int(flat.ntotal), int(flat.d)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
        labels = faiss.vector_to_array(self._faiss.id_map)
        k_eff = min(k, n)
        best_s = np.empty((q.shape[0], 0), dtype=np.float32)
        best_i = np.empty((q.shape[0], 0), dtype=np.int64)
        block = max(1024, FLAT_BLOCK_ELEMENTS // max(1, q.shape[0]))
        for start in range(0, n, block):
            sims = q @ vectors[start : start + block].T
            kk = min(k_eff, sims.shape[1])
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            best_s = np.concatenate([best_s, np.take_along_axis(sims, part, axis=1)], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_s.shape[1] > k_eff:
                keep = np.argpartition(-best_s, k_eff - 1, axis=1)[:, :k_eff]
                best_s = np.take_along_axis(best_s, keep, axis=1)
                best_i = np.take_along_axis(best_i, keep, axis=1)
        order = np.lexsort((best_i, -best_s), axis=1)  # score descending, then storage order
        scores = np.take_along_axis(best_s, order, axis=1)
        ids = labels[np.take_along_axis(best_i, order, axis=1)]
        if k_eff < k:  # as FAISS: -1 ids (and -inf scores) past the gallery's size
            pad = k - k_eff
            scores = np.concatenate([scores, np.full((q.shape[0], pad), -np.inf, np.float32)], axis=1)
            ids = np.concatenate([ids, np.full((q.shape[0], pad), -1, np.int64)], axis=1)
        return scores, ids

    def search(
        self,
        queries: np.ndarray | Embeddings,
        topk: int = 10,
        *,
        fingerprint: str | None = None,
        nprobe: int | None = None,
        refine: int | None = None,
    ) -> list[list[SearchHit]]:
        """The ``topk`` most similar gallery images of each query ``[Q, D]`` (a single ``[D]`` vector is
        one query), best first. ``fingerprint`` (or an :class:`Embeddings`) is checked against the
        index's model (:class:`ModelMismatchError`)."""
        scores, ids = self.search_ids(queries, topk, fingerprint=fingerprint, nprobe=nprobe, refine=refine)
        meta = self._rows([int(i) for i in np.unique(ids) if i >= 0])
        results: list[list[SearchHit]] = []
        for q in range(ids.shape[0]):
            hits = []
            for j in range(ids.shape[1]):
                i = int(ids[q, j])
                if i < 0:
                    continue
                row = meta[i]
                hits.append(
                    SearchHit(
                        id=i,
                        score=float(scores[q, j]),
                        rank=len(hits) + 1,
                        path=row["path"],
                        camera=row["camera"],
                        modality=row["modality"],
                        pid=row["pid"],
                        timestamp=row["timestamp"],
                    )
                )
            results.append(hits)
        return results
