"""A dataset's summary table: identities and images per split, modality and camera.

``summarize(dataset)`` counts the training records and the query and gallery of the first trial of the
dataset's default protocol; ``format_summary(rows)`` renders them as a fixed-width table::

    split    modality  camera  identities  images
    train    visible   1                3       6
    train    infrared  3                3       6
    train    all       -                3      12
    query    infrared  3                2       4
    ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vireid.data.base import EvalProtocol, VIReIDDataset
from vireid.data.records import MODALITIES, ImageRecord

SUMMARY_COLUMNS = ("split", "modality", "camera", "identities", "images")


@dataclass(frozen=True)
class SummaryRow:
    """One line of the table. ``camera`` is ``None`` and ``modality`` ``"all"`` on a split's total row."""

    split: str
    modality: str
    camera: int | None
    identities: int
    images: int


def summarize_records(split: str, records: Iterable[ImageRecord]) -> list[SummaryRow]:
    """Rows of one split: one per (modality, camera), visible first then cameras ascending, then the total."""
    recs = list(records)
    groups: dict[tuple[str, int], list[ImageRecord]] = {}
    for rec in recs:
        groups.setdefault((rec.modality, rec.camera), []).append(rec)
    order = sorted(groups, key=lambda key: (MODALITIES.index(key[0]), key[1]))
    rows = [
        SummaryRow(split, mod, cam, len({r.pid for r in groups[(mod, cam)]}), len(groups[(mod, cam)]))
        for mod, cam in order
    ]
    rows.append(SummaryRow(split, "all", None, len({r.pid for r in recs}), len(recs)))
    return rows


def summarize(
    dataset: VIReIDDataset, *, protocol: EvalProtocol | None = None, trial: int | None = None
) -> list[SummaryRow]:
    """Summary rows of ``train`` (the records of ``trial``), ``query`` and ``gallery`` of ``trial``.

    ``protocol`` defaults to ``dataset.protocol()`` and ``trial`` to the protocol's first trial (SYSU-MM01
    and LLCM 0, RegDB 1, which is also the RegDB training split counted).
    """
    protocol = protocol if protocol is not None else dataset.protocol()
    trial = protocol.trials[0] if trial is None else trial
    rows = summarize_records("train", dataset.train_records(trial))
    rows += summarize_records("query", protocol.query(trial))
    rows += summarize_records("gallery", protocol.gallery(trial))
    return rows


def format_summary(rows: Sequence[SummaryRow], title: str | None = None) -> str:
    """The rows as a fixed-width text table (text columns left-aligned, counts right-aligned)."""
    cells = [list(SUMMARY_COLUMNS)] + [
        [r.split, r.modality, "-" if r.camera is None else str(r.camera), str(r.identities), str(r.images)]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(SUMMARY_COLUMNS))]
    lines = [title] if title else []
    for row in cells:
        parts = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(len(row))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def summary_title(dataset: VIReIDDataset, protocol: EvalProtocol, trial: int) -> str:
    """``sysu /path  protocol mode=all shots=1 ... trial 0`` — the line printed above the table."""
    desc = " ".join(f"{k}={v}" for k, v in protocol.describe().items() if k != "dataset")
    return f"{dataset.name} {dataset.root}  protocol {desc}  trial {trial}"
