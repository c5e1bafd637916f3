"""What the search service shows of its gallery: each result as JSON, with the image's path below the image
root it lies under (never the server's absolute path), and the roots themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gallery_roots(index: Any) -> list[Path]:
    """The folders the service may serve gallery images from: the image roots the index records, or,
    for an index that records none, the common folder of its indexed images."""
    from vireid.retrieval.index import resolve_image_roots

    recorded = index.image_roots() or resolve_image_roots([row["path"] for row in index.metadata()], None)
    return [Path(r) for r in recorded]


def root_relative(path: str | Path, roots: list[Path]) -> str:
    """``path`` relative to the image root it lies under (``cam1/0007/0001.jpg``: the identity and camera
    folders a reader needs), its file name when under none; never the server's absolute path."""
    p = Path(str(path))
    for root in roots:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            continue
    return p.name


def hit_to_json(hit: Any, roots: list[Path] | None = None) -> dict[str, Any]:
    """The JSON of one :class:`~vireid.retrieval.index.SearchHit` (no server path: ``image_url`` instead;
    ``path`` relative to the image root)."""
    out = {
        "id": int(hit.id),
        "rank": int(hit.rank),
        "score": float(hit.score),
        "camera": int(hit.camera),
        "modality": str(hit.modality),
        "pid": None if hit.pid is None else int(hit.pid),
        "name": Path(str(hit.path)).name,
        "path": root_relative(hit.path, roots or []),  # below the image root only: no server path leaves
        "image_url": f"/api/gallery/{int(hit.id)}/image",
    }
    if getattr(hit, "rerank_distance", None) is not None:
        out["rerank_distance"] = float(hit.rerank_distance)
    return out
