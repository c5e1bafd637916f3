"""The published numbers vireid's configs reproduce (``published.yaml`` beside this module) and the matching
of a report row to them.

A row of ``published.yaml`` names its source (paper, table, row), the vireid config that reproduces it, the
protocol setting, how the number was tested where the source says, and its figures. A group of runs
**matches** a row when its configuration equals the row config's apart from run-local keys
(:data:`vireid.report.runs.RUN_LOCAL_KEYS`), on the same dataset and protocol setting. A row on synthetic data
or of an untrained model matches nothing. Where the run and the published number were tested differently
(weights selected on the test set, flip, re-ranking), the match carries a note saying so; it is never
compared silently. Without a match the note names the nearest published config and the keys that differ.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vireid.errors import ConfigError
from vireid.report.runs import Group, comparable, differing_keys, flatten

#: The machine-readable file of published rows.
PUBLISHED_FILE = Path(__file__).with_name("published.yaml")
#: The source tree whose ``configs/`` the published rows name.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PublishedRow:
    method: str
    paper: str
    source: str
    table: str
    row: str
    docs_row: str
    config: str
    setting: dict[str, Any]
    tested: dict[str, Any]
    metrics: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.method}, {self.table}: {self.row}"


def load_published(path: str | Path = PUBLISHED_FILE) -> list[PublishedRow]:
    """Every row of the published-numbers file, in file order."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the published numbers ({exc})") from None
    sources = data.get("sources") or {}
    rows = []
    for i, raw in enumerate(data.get("rows") or []):
        missing = [k for k in ("method", "paper", "table", "row", "config", "setting", "metrics") if k not in raw]
        if missing:
            raise ConfigError(f"{path}: row {i + 1} lacks {', '.join(missing)}")
        if raw["paper"] not in sources:
            raise ConfigError(f"{path}: row {i + 1} cites paper {raw['paper']!r}, which is not in sources")
        rows.append(PublishedRow(method=raw["method"], paper=raw["paper"], source=sources[raw["paper"]],
                                 table=raw["table"], row=raw["row"], docs_row=raw.get("docs_row", raw["row"]),
                                 config=raw["config"], setting=dict(raw["setting"]), tested=dict(raw.get("tested") or {}),
                                 metrics={k: float(v) for k, v in raw["metrics"].items()}))
    return rows


@functools.cache
def _published_config(config: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from vireid.config import load_config

    path = REPO_ROOT / config
    if not path.is_file():
        raise ConfigError(f"published row config {config}: not found under {REPO_ROOT} (matching runs to published "
                          "numbers needs the configs/ folder of the vireid source tree)")
    return comparable(flatten(OmegaConf.to_container(load_config(path), resolve=True)))


def _tested_notes(group: Group, row: PublishedRow) -> list[str]:
    conv = group.first.conventions
    notes = []
    if row.tested.get("selected_on_test_set") and not conv.get("selected_on_test_set"):
        notes.append("published: the best epoch selected on the test set; this run: its last weights")
    if conv.get("selected_on_test_set") and not row.tested.get("selected_on_test_set"):
        notes.append("this run's weights were selected on the test set; the published number's were "
                     + ("not" if "selected_on_test_set" in row.tested else "not stated"))
    if "flip" in row.tested and bool(row.tested["flip"]) != bool(conv.get("flip")):
        notes.append("published with the flipped-image feature; this run without" if row.tested["flip"]
                     else "this run adds the flipped-image feature; the published number does not")
    elif "flip" not in row.tested and conv.get("flip"):
        notes.append("this run adds the flipped-image feature; the source does not say whether it did")
    if conv.get("rerank"):
        notes.append(f"this run is re-ranked ({conv['rerank']} variant); the published number is not")
    return notes


def match_published(group: Group, rows: Sequence[PublishedRow]) -> tuple[PublishedRow | None, list[str]]:
    """The published row a group reproduces, with notes on how they were tested; or None and why."""
    conv = group.first.conventions
    if conv.get("synthetic"):
        return None, ["synthetic data: not comparable with any published number"]
    if conv.get("untrained"):
        return None, ["an untrained model: no published row"]
    run = group.first
    config = comparable(run.config)
    same_data = [r for r in rows if _published_config(r.config).get("data.name") == config.get("data.name")
                 and all(run.setting.get(k) == v for k, v in r.setting.items())]
    for row in same_data:
        if _published_config(row.config) == config:
            return row, _tested_notes(group, row)
    if not same_data:
        return None, [f"no published row for {config.get('data.name')} with {run.setting}"]
    nearest = min(same_data, key=lambda r: len(differing_keys([_published_config(r.config), config])))
    keys = differing_keys([_published_config(nearest.config), config])
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    return None, [f"no published row: the nearest, {nearest.config} ({nearest.label}), differs in {len(keys)} "
                  f"key(s): {shown}"]


def attach_published(groups: Sequence[Group], rows: Sequence[PublishedRow] | None = None) -> None:
    """Fill each group's ``published`` (the row's figures and source) and ``published_note``."""
    rows = load_published() if rows is None else rows
    for group in groups:
        row, notes = match_published(group, rows)
        group.published = None if row is None else {"metrics": row.metrics, "label": row.label,
                                                    "source": row.source, "config": row.config}
        group.published_note = "; ".join(notes)
