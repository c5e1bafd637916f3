"""Writing a gallery index: :meth:`GalleryWrite.build` makes generation 1 of a new folder and
:meth:`GalleryWrite.add` commits generation g + 1 with new vectors and rows, never touching a committed
generation (see :mod:`vireid.retrieval.index` for the crash-safety argument). A part of
:class:`vireid.retrieval.index.GalleryIndex` (its writing methods)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vireid.errors import ModelMismatchError
from vireid.retrieval.faiss_build import AUTO_IVFPQ_THRESHOLD, add_vectors, ivfpq_params, new_faiss_index
from vireid.retrieval.gallery import KINDS, Embeddings, check_features, now_iso, unpack_embeddings
from vireid.retrieval.index_files import (
    FORMAT,
    FORMAT_VERSION,
    commit_generation,
    gen_name,
    prepare_folder,
    remove_old_generations,
    remove_uncommitted,
    write_vectors,
    writer_lock,
)
from vireid.retrieval.index_metadata import (
    check_under_roots,
    create_schema,
    insert_rows,
    normalise_metadata,
    resolve_image_roots,
    write_info,
)

#: The index class a build returns (``GalleryIndex``, of which this is the writing half; not imported: the
#: index module imports this one).
IndexT = TypeVar("IndexT", bound="GalleryWrite")


class GalleryWrite:
    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(
        cls: type[IndexT],
        out_dir: str | Path,
        features: np.ndarray | Embeddings,
        metadata: Sequence[Mapping[str, Any]],
        *,
        model_info: Mapping[str, Any],
        kind: str = "auto",
        nlist: int | None = None,
        pq_m: int | None = None,
        nbits: int | None = None,
        nprobe: int | None = None,
        train_size: int | None = None,
        refine: int | None = None,
        seed: int = 0,
        overwrite: bool = False,
        progress: bool = True,
        image_roots: Sequence[str | Path] | None = None,
        allow_outside_roots: bool = False,
    ) -> IndexT:
        """Write a new index of ``features`` ``[N, D]`` (float32, L2-normalised) and their ``metadata``
        (one dict per row: ``path``, ``camera``, ``modality``, optional ``pid`` and ``timestamp``; other
        keys are kept as extra JSON) into ``out_dir``; returns it opened.

        ``model_info`` describes the model (must hold ``"fingerprint"``; the CLI also records the config
        and checkpoint). ``kind``: ``auto`` | ``flat`` | ``ivfpq``. IVF-PQ options (defaults from the
        gallery size, see :func:`auto_nlist`, :func:`auto_pq_m`, :func:`auto_nbits`): ``nlist`` lists,
        ``pq_m`` sub-quantizers of ``nbits`` bits, ``nprobe`` lists visited per query (default
        ``nlist / 16``, at least 1), trained on ``train_size`` random rows (default
        ``max(64 * nlist, 9984)``, at most N) drawn with ``seed``; ``refine`` (default
        :data:`~vireid.retrieval.faiss_build.DEFAULT_REFINE`, 0 disables) keeps the raw features for exact re-scoring of the
        ``refine x topk`` best PQ candidates. Relative image paths are made
        absolute. ``out_dir`` must be new or empty unless ``overwrite`` (which replaces an existing
        index there). ``image_roots``: the folders the images come from (default: their common folder),
        recorded for the service, which serves nothing outside them; an image outside them is an error
        unless ``allow_outside_roots``.
        """
        raw, fingerprint = unpack_embeddings(features, None)
        feats = check_features(raw)
        n, dim = feats.shape
        if n == 0:
            raise ValueError("cannot build an index of 0 features")
        rows = normalise_metadata(metadata, n)
        roots = resolve_image_roots([r[0] for r in rows], image_roots)
        check_under_roots([r[0] for r in rows], roots, allow_outside=allow_outside_roots)
        info_model = dict(model_info)
        if not isinstance(info_model.get("fingerprint"), str) or not info_model["fingerprint"]:
            raise ValueError("model_info must hold the model's 'fingerprint' (a non-empty string)")
        if fingerprint is not None and fingerprint != info_model["fingerprint"]:
            raise ModelMismatchError(
                f"the features were embedded by model {fingerprint[:12]}, but model_info names model "
                f"{info_model['fingerprint'][:12]}"
            )
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        resolved_kind = ("ivfpq" if n > AUTO_IVFPQ_THRESHOLD else "flat") if kind == "auto" else kind
        folder = Path(out_dir).expanduser()
        prepare_folder(folder, overwrite)

        params: dict[str, Any] = {}
        if resolved_kind == "ivfpq":
            params = ivfpq_params(n, dim, nlist=nlist, pq_m=pq_m, nbits=nbits, nprobe=nprobe, train_size=train_size,
                                   refine=refine)
        elif any(v is not None for v in (nlist, pq_m, nbits, nprobe, train_size, refine)):
            raise ValueError("nlist, pq_m, nbits, nprobe, train_size and refine apply to kind='ivfpq' only")
        index = new_faiss_index(resolved_kind, dim, params, feats, seed=seed, progress=progress)
        ids = np.arange(n, dtype=np.int64)
        add_vectors(index, feats, ids, progress=progress, desc="indexing")

        created = now_iso()
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dim": dim,
            "kind": resolved_kind,
            "requested_kind": kind,
            "params": params,
            "model_info": info_model,
            "created": created,
            "updated": created,
            "next_id": n,
            "image_roots": roots,
        }
        generation = 1
        with writer_lock(folder):
            db_path = folder / gen_name(generation, "sqlite")
            tmp_db = folder / f".{db_path.name}.tmp"
            tmp_db.unlink(missing_ok=True)
            con = sqlite3.connect(tmp_db)
            try:
                create_schema(con)
                with con:
                    insert_rows(con, 0, rows, progress=progress)
                    write_info(con, {**info, "generation": generation})
            finally:
                con.close()
            if params.get("refine"):
                write_vectors(folder, 0, feats)
            commit_generation(folder, generation, index, tmp_db)
        obj = cls(folder, nprobe=nprobe)
        if resolved_kind == "ivfpq":
            import faiss

            faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
        obj._faiss = index  # the index just written (not read back: a large gallery would be held twice)
        obj._use_committed_db(generation)
        return obj

    # -- updates -----------------------------------------------------------------------------------
    def add(
        self,
        features: np.ndarray | Embeddings,
        metadata: Sequence[Mapping[str, Any]],
        *,
        fingerprint: str | None = None,
        progress: bool = True,
        allow_outside_roots: bool = False,
    ) -> list[int]:
        """Append ``features`` and their ``metadata`` as a new generation (crash-safe, see the module
        docstring); returns the new rows' ids. ``fingerprint`` (or an :class:`Embeddings`) is checked
        against the index's model. An IVF-PQ index keeps its trained lists and codebooks. Images outside
        the index's image roots are refused unless ``allow_outside_roots``."""
        raw, fingerprint = unpack_embeddings(features, fingerprint)
        self.check_fingerprint(fingerprint, "the added features")
        feats = check_features(raw, dim=self.dim)
        rows = normalise_metadata(metadata, feats.shape[0])
        if self.image_roots():
            check_under_roots([r[0] for r in rows], self.image_roots(), allow_outside=allow_outside_roots)
        if feats.shape[0] == 0:
            return []
        with self._lock, writer_lock(self.folder):
            if self._read_current() != self.generation:
                self._load()  # another process committed meanwhile
            self._check_open()
            generation = self.generation + 1
            remove_uncommitted(self.folder, self.generation)
            start = int(self._info["next_id"])
            ids = np.arange(start, start + feats.shape[0], dtype=np.int64)
            tmp_db = self.folder / f".{gen_name(generation, 'sqlite')}.tmp"
            try:
                # 1. metadata: a copy of this generation's database, the new rows in one transaction
                con = sqlite3.connect(tmp_db)
                try:
                    self._db.backup(con)  # type: ignore[union-attr]
                    with con:
                        insert_rows(con, start, rows, progress=progress)
                        write_info(con, {**self._info, "next_id": start + len(rows), "updated": now_iso(),
                                          "generation": generation})
                finally:
                    con.close()
                # 2. vectors: raw rows appended past the committed ones (if kept), added to FAISS in memory,
                #    then the new files and the commit
                if self._vectors is not None:
                    write_vectors(self.folder, start, feats)
                add_vectors(self._faiss, feats, ids, progress=progress, desc="adding to index")
                commit_generation(self.folder, generation, self._faiss, tmp_db)
            except BaseException:
                tmp_db.unlink(missing_ok=True)
                self._load()  # the in-memory index may hold the new vectors: back to the committed state
                raise
            self._use_committed_db(generation)  # the in-memory FAISS index already holds the new vectors
            remove_old_generations(self.folder, keep_from=generation - 1)
        return ids.tolist()
