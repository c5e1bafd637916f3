"""The SQLite side of a gallery index: the ``images`` table (one row per vector: path, pid, camera,
modality, timestamp and extra fields as JSON) and the ``info`` table, rows normalised from user metadata,
and the image roots that bound which files the index may serve."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vireid.errors import GalleryIndexError
from vireid.retrieval.faiss_build import ADD_CHUNK, progress_bar

IMAGE_COLUMNS = ("id", "path", "pid", "camera", "modality", "timestamp", "extra")


KNOWN_KEYS = {"path", "pid", "camera", "modality", "timestamp"}


SQL_VARIABLES = 900  # ids per "IN (...)" query (below every SQLite build's variable limit)


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


def normalise_metadata(rows: Sequence[Mapping[str, Any]], n: int) -> list[tuple[Any, ...]]:
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
        extra = {k: v for k, v in row.items() if k not in KNOWN_KEYS}
        try:
            extra_json = json.dumps(extra, sort_keys=True) if extra else None
        except TypeError as exc:
            raise ValueError(f"metadata[{i}]: extra keys must be JSON-serialisable ({exc})") from None
        out.append((path, pid, camera, modality, timestamp, extra_json))
    return out


def create_schema(con: sqlite3.Connection) -> None:
    with con:
        con.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute(
            "CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL, pid INTEGER, camera INTEGER NOT NULL, "
            "modality TEXT NOT NULL, timestamp, extra TEXT)"
        )


def insert_rows(con: sqlite3.Connection, start: int, rows: Sequence[tuple[Any, ...]], *, progress: bool) -> None:
    with progress_bar(len(rows), "writing metadata", progress) as bar:
        for lo in range(0, len(rows), ADD_CHUNK):
            chunk = rows[lo : lo + ADD_CHUNK]
            con.executemany(
                "INSERT INTO images (id, path, pid, camera, modality, timestamp, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((start + lo + j, *row) for j, row in enumerate(chunk)),
            )
            bar.update(len(chunk))


def write_info(con: sqlite3.Connection, info: Mapping[str, Any]) -> None:
    con.executemany("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, sort_keys=True)) for k, v in info.items()])


def read_info(con: sqlite3.Connection) -> dict[str, Any]:
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


def row_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = {k: row[i] for i, k in enumerate(IMAGE_COLUMNS[:-1])}
    out["id"] = int(out["id"])
    if row[-1]:
        out.update(json.loads(row[-1]))
    return out
