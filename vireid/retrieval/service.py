"""The person-search web service: an HTTP API and a web page over a :class:`~vireid.retrieval.search.Searcher`.

:func:`create_app` builds a FastAPI application (``vireid serve`` runs it with uvicorn):

``GET /``
    The search page (``vireid/retrieval/static/``): drop or choose a query image, pick its modality
    and ``topk``, see the ranked gallery as a grid of cards (rank, score, camera, modality).
``GET /api/health``
    ``{"status": "ok", "gallery_size", "index": {...}, "model": {...}, "modalities" (the query
    modalities the model embeds), "default_query_modality", "max_topk", "max_upload_bytes"}``.
``POST /api/search``
    A ``multipart/form-data`` body with the fields ``image`` (the query image file), ``modality``
    (``visible`` | ``infrared``: the **query's** modality; default: the other one than the gallery's),
    ``topk`` (1..``max_topk``, default ``min(10, max_topk)``) and ``rerank`` (``true`` | ``false``,
    k-reciprocal re-ranking, default false). Answers ``{"results": [{"id", "rank", "score", "camera",
    "modality", "pid", "name", "path" (below the image root), "image_url"}, ...], "query_modality", "topk",
    "rerank", "gallery_size"}``, best
    first (``score`` is the cosine similarity). An open-set service (``threshold`` / ``fpr``) returns only
    results above its threshold and adds ``"threshold"`` (value, how it was set) and ``"match"``.
``GET /api/gallery/{id}/image``
    The file of indexed gallery image ``id``. The id is parsed as an integer and looked up in the
    index; the path served is the one the index records, so no part of a request ever reaches the
    filesystem. It is served only if it resolves (symlinks followed) to a regular file under one of
    the index's image roots (:func:`gallery_roots`) and its own bytes are an image of
    :data:`IMAGE_FORMATS`; the content type comes from those bytes, never from the file name.

**Exposure.** Every request's ``Host`` header must name one of ``allowed_hosts`` (default: the bound
address, ``localhost`` and the loopback addresses), so a DNS-rebinding page cannot reach a service on
localhost (421 otherwise). With a ``token`` (``vireid serve --token`` or ``VIREID_SERVE_TOKEN``,
required when binding a non-loopback address) every ``/api/`` request needs ``Authorization: Bearer
<token>`` (or ``?token=`` on image URLs, for ``<img>`` tags); 401 otherwise. The page reads the token
from its own URL (``/?token=...``).

Bad input gets a 4xx answer ``{"detail": "<what is wrong and what was expected>"}``:

=====  ===========================================================================================
415    the body is not ``multipart/form-data``; the upload is not an image in a format the service
       reads (JPEG, PNG, BMP, GIF, TIFF, WebP)
400    the upload is empty, or an image whose data cannot be decoded (corrupt or truncated); a
       malformed multipart body
503    ``max_concurrent`` searches are already being decoded and embedded (``Retry-After: 1``)
413    the upload is larger than ``max_upload_bytes`` (checked against ``Content-Length`` first and
       counted while the body streams in, so an oversized body is never read to its end), or the
       image has more than ``max_image_pixels`` pixels
422    the ``image`` field is missing or not a file; ``modality`` is not visible|infrared; ``topk``
       is not an integer in 1..``max_topk``; ``rerank`` is not a boolean; ``modality`` names a branch
       the model lacks (an ONNX export of one modality)
404    an unknown gallery id (or one that is not a non-negative integer), an indexed image whose file
       no longer exists, is not a regular image file, or resolves outside the index's image roots
401    a token is set and the request does not carry it
421    the ``Host`` header is not one of the allowed hosts
=====  ===========================================================================================

Each search and health request first picks up a newer generation of the index (images added with
``vireid index add`` while the service runs); ids stay valid across generations.

Decoding and the model run in a worker thread (``run_in_threadpool``) so the event loop keeps serving;
one lock serialises the model calls (a PyTorch module is not guaranteed to be re-entrant, and on a CPU
one call already uses every core). FastAPI is imported when :func:`create_app` is called.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations (Request, defined
# inside create_app) at definition time.
import io
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from vireid.data.records import MODALITIES
from vireid.retrieval.service_results import gallery_roots, hit_to_json, root_relative  # noqa: F401 (API)

logger = logging.getLogger("vireid.retrieval")

#: Default largest accepted upload (bytes): 10 MiB.
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Default largest ``topk`` a request may ask for.
DEFAULT_MAX_TOPK = 100
#: Default ``topk`` when a request gives none (at most ``max_topk``).
DEFAULT_TOPK = 10
#: Largest decoded image (pixels) by default: 64 times the model's input, at least 2 megapixels (a query
#: is resized to the model's input, e.g. 288 x 144, so more pixels carry nothing; JPEG uploads are
#: decoded at a reduced scale first, so a phone photo of any size passes).
MIN_MAX_IMAGE_PIXELS = 2_000_000
INPUT_PIXEL_FACTOR = 64
#: Decodes and model calls that may run at once; more concurrent searches are answered 503.
DEFAULT_MAX_CONCURRENT = 4
#: Bytes a multipart body may hold beyond the image itself (boundaries, part headers, text fields).
FORM_OVERHEAD_BYTES = 64 * 1024
#: Largest text field (``modality``, ``topk``, ``rerank``), bytes.
MAX_FIELD_BYTES = 1024
#: Image formats the service decodes (Pillow format names); others are refused with 415.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
STATIC_DIR = Path(__file__).with_name("static")

_ID_RE = re.compile(r"[0-9]{1,18}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class RequestError(Exception):
    """A request the service refuses: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})


