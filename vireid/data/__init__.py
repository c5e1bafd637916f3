"""Datasets in their official layouts, the plug-in registry, and synthetic VI-ReID data."""

# the built-in readers register themselves on import (the registry imports none of them)
from vireid.data import llcm, manifest, regdb, sysu  # noqa: E402, F401, I001
from vireid.data.base import EvalProtocol, VIReIDDataset
from vireid.data.records import INFRARED, MODALITIES, VISIBLE, ImageRecord
from vireid.data.registry import DATASETS, build_dataset, dataset_names, register_dataset

__all__ = [
    "DATASETS",
    "INFRARED",
    "MODALITIES",
    "VISIBLE",
    "EvalProtocol",
    "ImageRecord",
    "VIReIDDataset",
    "build_dataset",
    "dataset_names",
    "register_dataset",
]
