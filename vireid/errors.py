"""Errors that say what is wrong: the file, line, key or value, and what was expected."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class VireidError(Exception):
    """Base class of every error vireid raises on bad input. The CLI prints it and exits with status 2."""


class DatasetError(VireidError):
    """A dataset folder, split file or image does not match its documented layout.

    ``DatasetError("expected 'id label'", path=p, line=3)`` renders as ``p:3: expected 'id label'``.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class ConfigError(VireidError):
    """A configuration key or value is unknown or of the wrong type."""


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, options))}, got {value!r}")


class CheckpointError(VireidError):
    """A checkpoint or weight file is missing, unreadable or does not fit the model."""


class GalleryIndexError(VireidError):
    """A gallery index folder is missing, incomplete, corrupt or of an unsupported format version."""


class ModelMismatchError(VireidError):
    """Features embedded by one model were given to a gallery index built with another model."""
