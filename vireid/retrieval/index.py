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
:data:`DEFAULT_REFINE`) the raw features are also kept on disk (``vectors.f32``, memory-mapped) and the
``R x topk`` best candidates of the product-quantised search are re-scored exactly: the codes make the
shortlist fast, the exact scores order it (product quantisation alone confuses the close scores of
re-id neighbours: recall@10 0.32 without re-scoring, 0.997 with R = 64 on 10^6 clustered embeddings in
bench/search_speed.py). ``auto`` picks ``ivfpq`` above
:data:`AUTO_IVFPQ_THRESHOLD` vectors and ``flat`` otherwise. Batches of queries on a flat index are
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
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import VireidError
from vireid.io import fsync_dir, write_text_atomic

FORMAT = "vireid-gallery-index"
FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
VECTORS_FILE = "vectors.f32"
#: IVF-PQ exact re-scoring: the PQ search keeps ``DEFAULT_REFINE x topk`` candidates (0 disables).
#: bench/search_speed.py, 10^6 clustered 512-d embeddings: recall@10 0.32 (PQ scores), 0.76 (8), 0.97
#: (32), 0.997 (64), at about 1 ms per single query.
DEFAULT_REFINE = 64
LOCK_FILE = ".lock"
KINDS = ("auto", "flat", "ivfpq")
#: ``kind="auto"`` builds an IVF-PQ index above this many gallery vectors, a flat one otherwise.
AUTO_IVFPQ_THRESHOLD = 200_000
#: Largest deviation of a feature's L2 norm from 1 accepted as "L2-normalised".
NORM_TOLERANCE = 1e-3
#: Rows per FAISS ``add`` / SQLite ``executemany`` call (progress-bar granularity).
ADD_CHUNK = 65_536

#: Flat indexes answer batches of at least this many queries with NumPy matrix products (below: FAISS).
NUMPY_FLAT_MIN_QUERIES = 4
#: Query x gallery similarities computed per block by the batched flat search (64 MiB of float32).
FLAT_BLOCK_ELEMENTS = 1 << 24

_GEN_RE = re.compile(r"^gen-(\d{6,})\.(faiss|sqlite)$")
_IMAGE_COLUMNS = ("id", "path", "pid", "camera", "modality", "timestamp", "extra")
_KNOWN_KEYS = {"path", "pid", "camera", "modality", "timestamp"}
_SQL_VARIABLES = 900  # ids per "IN (...)" query (below every SQLite build's variable limit)


class GalleryIndexError(VireidError):
    """An index folder is missing, incomplete, corrupt or of an unsupported format version."""


class ModelMismatchError(VireidError):
    """Features embedded by one model were given to an index built with another model."""


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


# -- small helpers -------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _gen_name(generation: int, ext: str) -> str:
    return f"gen-{generation:06d}.{ext}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _writer_lock(folder: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``folder/.lock``: one process changes an index at a time."""
    import fcntl

    with open(folder / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _progress_bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="vec", disable=not progress)


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


def _unpack(features: Any, fingerprint: str | None) -> tuple[Any, str | None]:
    if isinstance(features, Embeddings):
        if fingerprint is not None and fingerprint != features.fingerprint:
            raise ValueError("fingerprint= differs from the fingerprint the Embeddings carry")
        return features.features, features.fingerprint
    return features, fingerprint


def resolve_image_roots(paths: Sequence[str], roots: Sequence[str | Path] | None) -> list[str]:
    """The image roots of an index: ``roots`` resolved, or, when None, the common folder of ``paths``."""
    if roots:
        return [str(Path(r).expanduser().resolve()) for r in roots]
    return [str(Path(os.path.commonpath([os.path.dirname(p) for p in paths])).resolve())] if paths else []


def check_under_roots(paths: Sequence[str], roots: Sequence[str], *, allow_outside: bool) -> None:
    """A :class:`GalleryIndexError` naming the images (symlinks followed) that lie outside ``roots``, unless
    ``allow_outside`` (the user's explicit choice)."""
    if allow_outside:
        return
    resolved_roots = [Path(r) for r in roots]
    outside = [p for p in paths if not any(Path(p).resolve().is_relative_to(r) for r in resolved_roots)]
    if outside:
        raise GalleryIndexError(
            f"{len(outside)} image paths lie outside the index's image roots {list(roots)} (e.g. {outside[0]}); "
            "the service serves only files under its roots. Give the folder the images are in "
            "(--image-root DIR), or --allow-outside-roots if that is really meant"
        )


