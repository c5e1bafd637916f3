"""Dataset plug-in registry: ``@register_dataset("name")`` on a :class:`VIReIDDataset` subclass.

The built-in readers (SYSU-MM01, RegDB, LLCM, manifest) register themselves when their modules are imported,
which the ``vireid.data`` package does; this module imports none of them (it is imported by each)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vireid.data.base import VIReIDDataset
from vireid.errors import ConfigError

DATASETS: dict[str, type[VIReIDDataset]] = {}


def register_dataset(name: str) -> Callable[[type[VIReIDDataset]], type[VIReIDDataset]]:
    """Class decorator adding a dataset reader under ``name`` (also sets ``cls.name``)."""

    def deco(cls: type[VIReIDDataset]) -> type[VIReIDDataset]:
        if name in DATASETS and DATASETS[name] is not cls:
            raise ValueError(f"dataset name {name!r} is already registered by {DATASETS[name].__qualname__}")
        cls.name = name
        DATASETS[name] = cls
        return cls

    return deco


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def build_dataset(name: str, root: str | Path, **kwargs: Any) -> VIReIDDataset:
    """Read the dataset ``name`` from ``root``; an unknown name lists the valid ones."""
    if name not in DATASETS:
        near = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"data.name: unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}.{hint}")
    return DATASETS[name](root, **kwargs)


def detect_dataset(root: str | Path) -> str | None:
    """The name of the registered dataset whose official layout ``root`` has (its readers'
    :meth:`~vireid.data.base.VIReIDDataset.looks_like`), or None for any other folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        return None
    found = [name for name, cls in sorted(DATASETS.items()) if cls.looks_like(path)]
    return found[0] if len(found) == 1 else None
