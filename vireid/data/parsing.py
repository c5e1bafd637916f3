"""Parsing helpers shared by the dataset readers: id lists, ``<path> <label>`` split files, image folders.

Every function raises :class:`~vireid.errors.DatasetError` naming the file (and line) and what was
expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vireid.errors import DatasetError

#: File suffixes (lower case) taken as images when a folder is scanned; other files (``Thumbs.db``,
#: ``.DS_Store``) are ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

_INT = re.compile(r"^\d+$")


def read_text_lines(path: Path) -> list[str]:
    """The file's lines (newline characters removed); a missing or unreadable file is a DatasetError."""
    if not path.is_file():
        raise DatasetError("file is missing", path=path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the file ({type(exc).__name__}: {exc})", path=path) from exc


def read_id_list(path: Path) -> list[int]:
    """Person ids from a file of comma-separated integers (``6,10,17,...``), in file order.

    The ids may span several lines; blank lines and a trailing comma are allowed. A non-integer item,
    an empty item between commas, a repeated id or a file without ids is an error naming the line.
    """
    ids: list[int] = []
    first_line: dict[int, int] = {}
    for lineno, line in enumerate(read_text_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        items = text.split(",")
        if items[-1].strip() == "":
            items = items[:-1]
        for item in items:
            item = item.strip()
            if not _INT.match(item):
                raise DatasetError(
                    f"expected comma-separated integer person ids, found {item!r}", path=path, line=lineno
                )
            pid = int(item)
            if pid in first_line:
                raise DatasetError(
                    f"person id {pid} is listed twice (first on line {first_line[pid]})",
                    path=path,
                    line=lineno,
                )
            first_line[pid] = lineno
            ids.append(pid)
    if not ids:
        raise DatasetError("expected one line of comma-separated integer person ids, found none", path=path)
    return ids


@dataclass(frozen=True)
class LabelLine:
    """One line of a ``<relative path> <label>`` split file."""

    line: int
    relpath: str
    path: Path
    label: int


def read_label_file(path: Path, root: Path) -> list[LabelLine]:
    """Lines ``<relative path> <label>`` (label a non-negative integer), paths relative to ``root``.

    Blank lines are skipped. A line without exactly a path and a label, a non-integer label, or a path
    that is not a file under ``root`` is an error naming the line.
    """
    out: list[LabelLine] = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"expected '<relative path> <label>', found {text!r}", path=path, line=lineno)
        rel, label = parts
        if not _INT.match(label):
            raise DatasetError(
                f"expected '<relative path> <label>' with a non-negative integer label, found label {label!r}",
                path=path,
                line=lineno,
            )
        image = Path(os.path.normpath(root / rel.replace("\\", "/")))
        if not image.is_relative_to(root):
            raise DatasetError(f"path {rel!r} leaves the dataset folder {root}", path=path, line=lineno)
        if not image.is_file():
            raise DatasetError(f"image {rel!r} does not exist under {root}", path=path, line=lineno)
        out.append(
            LabelLine(line=lineno, relpath=image.relative_to(root).as_posix(), path=image, label=int(label))
        )
    if not out:
        raise DatasetError("expected lines '<relative path> <label>', the file has none", path=path)
    return out


def check_label_consistency(path: Path, lines: list[LabelLine], pids: list[int]) -> None:
    """Within one split file, a label always names the same person and a person always has one label."""
    person_of: dict[int, tuple[int, int]] = {}
    label_of: dict[int, tuple[int, int]] = {}
    for entry, pid in zip(lines, pids):
        seen = person_of.setdefault(entry.label, (pid, entry.line))
        if seen[0] != pid:
            raise DatasetError(
                f"label {entry.label} is person {pid} here ({entry.relpath}) but person {seen[0]} on line {seen[1]}; "
                "expected one person per label",
                path=path,
                line=entry.line,
            )
        seen = label_of.setdefault(pid, (entry.label, entry.line))
        if seen[0] != entry.label:
            raise DatasetError(
                f"person {pid} has label {entry.label} here ({entry.relpath}) but label {seen[0]} on line {seen[1]}; "
                "expected one label per person",
                path=path,
                line=entry.line,
            )


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` (by suffix, hidden files skipped), sorted by file name."""
    names = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
    )
    return [folder / name for name in names]


def list_id_folders(camera_dir: Path, pattern: re.Pattern[str], expected: str) -> list[tuple[int, Path]]:
    """Person-id sub-folders of ``camera_dir`` as ``(pid, folder)``, pids ascending.

    Folder names must match ``pattern`` (its first group is the id); any other non-hidden folder is an
    error (``expected`` says what a valid name looks like). Files are ignored.
    """
    out: list[tuple[int, Path]] = []
    seen: dict[int, Path] = {}
    for entry in camera_dir.iterdir():
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        m = pattern.match(entry.name)
        if m is None:
            raise DatasetError(f"unexpected folder name {entry.name!r}; expected {expected}", path=entry)
        pid = int(m.group(1))
        if pid in seen:
            raise DatasetError(
                f"person id {pid} has two folders ({seen[pid].name!r} and {entry.name!r})", path=entry
            )
        seen[pid] = entry
        out.append((pid, entry))
    out.sort()
    return out