def _normalise_metadata(rows: Sequence[Mapping[str, Any]], n: int) -> list[tuple[Any, ...]]:
    """SQLite rows ``(path, pid, camera, modality, timestamp, extra)`` of metadata dicts (ValueError on bad ones)."""
    if len(rows) != n:
        raise ValueError(f"got {n} feature rows but {len(rows)} metadata entries; expected one per row")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"metadata[{i}] must be a dict, got {type(row).__name__}")
        missing = [k for k in ("path", "camera", "modality") if row.get(k) is None]
        if missing:
            raise ValueError(f"metadata[{i}] lacks {missing}; expected path, camera, modality (pid, timestamp optional)")
        path = os.path.abspath(os.path.expanduser(str(row["path"])))
        try:
            camera = int(row["camera"])
            pid = None if row.get("pid") is None else int(row["pid"])
        except (TypeError, ValueError):
            raise ValueError(
                f"metadata[{i}]: camera and pid must be integers, got camera={row['camera']!r}, pid={row.get('pid')!r}"
            ) from None
        modality = str(row["modality"])
        timestamp = row.get("timestamp")
        if timestamp is not None and not isinstance(timestamp, (str, int, float)):
            raise ValueError(f"metadata[{i}]: timestamp must be a string or a number, got {type(timestamp).__name__}")
        extra = {k: v for k, v in row.items() if k not in _KNOWN_KEYS}
        try:
            extra_json = json.dumps(extra, sort_keys=True) if extra else None
        except TypeError as exc:
            raise ValueError(f"metadata[{i}]: extra keys must be JSON-serialisable ({exc})") from None
        out.append((path, pid, camera, modality, timestamp, extra_json))
    return out


