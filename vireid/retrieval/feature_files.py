"""Feature files: ``OUT.npz`` (``features`` float32 ``[N, D]``, ``info``: JSON with the model info, the
fingerprint and the SHA-256 of the metadata file) and ``OUT.jsonl`` (one JSON object per row: path, pid,
camera, modality, timestamp), written by ``vireid embed`` and read by ``vireid index``.

Each file is written to a temporary name and renamed; the metadata file is written first and the ``.npz``
records its hash, so a pair from two different runs is detected on loading.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import VireidError
from vireid.io import write_bytes_atomic

FEATURES_FORMAT = "vireid-features"


FEATURES_FORMAT_VERSION = 1


class FeatureFileError(VireidError):
    """A feature file (``.npz`` + ``.jsonl``) is missing, malformed or inconsistent."""


@dataclass
class FeatureSet:
    """Features ``[N, D]`` (float32, L2-normalised), one metadata dict per row, and the model info
    (with its ``fingerprint``) of the model that produced them."""

    features: np.ndarray
    metadata: list[dict[str, Any]]
    model_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.metadata):
            raise ValueError(f"features {self.features.shape} and {len(self.metadata)} metadata rows do not match")

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def fingerprint(self) -> str:
        return str(self.model_info["fingerprint"])

    def embeddings(self) -> Any:
        from vireid.retrieval.index import Embeddings

        return Embeddings(self.features, self.fingerprint)


def feature_paths(out: str | Path) -> tuple[Path, Path]:
    """``(OUT.npz, OUT.jsonl)`` of an output name given with or without the ``.npz`` suffix."""
    p = Path(out).expanduser()
    if p.suffix in (".npz", ".jsonl"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".jsonl")


def save_features(out: str | Path, features: FeatureSet) -> tuple[Path, Path]:
    """Write ``OUT.jsonl`` then ``OUT.npz`` (each atomically; see the module docstring)."""
    npz_path, jsonl_path = feature_paths(out)
    feats = np.ascontiguousarray(features.features, dtype=np.float32)
    if "fingerprint" not in features.model_info:
        raise ValueError("model_info must hold the model's fingerprint")
    lines = "".join(json.dumps(dict(row), sort_keys=True) + "\n" for row in features.metadata).encode()
    info = {
        "format": FEATURES_FORMAT,
        "format_version": FEATURES_FORMAT_VERSION,
        "count": int(feats.shape[0]),
        "dim": int(feats.shape[1]),
        "model_info": features.model_info,
        "metadata_file": jsonl_path.name,
        "metadata_sha256": hashlib.sha256(lines).hexdigest(),
    }
    write_bytes_atomic(jsonl_path, lines)
    buf = io.BytesIO()
    np.savez(buf, features=feats, info=np.array(json.dumps(info, sort_keys=True)))
    write_bytes_atomic(npz_path, buf.getvalue())
    return npz_path, jsonl_path


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature file written by :func:`save_features` (``OUT``, ``OUT.npz`` or ``OUT.jsonl``)."""
    npz_path, _ = feature_paths(path)
    if not npz_path.is_file():
        raise FeatureFileError(f"{npz_path}: feature file does not exist")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            feats = np.asarray(data["features"], dtype=np.float32)
            info = json.loads(str(data["info"]))
    except (OSError, ValueError, KeyError) as exc:
        raise FeatureFileError(f"{npz_path}: not a vireid feature file ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or info.get("format") != FEATURES_FORMAT:
        raise FeatureFileError(f"{npz_path}: not a vireid feature file (info.format != {FEATURES_FORMAT!r})")
    if int(info.get("format_version", 0)) > FEATURES_FORMAT_VERSION:
        raise FeatureFileError(f"{npz_path}: format_version {info.get('format_version')} is newer than this vireid reads")
    jsonl_path = npz_path.with_name(str(info["metadata_file"]))
    try:
        raw = jsonl_path.read_bytes()
    except OSError as exc:
        raise FeatureFileError(f"{jsonl_path}: metadata file of {npz_path.name} cannot be read ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != info["metadata_sha256"]:
        raise FeatureFileError(f"{jsonl_path}: does not belong to {npz_path.name} (its SHA-256 differs from the one "
                               "recorded; the pair was written by different runs)")
    metadata = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        try:
            metadata.append(json.loads(line))
        except ValueError as exc:
            raise FeatureFileError(f"{jsonl_path}:{lineno}: not JSON ({exc})") from None
    if len(metadata) != feats.shape[0] or feats.ndim != 2:
        raise FeatureFileError(f"{npz_path}: {feats.shape} features but {len(metadata)} metadata rows")
    return FeatureSet(features=feats, metadata=metadata, model_info=dict(info["model_info"]))
