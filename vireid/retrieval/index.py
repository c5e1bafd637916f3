"""A persistent gallery index: FAISS vectors and SQLite metadata in one folder, crash-safe updates.

Layout of an index folder::

    CURRENT               {"format": "vireid-gallery-index", "format_version": 1, "generation": g}
    gen-00000g.faiss      the FAISS index of generation g (vectors, ids = SQLite row ids)
    gen-00000g.sqlite     metadata of generation g: table ``images`` (one row per vector) and
                          table ``info`` (dim, kind, model_info, parameters, timestamps)
    vectors.f32           IVF-PQ with exact re-scoring: the raw float32 features, row = id (append-only;
                          a generation uses the first ``count`` rows)
    .lock                 taken (``flock``) by a process that changes the index

**Kinds.** ``flat``: exact inner product (``IndexFlatIP`` inside ``IndexIDMap2``); features are
L2-normalised, so the score is the cosine similarity. ``ivfpq``: an inverted file of ``nlist`` lists
with product-quantised residuals (``IndexIVFPQ``, inner product), trained on a random sample of the
first batch; ``nprobe`` lists are visited per query (approximate). With ``refine`` R > 0 (default
:data:`~vireid.retrieval.faiss_build.DEFAULT_REFINE`) the raw features are also kept on disk (``vectors.f32``, memory-mapped) and the
``R x topk`` best candidates of the product-quantised search are re-scored exactly: the codes make the
shortlist fast, the exact scores order it (product quantisation alone confuses the close scores of
re-id neighbours: recall@10 0.32 without re-scoring, 0.997 with R = 64 on 10^6 clustered embeddings in
bench/search_speed.py). ``auto`` picks ``ivfpq`` above
:data:`~vireid.retrieval.faiss_build.AUTO_IVFPQ_THRESHOLD` vectors and ``flat`` otherwise. Batches of queries on a flat index are
answered with NumPy matrix products over FAISS's stored vectors (faster than FAISS's bundled BLAS).

**Crash safety.** A generation is never modified once committed. :meth:`GalleryIndex.add` copies the
SQLite database of generation g to a temporary file, inserts the new rows in one transaction, writes the
FAISS index with the new vectors to a temporary file, ``fsync``s both, renames them to generation
g + 1, and only then replaces ``CURRENT`` (written to a temporary file and renamed: the commit point).
A process killed at any step before that rename leaves ``CURRENT`` naming generation g, whose files are
untouched; leftovers of the interrupted attempt are removed by the next :meth:`add` (``vectors.f32``
rows past the committed count are ignored by readers and truncated by the next add). After a commit the
generation before the previous one is deleted (the previous one is kept so that a reader that has just
read ``CURRENT`` can still open its files).

**Model fingerprint.** ``model_info["fingerprint"]`` identifies the model (weights and test-time
settings) whose features the index holds. :meth:`search` and :meth:`add` accept a ``fingerprint`` (or an
:class:`Embeddings` that carries one) and raise :class:`ModelMismatchError` when it differs: features of
different models are not comparable even when their dimensions agree.

FAISS is imported inside the functions that use it.

**Modules.** This module opens and reads an index (:class:`GalleryIndex`); its writing methods are
:mod:`vireid.retrieval.index_write`, its search methods :mod:`vireid.retrieval.index_search`; the folder's
files and the commit are :mod:`vireid.retrieval.index_files`, the SQLite side
:mod:`vireid.retrieval.index_metadata`, the FAISS side :mod:`vireid.retrieval.faiss_build`, and the values
it takes and gives :mod:`vireid.retrieval.gallery`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import GalleryIndexError, ModelMismatchError
from vireid.retrieval.gallery import Embeddings, SearchHit
from vireid.retrieval.index_files import (
    CURRENT_FILE,
    FORMAT,
    FORMAT_VERSION,
    VECTORS_FILE,
    gen_name,
)
from vireid.retrieval.index_metadata import (
    IMAGE_COLUMNS,
    SQL_VARIABLES,
    read_info,
    resolve_image_roots,
    row_dict,
)
from vireid.retrieval.index_search import GallerySearch
from vireid.retrieval.index_write import GalleryWrite

#: Public names (the values, errors and image roots live in their own modules and are re-exported here).
__all__ = ["Embeddings", "GalleryIndex", "GalleryIndexError", "ModelMismatchError", "SearchHit", "resolve_image_roots"]


# -- the index -------------------------------------------------------------------------------------
class GalleryIndex(GalleryWrite, GallerySearch):
    """A gallery of L2-normalised features with metadata, searchable by inner product (cosine).

    Build with :meth:`build`, open with :meth:`open`; see the module docstring for the folder layout,
    the kinds and the crash-safety guarantees. Methods are safe to call from several threads.
    """

    def __init__(self, folder: Path, *, nprobe: int | None = None):
        """Use :meth:`open` or :meth:`build`."""
        self.folder = Path(folder)
        self._lock = threading.RLock()
        self._nprobe_override = nprobe
        self._faiss: Any = None
        self._db: sqlite3.Connection | None = None
        self._info: dict[str, Any] = {}
        self._count = 0
        self._vectors: np.ndarray | None = None
        self.generation = 0

    @classmethod
    def open(cls, index_dir: str | Path, *, nprobe: int | None = None) -> GalleryIndex:
        """Open the committed generation of the index in ``index_dir`` (read into memory).

        ``nprobe`` overrides the IVF lists visited per query (IVF-PQ indexes; ignored by flat ones).
        """
        obj = cls(Path(index_dir).expanduser(), nprobe=nprobe)
        obj._load()
        return obj

    # -- loading -------------------------------------------------------------------------------
    def _read_current(self) -> int:
        path = self.folder / CURRENT_FILE
        if not self.folder.is_dir():
            raise GalleryIndexError(f"{self.folder}: index folder does not exist (build one with 'vireid index build')")
        if not path.is_file():
            raise GalleryIndexError(
                f"{self.folder}: not a vireid gallery index (no {CURRENT_FILE} file; build one with 'vireid index build')"
            )
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GalleryIndexError(f"{path}: cannot be read as JSON ({exc})") from None
        if not isinstance(current, dict) or current.get("format") != FORMAT:
            raise GalleryIndexError(f"{path}: expected a JSON object with format={FORMAT!r}")
        version = current.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise GalleryIndexError(
                f"{path}: index format_version {version!r} is not supported (this vireid reads <= {FORMAT_VERSION})"
            )
        generation = current.get("generation")
        if not isinstance(generation, int) or generation < 1:
            raise GalleryIndexError(f"{path}: 'generation' must be a positive integer, got {generation!r}")
        return generation

    def _load(self) -> None:
        """Load the committed generation (retrying if a writer replaces it meanwhile)."""
        import faiss

        last_error: Exception | None = None
        for _ in range(5):
            generation = self._read_current()
            faiss_path = self.folder / gen_name(generation, "faiss")
            db_path = self.folder / gen_name(generation, "sqlite")
            try:
                db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
                try:
                    info = read_info(db)
                    count = int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
                except BaseException:
                    db.close()
                    raise
                index = faiss.read_index(str(faiss_path))
            except (sqlite3.Error, RuntimeError, FileNotFoundError) as exc:
                last_error = exc
                if self._read_current() != generation:  # a writer committed meanwhile: read the new one
                    continue
                raise GalleryIndexError(
                    f"{self.folder}: generation {generation} cannot be read ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else exc})"
                ) from exc
            if index.ntotal != count:
                db.close()
                raise GalleryIndexError(
                    f"{self.folder}: generation {generation} is inconsistent: {index.ntotal} vectors in "
                    f"{faiss_path.name} but {count} rows in {db_path.name}"
                )
            if info.get("kind") == "ivfpq":
                faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
            try:
                vectors = self._map_vectors(info, count)
            except GalleryIndexError:
                db.close()
                raise
            with self._lock:
                old = self._db
                self._faiss, self._db, self._info, self.generation = index, db, info, generation
                self._count, self._vectors = count, vectors
            if old is not None:
                old.close()
            return
        raise GalleryIndexError(f"{self.folder}: the index kept changing while being opened ({last_error})")

    def _map_vectors(self, info: Mapping[str, Any], count: int) -> np.ndarray | None:
        """The first ``count`` rows of ``vectors.f32`` (memory-mapped) when the index re-scores exactly."""
        if not info.get("params", {}).get("refine"):
            return None
        path = self.folder / VECTORS_FILE
        dim = int(info["dim"])
        size = path.stat().st_size if path.is_file() else -1
        if size < count * dim * 4:
            raise GalleryIndexError(f"{path}: holds {max(size, 0) // (4 * dim)} feature rows, the index {count}; "
                                    "the file is missing or truncated")
        return np.memmap(path, dtype=np.float32, mode="r", shape=(count, dim))

    def _use_committed_db(self, generation: int) -> None:
        db_path = self.folder / gen_name(generation, "sqlite")
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        info = read_info(db)
        count = int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        vectors = self._map_vectors(info, count)
        with self._lock:
            old = self._db
            self._db, self._info, self.generation, self._count = db, info, generation, count
            self._vectors = vectors
        if old is not None:
            old.close()

    def refresh(self) -> bool:
        """Reload if another process committed a newer generation; returns whether it did."""
        if self._read_current() != self.generation:
            self._load()
            return True
        return False

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._faiss = None

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- properties ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._faiss is None or self._db is None:
            raise ValueError(f"index {self.folder} is closed")

    def __len__(self) -> int:
        return int(self._count)

    def __repr__(self) -> str:
        return f"GalleryIndex({str(self.folder)!r}, count={len(self)}, dim={self.dim}, kind={self.kind!r})"

    @property
    def dim(self) -> int:
        return int(self._info["dim"])

    @property
    def kind(self) -> str:
        return str(self._info["kind"])

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self._info["model_info"])

    @property
    def fingerprint(self) -> str:
        return str(self._info["model_info"]["fingerprint"])

    @property
    def nprobe(self) -> int | None:
        """IVF lists visited per query (None for flat indexes)."""
        if self.kind != "ivfpq":
            return None
        if self._nprobe_override is not None:
            return int(self._nprobe_override)
        return int(self._info["params"]["nprobe"])

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        if value is not None and int(value) < 1:
            raise ValueError(f"nprobe must be >= 1, got {value}")
        self._nprobe_override = None if value is None else int(value)

    def modalities(self) -> dict[str, int]:
        """Number of gallery images of each modality."""
        with self._lock:
            self._check_open()
            rows = self._db.execute("SELECT modality, COUNT(*) FROM images GROUP BY modality ORDER BY modality")  # type: ignore[union-attr]
            return {str(m): int(c) for m, c in rows}

    def count_with_pid(self) -> int:
        """Number of gallery images whose person id is known (0 for an index of a plain image folder)."""
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT COUNT(*) FROM images WHERE pid IS NOT NULL").fetchone()[0])  # type: ignore[union-attr]

    def count_pid(self, pid: int) -> int:
        """Number of gallery images of person ``pid``."""
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT COUNT(*) FROM images WHERE pid = ?", (int(pid),)).fetchone()[0])  # type: ignore[union-attr]

    def info(self) -> dict[str, Any]:
        """``count``, ``with_pid`` (images with a person id), ``dim``, ``kind``, ``model_info``, ``created``,
        ``updated``, ``generation``, ``params`` (IVF-PQ: nlist, pq_m, nbits, nprobe, train_size, refine),
        ``modalities`` and ``path``."""
        return {
            "count": len(self),
            "with_pid": self.count_with_pid(),
            "dim": self.dim,
            "kind": self.kind,
            "model_info": self.model_info,
            "created": self._info["created"],
            "updated": self._info["updated"],
            "generation": self.generation,
            "params": {**self._info.get("params", {}), **({"nprobe": self.nprobe} if self.kind == "ivfpq" else {})},
            "modalities": self.modalities(),
            "path": str(self.folder.resolve()),
        }

    # -- fingerprint checks ------------------------------------------------------------------------
    def check_fingerprint(self, fingerprint: str | None, what: str = "features") -> None:
        """Raise :class:`ModelMismatchError` when ``fingerprint`` (if given) is not the index's model."""
        if fingerprint is None or fingerprint == self.fingerprint:
            return
        mi = self.model_info
        built_with = ", ".join(f"{k}={mi[k]}" for k in ("model", "arch", "checkpoint") if k in mi)
        raise ModelMismatchError(
            f"{what} were embedded by model {fingerprint[:12]}, but the index {self.folder} was built with "
            f"model {self.fingerprint[:12]}" + (f" ({built_with})" if built_with else "")
            + "; embed them with the index's model (features of different models are not comparable)"
        )

    # -- metadata ----------------------------------------------------------------------------------
    def _rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        with self._lock:
            self._check_open()
            for start in range(0, len(ids), SQL_VARIABLES):
                chunk = list(ids[start : start + SQL_VARIABLES])
                marks = ",".join("?" * len(chunk))
                cur = self._db.execute(  # type: ignore[union-attr]
                    f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE id IN ({marks})", chunk
                )
                for row in cur:
                    out[int(row[0])] = row_dict(row)
        return out

    def get_many(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Metadata of the ``ids`` that exist, by id (one SQLite query per 900 ids)."""
        return self._rows([int(i) for i in ids])

    def get(self, id: int) -> dict[str, Any]:
        """Metadata of gallery image ``id``: ``id``, ``path``, ``pid``, ``camera``, ``modality``,
        ``timestamp`` and any extra keys given at build/add time. KeyError for an unknown id."""
        rows = self._rows([int(id)])
        if int(id) not in rows:
            raise KeyError(f"no gallery image with id {id} in index {self.folder} ({len(self)} images)")
        return rows[int(id)]

    def image_roots(self) -> list[str]:
        """The folders the indexed images come from (recorded at build; empty for older indexes)."""
        return [str(r) for r in self._info.get("image_roots") or []]

    def image_path(self, id: int) -> Path:
        """Absolute path of gallery image ``id``."""
        return Path(self.get(id)["path"])

    def ids(self) -> np.ndarray:
        """Every image id, ascending."""
        with self._lock:
            self._check_open()
            return np.fromiter((r[0] for r in self._db.execute("SELECT id FROM images ORDER BY id")), dtype=np.int64)  # type: ignore[union-attr]

    def metadata(self) -> list[dict[str, Any]]:
        """Every image's metadata, by ascending id."""
        with self._lock:
            self._check_open()
            cur = self._db.execute(f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images ORDER BY id")  # type: ignore[union-attr]
            return [row_dict(r) for r in cur]

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored features of ``ids`` ``[len(ids), D]``: exact for flat indexes and IVF-PQ indexes with
        re-scoring, the product-quantised approximation for IVF-PQ without."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._lock:
            self._check_open()
            if arr.size == 0:
                return np.zeros((0, self.dim), dtype=np.float32)
            if self._vectors is not None:
                if arr.min() < 0 or arr.max() >= self._vectors.shape[0]:
                    raise KeyError(f"some of the ids {arr[:10].tolist()} are not in index {self.folder}")
                return np.array(self._vectors[arr], dtype=np.float32)
            try:
                return np.asarray(self._faiss.reconstruct_batch(arr), dtype=np.float32)
            except RuntimeError as exc:
                raise KeyError(f"some of the ids {arr[:10].tolist()} are not in index {self.folder}") from exc



# -- module-level building blocks --------------------------------------------------------------------


