"""Datasets in their official layouts, the plug-in registry, and synthetic VI-ReID data."""

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