class _BodyTooLarge(Exception):
    pass


# -- request pieces (pure functions, tested directly) ---------------------------------------------------
def parse_modality(value: str | None, default: str) -> str:
    """The query modality of a form value (``default`` when absent), or a 422 :class:`RequestError`."""
    if value is None:
        return default
    modality = value.strip().lower()
    if modality not in MODALITIES:
        raise RequestError(
            422, f"modality must be one of {', '.join(MODALITIES)} (the query image's modality), got {value!r}"
        )
    return modality


def parse_topk(value: str | None, max_topk: int) -> int:
    """``topk`` of a form value (default ``min(DEFAULT_TOPK, max_topk)``), or a 422 :class:`RequestError`."""
    if value is None:
        return min(DEFAULT_TOPK, max_topk)
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):
        raise RequestError(422, f"topk must be an integer between 1 and {max_topk}, got {value!r}")
    topk = int(text)
    if not 1 <= topk <= max_topk:
        raise RequestError(422, f"topk must be between 1 and {max_topk}, got {topk}")
    return topk


def parse_rerank(value: str | None) -> bool:
    """``rerank`` of a form value (default false), or a 422 :class:`RequestError`."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RequestError(422, f"rerank must be true or false, got {value!r}")


def parse_gallery_id(value: str) -> int:
    """The integer id of a URL segment, or a 404 :class:`RequestError` (ids are non-negative integers)."""
    if not _ID_RE.fullmatch(value):
        raise RequestError(404, f"no gallery image with id {value!r}: gallery ids are non-negative integers")
    return int(value)


def default_max_pixels(input_size: tuple[int, int] | list[int] | None) -> int:
    """The decoded-pixel cap for a model input ``(height, width)``: :data:`INPUT_PIXEL_FACTOR` times it,
    at least :data:`MIN_MAX_IMAGE_PIXELS`."""
    if not input_size:
        return MIN_MAX_IMAGE_PIXELS
    return max(MIN_MAX_IMAGE_PIXELS, INPUT_PIXEL_FACTOR * int(input_size[0]) * int(input_size[1]))


def decode_image(data: bytes, filename: str, *, max_pixels: int = MIN_MAX_IMAGE_PIXELS,
                 target_size: tuple[int, int] | None = None) -> Any:
    """The RGB PIL image of uploaded bytes, or a :class:`RequestError`: 400 empty, 415 not an image of
    :data:`IMAGE_FORMATS`, 413 more than ``max_pixels`` pixels to decode, 400 undecodable (corrupt,
    truncated). A JPEG is decoded at the smallest of its 1/2, 1/4, 1/8 scales that stays at least twice
    ``target_size`` (height, width): memory follows the decoded size, not the declared one."""
    from PIL import Image, UnidentifiedImageError

    name = filename or "upload"
    if not data:
        raise RequestError(400, f"the uploaded file {name!r} is empty (0 bytes); expected a query image")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise RequestError(
            415, f"the uploaded file {name!r} is not an image in a supported format (expected {', '.join(IMAGE_FORMATS)})"
        ) from None
    except Image.DecompressionBombError:
        raise RequestError(413, f"the uploaded image {name!r} has too many pixels to decode") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"the uploaded image {name!r} cannot be decoded (corrupt header: {exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise RequestError(400, f"the uploaded image {name!r} has no pixels ({width} x {height})")
    if image.format == "JPEG" and target_size is not None:
        image.draft("RGB", (2 * int(target_size[1]), 2 * int(target_size[0])))  # DCT-domain downscaling
        width, height = image.size
    if width * height > max_pixels:
        raise RequestError(
            413, f"the uploaded image {name!r} is {width} x {height} pixels; at most {max_pixels} pixels are accepted"
        )
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(
            400, f"the uploaded {image.format} image {name!r} cannot be decoded (corrupt or truncated: {exc})"
        ) from None


#: Media types of the served image formats (from the bytes' format, never the file name).
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "GIF": "image/gif",
               "TIFF": "image/tiff", "WEBP": "image/webp"}
#: Host names a service bound to a loopback address answers to.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) is a loopback address."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def safe_image_file(path: Path, roots: list[Path]) -> tuple[Path, str]:
    """``(resolved path, media type)`` of a gallery image that may be served, or a 404
    :class:`RequestError`: the file must exist, resolve under one of ``roots`` (no symlink or ``..``
    escape), be a regular file, and hold an image of :data:`IMAGE_FORMATS`."""
    from PIL import Image, UnidentifiedImageError

    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise RequestError(404, "the indexed image file no longer exists") from None
    if not any(resolved.is_relative_to(root) for root in roots):
        logger.warning("refused to serve %s: it resolves to %s, outside the image roots %s", path, resolved,
                       [str(r) for r in roots])
        raise RequestError(404, "the indexed image is outside the index's image roots; it is not served")
    if not resolved.is_file():
        raise RequestError(404, "the indexed image is not a regular file")
    try:
        with Image.open(resolved, formats=IMAGE_FORMATS) as im:
            fmt = im.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        logger.warning("refused to serve %s: not an image", resolved)
        raise RequestError(404, "the indexed file is not an image; it is not served") from None
    return resolved, MEDIA_TYPES.get(fmt or "", "application/octet-stream")


# -- the application ----------------------------------------------------------------------------------
def create_app(
    source: str | Path | Any,
    *,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    backend: str = "torch",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_topk: int = DEFAULT_MAX_TOPK,
    max_image_pixels: int | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    allowed_hosts: list[str] | tuple[str, ...] = LOOPBACK_HOSTS,
    token: str | None = None,
    threshold: float | None = None,
    fpr: float | None = None,
) -> Any:
    """The FastAPI application of the search service (see the module docstring).

    ``allowed_hosts``: the host names the ``Host`` header may carry (port ignored); ``token``: when
    set, the bearer token every ``/api/`` request must carry.

    ``source`` is an index folder (opened with :meth:`Searcher.from_index` and ``checkpoint``,
    ``device``, ``backend``) or a ready :class:`~vireid.retrieval.search.Searcher`. ``max_upload_bytes``
    is the largest query image accepted (413 above), ``max_topk`` the largest ``topk``,
    ``max_image_pixels`` the largest decoded image (default :func:`default_max_pixels` of the model's
    input), ``max_concurrent`` the searches decoded and embedded at once (more get 503 with
    ``Retry-After``). ``threshold`` or ``fpr``: open-set search (:meth:`Searcher.set_threshold`): only
    results above the threshold are returned, and the answer says whether there was a match.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    from vireid.retrieval.search import Searcher

    for name, value in (("max_upload_bytes", max_upload_bytes), ("max_topk", max_topk),
                        ("max_image_pixels", 1 if max_image_pixels is None else max_image_pixels),
                        ("max_concurrent", max_concurrent)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(source, Searcher):
        searcher = source
    elif isinstance(source, (str, Path)):
        searcher = Searcher.from_index(source, checkpoint=checkpoint, device=device, backend=backend)
    else:
        raise TypeError(f"source must be an index folder or a Searcher, got {type(source).__name__}")

    if threshold is not None or fpr is not None:
        searcher.set_threshold(threshold, fpr=fpr)
    index = searcher.index
    model_lock = threading.Lock()
    input_size = tuple(searcher.extractor.input_size)
    if max_image_pixels is None:
        max_image_pixels = default_max_pixels(input_size)
    slots = threading.BoundedSemaphore(max_concurrent)
    body_limit = max_upload_bytes + FORM_OVERHEAD_BYTES

    from vireid import __version__

    app = FastAPI(title="vireid person search", version=__version__, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.searcher = searcher
    app.state.max_upload_bytes = max_upload_bytes
    app.state.max_topk = max_topk
    hosts = {h.lower().strip("[]") for h in allowed_hosts}
    roots = gallery_roots(index)
    logger.info("serving gallery images under %s", ", ".join(map(str, roots)) or "(none)")

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        import hmac

        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower().strip("[]")
        if "*" not in hosts and name not in hosts:
            return JSONResponse({"detail": f"unexpected Host {host!r}; this service answers to "
                                 f"{', '.join(sorted(hosts))} (vireid serve --allowed-host)"}, status_code=421)
        if token is not None and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a bearer token is required: Authorization: Bearer <token>"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Service status, gallery size, the index and its model."""
        _refresh()
        info = index.info()
        model = info["model_info"]
        return {
            "status": "ok",
            "gallery_size": int(info["count"]),
            "index": {k: info[k] for k in ("kind", "dim", "generation", "modalities", "created", "updated")},
            "model": {
                "fingerprint": model.get("fingerprint"),
                "name": model.get("model"),
                "arch": model.get("arch"),
                "input_size": model.get("input_size"),
                "feature_dim": model.get("feature_dim", info["dim"]),
                "flip": searcher.extractor.flip,
                "backend": searcher.extractor.backend,
            },
            "modalities": [m for m in MODALITIES if m in searcher.extractor.modalities],
            "default_query_modality": searcher.default_query_modality(),
            "max_topk": max_topk,
            "max_upload_bytes": max_upload_bytes,
        }

    async def _read_form(request: Request) -> Any:
        from starlette.formparsers import MultiPartException, MultiPartParser

        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            raise RequestError(
                415, "expected a multipart/form-data body with the fields image (file), modality and topk, "
                f"got content type {content_type or 'none'!r}"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > body_limit:
            raise RequestError(413, f"the upload is {int(declared)} bytes; the limit is {max_upload_bytes} bytes")

        async def bounded() -> Any:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > body_limit:
                    raise _BodyTooLarge()
                yield chunk

        parser = MultiPartParser(request.headers, bounded(), max_files=1, max_fields=8,
                                 max_part_size=MAX_FIELD_BYTES)
        from starlette.requests import ClientDisconnect

        try:
            return await parser.parse()
        except ClientDisconnect:
            client = request.client.host if request.client else "a client"
            logger.info("search upload from %s abandoned: the client disconnected before sending its body", client)
            raise RequestError(400, "the client disconnected before the upload was complete") from None
        except _BodyTooLarge:
            raise RequestError(413, f"the upload exceeds the limit of {max_upload_bytes} bytes") from None
        except MultiPartException as exc:
            raise RequestError(400, f"malformed multipart body: {exc.message}") from None

    def _refresh() -> None:
        """Pick up images added to the index (``vireid index add``) since the last request."""
        from vireid.retrieval.index import GalleryIndexError

        try:
            if index.refresh():
                logger.info("index %s: now generation %d, %d images", index.folder, index.generation, len(index))
        except GalleryIndexError as exc:
            logger.warning("index %s: keeping generation %d (%s)", index.folder, index.generation, exc)

    def _search(image: Any, modality: str, topk: int, rerank: bool) -> list[Any]:
        _refresh()
        with model_lock:
            return searcher.search_images([image], modality, topk=topk, rerank=rerank)[0]

    @app.post("/api/search")
    async def search(request: Request) -> dict[str, Any]:
        """Rank the gallery for one uploaded query image (see the module docstring for the fields)."""
        from starlette.datastructures import UploadFile

        started = time.perf_counter()
        form = await _read_form(request)
        try:
            upload = form.get("image")
            if upload is None:
                raise RequestError(422, "missing form field 'image': the query image file")
            if not isinstance(upload, UploadFile):
                raise RequestError(422, "form field 'image' must be a file upload (the query image), got a text value")
            fields = {}
            for key in ("modality", "topk", "rerank"):
                value = form.get(key)
                if value is not None and not isinstance(value, str):
                    raise RequestError(422, f"form field {key!r} must be a text value, got a file")
                fields[key] = value
            modality = parse_modality(fields["modality"], searcher.default_query_modality())
            if modality not in searcher.extractor.modalities:
                raise RequestError(422, f"this service's model has no {modality} branch; query modality must be "
                                   f"one of {', '.join(searcher.extractor.modalities)}")
            topk = parse_topk(fields["topk"], max_topk)
            rerank = parse_rerank(fields["rerank"])
            size = upload.size if upload.size is not None else len(await upload.read())
            if size > max_upload_bytes:
                raise RequestError(413, f"the uploaded image is {size} bytes; the limit is {max_upload_bytes} bytes")
            await upload.seek(0)
            data = await upload.read()
            filename = upload.filename or "upload"
        finally:
            await form.close()
        if not slots.acquire(blocking=False):
            del data
            raise RequestError(503, f"the service is busy ({max_concurrent} searches running); retry in a moment",
                               headers={"Retry-After": "1"})
        try:
            image = await run_in_threadpool(decode_image, data, filename, max_pixels=max_image_pixels,
                                            target_size=input_size)
            del data
            hits = await run_in_threadpool(_search, image, modality, topk, rerank)
        finally:
            slots.release()
        logger.info("search %s query %dx%d topk=%d rerank=%s: %d results in %.0f ms", modality, image.width,
                    image.height, topk, rerank, len(hits), 1000 * (time.perf_counter() - started))
        answer = {"results": [hit_to_json(h, roots) for h in hits], "query_modality": modality, "topk": topk,
                  "rerank": rerank, "gallery_size": len(index)}
        if searcher.threshold is not None:  # open-set search: the threshold and whether anything passed it
            answer.update(threshold=searcher.threshold.to_dict() | {"text": searcher.threshold.describe()},
                          match=bool(hits))
        return answer

    @app.get("/api/gallery/{image_id}/image")
    def gallery_image(image_id: str) -> FileResponse:
        """The file of indexed gallery image ``image_id`` (only ids the index holds)."""
        gid = parse_gallery_id(image_id)
        try:
            path = index.image_path(gid)
        except KeyError:
            raise RequestError(404, f"no gallery image with id {gid} in the index ({len(index)} images)") from None
        try:
            resolved, media_type = safe_image_file(path, roots)
        except RequestError as exc:
            raise RequestError(404, f"gallery image {gid}: {exc.message}") from None
        return FileResponse(resolved, media_type=media_type, headers={"X-Content-Type-Options": "nosniff",
                                                                   "Cache-Control": "private, max-age=3600"})

    return app