def auto_nlist(n: int) -> int:
    """Default number of IVF lists: the power of two nearest to sqrt(n), at most n // 39 (FAISS asks for
    at least 39 training points per centroid), at least 1."""
    if n < 1:
        return 1
    nlist = 2 ** max(0, round(math.log2(math.sqrt(n))))
    return int(max(1, min(nlist, n // 39)))


def auto_pq_m(dim: int) -> int:
    """Default number of PQ sub-quantizers: the largest divisor of ``dim`` that is at most ``dim / 8``
    (sub-vectors of at least 8 dimensions; 64 bytes per vector at dim 512 with 8 bits)."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def auto_nbits(train_size: int) -> int:
    """Bits per PQ code: 8 (256 centroids per sub-space) when at least 39 x 256 training vectors are
    available, fewer for small galleries (at least 4), so each centroid has about 39 training points."""
    nbits = 8
    while nbits > 4 and train_size < 39 * 2**nbits:
        nbits -= 1
    return nbits


# -- the index -------------------------------------------------------------------------------------
class GalleryIndex:
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

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
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
    ) -> GalleryIndex:
        """Write a new index of ``features`` ``[N, D]`` (float32, L2-normalised) and their ``metadata``
        (one dict per row: ``path``, ``camera``, ``modality``, optional ``pid`` and ``timestamp``; other
        keys are kept as extra JSON) into ``out_dir``; returns it opened.

        ``model_info`` describes the model (must hold ``"fingerprint"``; the CLI also records the config
        and checkpoint). ``kind``: ``auto`` | ``flat`` | ``ivfpq``. IVF-PQ options (defaults from the
        gallery size, see :func:`auto_nlist`, :func:`auto_pq_m`, :func:`auto_nbits`): ``nlist`` lists,
        ``pq_m`` sub-quantizers of ``nbits`` bits, ``nprobe`` lists visited per query (default
        ``nlist / 16``, at least 1), trained on ``train_size`` random rows (default
        ``max(64 * nlist, 9984)``, at most N) drawn with ``seed``; ``refine`` (default
        :data:`DEFAULT_REFINE`, 0 disables) keeps the raw features for exact re-scoring of the
        ``refine x topk`` best PQ candidates. Relative image paths are made
        absolute. ``out_dir`` must be new or empty unless ``overwrite`` (which replaces an existing
        index there). ``image_roots``: the folders the images come from (default: their common folder),
        recorded for the service, which serves nothing outside them; an image outside them is an error
        unless ``allow_outside_roots``.
        """
        raw, fingerprint = _unpack(features, None)
        feats = check_features(raw)
        n, dim = feats.shape
        if n == 0:
            raise ValueError("cannot build an index of 0 features")
        rows = _normalise_metadata(metadata, n)
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
        _prepare_folder(folder, overwrite)

        params: dict[str, Any] = {}
        if resolved_kind == "ivfpq":
            params = _ivfpq_params(n, dim, nlist=nlist, pq_m=pq_m, nbits=nbits, nprobe=nprobe, train_size=train_size,
                                   refine=refine)
        elif any(v is not None for v in (nlist, pq_m, nbits, nprobe, train_size, refine)):
            raise ValueError("nlist, pq_m, nbits, nprobe, train_size and refine apply to kind='ivfpq' only")
        index = _new_faiss_index(resolved_kind, dim, params, feats, seed=seed, progress=progress)
        ids = np.arange(n, dtype=np.int64)
        _add_vectors(index, feats, ids, progress=progress, desc="indexing")

        created = _now()
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
        with _writer_lock(folder):
            db_path = folder / _gen_name(generation, "sqlite")
            tmp_db = folder / f".{db_path.name}.tmp"
            tmp_db.unlink(missing_ok=True)
            con = sqlite3.connect(tmp_db)
            try:
                _create_schema(con)
                with con:
                    _insert_rows(con, 0, rows, progress=progress)
                    _write_info(con, {**info, "generation": generation})
            finally:
                con.close()
            if params.get("refine"):
                _write_vectors(folder, 0, feats)
            _commit_generation(folder, generation, index, tmp_db)
        obj = cls(folder, nprobe=nprobe)
        if resolved_kind == "ivfpq":
            import faiss

            faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
        obj._faiss = index  # the index just written (not read back: a large gallery would be held twice)
        obj._use_committed_db(generation)
        return obj

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
            faiss_path = self.folder / _gen_name(generation, "faiss")
            db_path = self.folder / _gen_name(generation, "sqlite")
            try:
                db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
                try:
                    info = _read_info(db)
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
        db_path = self.folder / _gen_name(generation, "sqlite")
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        info = _read_info(db)
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

    def info(self) -> dict[str, Any]:
        """``count``, ``dim``, ``kind``, ``model_info``, ``created``, ``updated``, ``generation``,
        ``params`` (IVF-PQ: nlist, pq_m, nbits, nprobe, train_size, refine), ``modalities`` and ``path``."""
        return {
            "count": len(self),
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

    # -- search ------------------------------------------------------------------------------------
    def _queries(self, queries: Any, fingerprint: str | None) -> np.ndarray:
        raw, fingerprint = _unpack(queries, fingerprint)
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

    # -- metadata ----------------------------------------------------------------------------------
    def _rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        with self._lock:
            self._check_open()
            for start in range(0, len(ids), _SQL_VARIABLES):
                chunk = list(ids[start : start + _SQL_VARIABLES])
                marks = ",".join("?" * len(chunk))
                cur = self._db.execute(  # type: ignore[union-attr]
                    f"SELECT {', '.join(_IMAGE_COLUMNS)} FROM images WHERE id IN ({marks})", chunk
                )
                for row in cur:
                    out[int(row[0])] = _row_dict(row)
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
            cur = self._db.execute(f"SELECT {', '.join(_IMAGE_COLUMNS)} FROM images ORDER BY id")  # type: ignore[union-attr]
            return [_row_dict(r) for r in cur]

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
        raw, fingerprint = _unpack(features, fingerprint)
        self.check_fingerprint(fingerprint, "the added features")
        feats = check_features(raw, dim=self.dim)
        rows = _normalise_metadata(metadata, feats.shape[0])
        if self.image_roots():
            check_under_roots([r[0] for r in rows], self.image_roots(), allow_outside=allow_outside_roots)
        if feats.shape[0] == 0:
            return []
        with self._lock, _writer_lock(self.folder):
            if self._read_current() != self.generation:
                self._load()  # another process committed meanwhile
            self._check_open()
            generation = self.generation + 1
            _remove_uncommitted(self.folder, self.generation)
            start = int(self._info["next_id"])
            ids = np.arange(start, start + feats.shape[0], dtype=np.int64)
            tmp_db = self.folder / f".{_gen_name(generation, 'sqlite')}.tmp"
            try:
                # 1. metadata: a copy of this generation's database, the new rows in one transaction
                con = sqlite3.connect(tmp_db)
                try:
                    self._db.backup(con)  # type: ignore[union-attr]
                    with con:
                        _insert_rows(con, start, rows, progress=progress)
                        _write_info(con, {**self._info, "next_id": start + len(rows), "updated": _now(),
                                          "generation": generation})
                finally:
                    con.close()
                # 2. vectors: raw rows appended past the committed ones (if kept), added to FAISS in memory,
                #    then the new files and the commit
                if self._vectors is not None:
                    _write_vectors(self.folder, start, feats)
                _add_vectors(self._faiss, feats, ids, progress=progress, desc="adding to index")
                _commit_generation(self.folder, generation, self._faiss, tmp_db)
            except BaseException:
                tmp_db.unlink(missing_ok=True)
                self._load()  # the in-memory index may hold the new vectors: back to the committed state
                raise
            self._use_committed_db(generation)  # the in-memory FAISS index already holds the new vectors
            _remove_old_generations(self.folder, keep_from=generation - 1)
        return ids.tolist()


# -- module-level building blocks --------------------------------------------------------------------
def _build_leftovers_only(folder: Path) -> bool:
    """Whether ``folder`` holds only what a killed ``index build`` leaves (its lock, generation files and
    their temporary copies, the vectors file): such a folder may be overwritten."""
    for child in folder.iterdir():
        name = child.name.lstrip(".")
        if not (child.is_file() and (name == LOCK_FILE.lstrip(".") or name.startswith(("gen-", VECTORS_FILE))
                                     or name.startswith(CURRENT_FILE))):
            return False
    return True


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise GalleryIndexError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise GalleryIndexError(f"{folder}: folder is not empty; choose a new folder or pass overwrite (--overwrite)")
        if not (folder / CURRENT_FILE).is_file() and not _build_leftovers_only(folder):
            raise GalleryIndexError(f"{folder}: not a vireid index folder (no {CURRENT_FILE}); refusing to overwrite it")
        for child in folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def _ivfpq_params(
    n: int, dim: int, *, nlist: int | None, pq_m: int | None, nbits: int | None, nprobe: int | None,
    train_size: int | None, refine: int | None,
) -> dict[str, Any]:
    nlist = auto_nlist(n) if nlist is None else int(nlist)
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in 1..{n} (the number of training vectors), got {nlist}")
    train = min(n, max(64 * nlist, 39 * 256)) if train_size is None else int(train_size)
    if not nlist <= train <= n:
        raise ValueError(f"train_size must be in {nlist}..{n} (at least nlist, at most the gallery size), got {train}")
    pq_m = auto_pq_m(dim) if pq_m is None else int(pq_m)
    if pq_m < 1 or dim % pq_m:
        raise ValueError(f"pq_m must divide the feature dimension {dim}, got {pq_m}")
    nbits = auto_nbits(train) if nbits is None else int(nbits)
    if not 1 <= nbits <= 16:
        raise ValueError(f"nbits must be in 1..16, got {nbits}")
    if train < 2**nbits:
        raise ValueError(f"train_size {train} is smaller than the 2**nbits = {2**nbits} PQ centroids; lower nbits")
    nprobe = max(1, nlist // 16) if nprobe is None else int(nprobe)
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    refine = DEFAULT_REFINE if refine is None else int(refine)
    if refine < 0:
        raise ValueError(f"refine must be >= 0 (0 disables exact re-scoring), got {refine}")
    return {"nlist": nlist, "pq_m": pq_m, "nbits": nbits, "nprobe": min(nprobe, nlist), "train_size": train,
            "refine": refine}


def _new_faiss_index(kind: str, dim: int, params: Mapping[str, Any], feats: np.ndarray, *, seed: int,
                     progress: bool) -> Any:
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, int(params["nlist"]), int(params["pq_m"]), int(params["nbits"]),
                             faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()  # the IVF index frees its quantizer
    index.cp.seed = int(seed)
    index.pq.cp.seed = int(seed)
    n_train = int(params["train_size"])
    rng = np.random.default_rng(seed)
    sample = feats if n_train >= feats.shape[0] else feats[np.sort(rng.choice(feats.shape[0], n_train, replace=False))]
    from tqdm import tqdm

    with tqdm(total=1, desc=f"training IVF-PQ on {n_train} vectors", unit="step", disable=not progress) as bar:
        index.train(np.ascontiguousarray(sample))
        bar.update(1)
    return index


def _add_vectors(index: Any, feats: np.ndarray, ids: np.ndarray, *, progress: bool, desc: str) -> None:
    with _progress_bar(feats.shape[0], desc, progress) as bar:
        for start in range(0, feats.shape[0], ADD_CHUNK):
            stop = min(start + ADD_CHUNK, feats.shape[0])
            index.add_with_ids(feats[start:stop], ids[start:stop])
            bar.update(stop - start)


def _write_vectors(folder: Path, start: int, feats: np.ndarray) -> None:
    """Rows ``start..`` of ``vectors.f32``: rows past ``start`` (an interrupted add's) are cut first."""
    path = folder / VECTORS_FILE
    row_bytes = feats.shape[1] * 4
    with open(path, "r+b" if path.exists() else "w+b") as fh:
        fh.truncate(start * row_bytes)
        fh.seek(start * row_bytes)
        for lo in range(0, feats.shape[0], ADD_CHUNK):
            fh.write(np.ascontiguousarray(feats[lo : lo + ADD_CHUNK], dtype=np.float32).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def _create_schema(con: sqlite3.Connection) -> None:
    with con:
        con.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute(
            "CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL, pid INTEGER, camera INTEGER NOT NULL, "
            "modality TEXT NOT NULL, timestamp, extra TEXT)"
        )


def _insert_rows(con: sqlite3.Connection, start: int, rows: Sequence[tuple[Any, ...]], *, progress: bool) -> None:
    with _progress_bar(len(rows), "writing metadata", progress) as bar:
        for lo in range(0, len(rows), ADD_CHUNK):
            chunk = rows[lo : lo + ADD_CHUNK]
            con.executemany(
                "INSERT INTO images (id, path, pid, camera, modality, timestamp, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((start + lo + j, *row) for j, row in enumerate(chunk)),
            )
            bar.update(len(chunk))


def _write_info(con: sqlite3.Connection, info: Mapping[str, Any]) -> None:
    con.executemany("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, sort_keys=True)) for k, v in info.items()])


def _read_info(con: sqlite3.Connection) -> dict[str, Any]:
    info = {}
    for key, value in con.execute("SELECT key, value FROM info"):
        try:
            info[str(key)] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            raise sqlite3.DatabaseError(f"info value of {key!r} is not JSON ({str(value)[:40]!r})") from None
    missing = [k for k in ("dim", "kind", "model_info", "next_id") if k not in info]
    if missing:
        raise sqlite3.DatabaseError(f"info table lacks {missing}")
    return info


def _row_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = {k: row[i] for i, k in enumerate(_IMAGE_COLUMNS[:-1])}
    out["id"] = int(out["id"])
    if row[-1]:
        out.update(json.loads(row[-1]))
    return out


def _write_faiss(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))
    _fsync_file(path)


def _commit_generation(folder: Path, generation: int, index: Any, tmp_db: Path) -> None:
    """Write the FAISS file, move both files to their generation names, then replace CURRENT."""
    faiss_path = folder / _gen_name(generation, "faiss")
    db_path = folder / _gen_name(generation, "sqlite")
    tmp_faiss = folder / f".{faiss_path.name}.tmp"
    try:
        _write_faiss(index, tmp_faiss)
        _fsync_file(tmp_db)
        os.replace(tmp_faiss, faiss_path)
        os.replace(tmp_db, db_path)
        fsync_dir(folder)
        _write_current(folder, generation)
    except BaseException:
        tmp_faiss.unlink(missing_ok=True)
        raise


def _write_current(folder: Path, generation: int) -> None:
    """The commit point: ``CURRENT`` names ``generation`` (written to a temporary file, then renamed)."""
    write_text_atomic(folder / CURRENT_FILE, json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "generation": generation}) + "\n")


def _generations(folder: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for child in folder.iterdir():
        m = _GEN_RE.match(child.name)
        if m:
            out.setdefault(int(m.group(1)), []).append(child)
    return out


def _remove_uncommitted(folder: Path, committed: int) -> None:
    """Files of generations after ``committed`` and temporary files left by an interrupted update."""
    for gen, files in _generations(folder).items():
        if gen > committed:
            for f in files:
                f.unlink(missing_ok=True)
    for child in folder.iterdir():
        if child.name.startswith(".gen-") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


def _remove_old_generations(folder: Path, *, keep_from: int) -> None:
    for gen, files in _generations(folder).items():
        if gen < keep_from:
            for f in files:
                f.unlink(missing_ok=True)
