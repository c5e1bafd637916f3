"""Features of images for search: a trained model (PyTorch or ONNX Runtime), its fingerprint, and the
extractors that turn images into L2-normalised features.

- :func:`load_model` builds the model of a config and loads a vireid checkpoint into it (every weight
  from the checkpoint, ``model.pretrained`` ignored), as ``vireid test`` does.
- :func:`model_fingerprint`: SHA-256 of the model's state (every tensor's name, dtype, shape and bytes)
  and of the settings that change its test features (every ``model.*`` key except ``pretrained``, and
  the input size ``data.height`` x ``data.width``). A gallery index records it and refuses features with
  another one.
- :class:`TorchExtractor` and :class:`OnnxExtractor` turn PIL images into features the same way as
  :func:`vireid.evaluation.evaluator.extract_features`: RGB conversion (infrared images get three equal
  channels), the test transform (resize to the input size, [0, 1] tensor), the branch of the images'
  modality, and with ``flip`` the mean of the features of the image and its horizontal flip. Unlike
  the evaluator, they return **L2-normalised** float32 NumPy arrays (what a gallery index stores).
- :func:`embed`: the features of image rows (:func:`vireid.retrieval.image_lists.list_images`) as a
  :class:`~vireid.retrieval.feature_files.FeatureSet` (saved by :mod:`vireid.retrieval.feature_files`).
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vireid.data.records import MODALITIES
from vireid.errors import CheckpointError, VireidError
from vireid.retrieval.feature_files import FeatureSet

logger = logging.getLogger("vireid.retrieval")

FINGERPRINT_VERSION = "vireid-model-fingerprint-v1"
BACKENDS = ("torch", "onnx")


# -- model --------------------------------------------------------------------------------------------
def fingerprint_settings(cfg: Any) -> dict[str, Any]:
    """The settings (besides the weights) that determine a model's test features."""
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    model.pop("pretrained", None)
    return {"model": model, "input_size": [int(cfg.data.height), int(cfg.data.width)]}


def model_fingerprint(model: Any, cfg: Any) -> str:
    """SHA-256 (hex) of ``model``'s state dict and :func:`fingerprint_settings` of ``cfg``."""
    import torch

    h = hashlib.sha256()
    h.update(FINGERPRINT_VERSION.encode() + b"\n")
    h.update(json.dumps(fingerprint_settings(cfg), sort_keys=True).encode() + b"\n")
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A model with trained weights, the config it was built from and its fingerprint; what retrieval needs
    of the config (``model.name``, ``model.arch``, the input size) as properties."""

    model: Any
    cfg: Any
    checkpoint: Path | None
    fingerprint: str

    @property
    def name(self) -> str:
        return str(self.cfg.model.name)

    @property
    def arch(self) -> str:
        return str(self.cfg.model.arch)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(data.height, data.width)``."""
        return int(self.cfg.data.height), int(self.cfg.data.width)

    def model_info(self, **extra: Any) -> dict[str, Any]:
        """What a feature file or a gallery index records about the model (``extra`` added, e.g.
        ``flip``, ``feature_dim``)."""
        from vireid import __version__
        from vireid.config import config_to_yaml

        return {
            "fingerprint": self.fingerprint,
            "model": self.name,
            "arch": self.arch,
            "input_size": list(self.input_size),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "config": config_to_yaml(self.cfg),
            "vireid_version": __version__,
            **extra,
        }


def load_model(cfg: Any | None = None, checkpoint: str | Path | None = None, *, device: str = "cpu") -> LoadedModel:
    """Build the model of ``cfg`` (default: the config recorded in the checkpoint) and load the weights
    of ``checkpoint`` (a vireid checkpoint, or a checkpoint of the AGW/CAJ reference code with an AGW or
    CAJ config), strictly: a missing or mismatching weight is a CheckpointError. The model is in eval mode
    on ``device``."""
    from vireid.config import config_from_yaml
    from vireid.models.checkpoint import load_model_checkpoint
    from vireid.models.loading import checkpoint_model_config, load_trained_model

    if checkpoint is None:
        raise ValueError("load_model needs a checkpoint: load_model(checkpoint='last.pt') or load_model(cfg, 'last.pt')")
    path = Path(checkpoint).expanduser().resolve()
    ckpt = load_model_checkpoint(path)
    if cfg is None:
        if not ckpt.get("config"):
            raise CheckpointError(f"{path}: checkpoint records no config; give the config file (a checkpoint of "
                                  "the reference code needs an AGW or CAJ config)")
        cfg = config_from_yaml(ckpt["config"], f"{path} (recorded config)")
    cfg = checkpoint_model_config(cfg, ckpt, path)  # what the model is built from (pretrained none)
    model, _ = load_trained_model(cfg, path, ckpt=ckpt)  # strict; warns on changed model.* settings
    model.eval()
    fingerprint = model_fingerprint(model, cfg)
    model.to(device)
    return LoadedModel(model=model, cfg=cfg, checkpoint=path, fingerprint=fingerprint)


def search_transform(height: int, width: int) -> Callable[[Any], Any]:
    """The test transform of ``vireid test`` for an input of ``height`` x ``width``."""
    from vireid.config.defaults import DataConfig
    from vireid.data.transforms import resize_to_tensor

    return resize_to_tensor((int(height), int(width)), DataConfig.resize)


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
    return modality


def _rgb(image: Any) -> Any:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# -- extractors -------------------------------------------------------------------------------------------
class FeatureExtractor(abc.ABC):
    """Images in, L2-normalised float32 features out (see the module docstring)."""

    backend: str = ""

    def __init__(self, *, fingerprint: str, input_size: tuple[int, int], batch_size: int = 64, flip: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fingerprint = fingerprint
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.transform = search_transform(*self.input_size)

    @abc.abstractmethod
    def _run(self, images: np.ndarray, modality: str) -> np.ndarray:
        """Raw features ``[N, D]`` of a float32 batch ``[N, 3, H, W]`` in [0, 1] of one modality."""

    @property
    @abc.abstractmethod
    def modalities(self) -> tuple[str, ...]:
        """Modalities this extractor can embed."""

    @abc.abstractmethod
    def model_info(self, **extra: Any) -> dict[str, Any]:
        """What a feature file or an index records about the model (fingerprint, config, checkpoint,
        flip), with ``extra`` added."""

    def _features(self, batch: np.ndarray, modality: str) -> np.ndarray:
        if modality not in self.modalities:
            raise VireidError(f"this {self.backend} model has no {modality} branch (it has {', '.join(self.modalities)})")
        feats = np.asarray(self._run(batch, modality), dtype=np.float32)
        if self.flip:
            feats = (feats + np.asarray(self._run(np.ascontiguousarray(batch[..., ::-1]), modality), dtype=np.float32)) / 2
        return _l2(feats)

    def embed_tensors(self, images: Any, modality: str) -> np.ndarray:
        """Features of a batch ``[N, 3, H, W]`` in [0, 1] (tensor or array) already at the input size."""
        _check_modality(modality)
        batch = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3 or tuple(batch.shape[2:]) != self.input_size:
            raise ValueError(f"expected images [N, 3, {self.input_size[0]}, {self.input_size[1]}], got {batch.shape}")
        out = [self._features(batch[i : i + self.batch_size], modality) for i in range(0, len(batch), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def embed_images(self, images: Sequence[Any], modality: str, *, progress: bool = False) -> np.ndarray:
        """Features ``[len(images), D]`` of PIL images of one ``modality``."""
        _check_modality(modality)
        return self._embed_loaded(((self.transform(_rgb(im)) for im in images)), len(images), modality, progress)

    def _embed_loaded(self, tensors: Iterable[Any], n: int, modality: str, progress: bool,
                      desc: str = "extracting features") -> np.ndarray:
        from tqdm import tqdm

        if n == 0:
            raise ValueError("no images to embed")
        chunks: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        with tqdm(total=n, desc=desc, unit="img", disable=not progress) as bar:
            for t in tensors:
                batch.append(t.numpy() if hasattr(t, "numpy") else np.asarray(t))
                if len(batch) == self.batch_size:
                    chunks.append(self._features(np.stack(batch).astype(np.float32, copy=False), modality))
                    bar.update(len(batch))
                    batch = []
            if batch:
                chunks.append(self._features(np.stack(batch).astype(np.float32, copy=False), modality))
                bar.update(len(batch))
        return np.concatenate(chunks)

    def embed_paths(self, paths: Sequence[str | Path], modality: str, *, progress: bool = False,
                    workers: int = 0) -> np.ndarray:
        """Features of image files of one ``modality`` (a missing or unreadable file is a DatasetError)."""
        _check_modality(modality)
        return self.embed_metadata([{"path": str(p), "modality": modality} for p in paths],
                                   progress=progress, workers=workers)

    def embed_metadata(self, rows: Sequence[Mapping[str, Any]], *, progress: bool = True,
                       workers: int = 0) -> np.ndarray:
        """Features of the images of metadata rows (``path`` and ``modality`` each), in row order;
        rows of both modalities may be mixed. ``workers`` reads images in that many processes."""
        if not rows:
            raise ValueError("no images to embed")
        unknown = sorted({str(r["modality"]) for r in rows} - set(MODALITIES))
        if unknown:
            raise ValueError(f"modality must be one of {'|'.join(MODALITIES)}, got {unknown}")
        out: np.ndarray | None = None
        for modality in MODALITIES:
            positions = [i for i, r in enumerate(rows) if r["modality"] == modality]
            if not positions:
                continue
            loader = _image_loader([str(rows[i]["path"]) for i in positions], self.transform, workers)
            feats = self._embed_loaded(loader, len(positions), modality, progress, desc=f"extracting {modality} features")
            if out is None:
                out = np.zeros((len(rows), feats.shape[1]), dtype=np.float32)
            out[positions] = feats
        assert out is not None
        return out


class _ImageFiles:
    def __init__(self, paths: Sequence[str], transform: Callable[[Any], Any]):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        from vireid.data.records import load_rgb

        return self.transform(load_rgb(self.paths[i]))


def _image_loader(paths: Sequence[str], transform: Callable[[Any], Any], workers: int) -> Iterable[Any]:
    files = _ImageFiles(paths, transform)
    if workers <= 0:
        return (files[i] for i in range(len(files)))
    from torch.utils.data import DataLoader

    loader = DataLoader(files, batch_size=None, shuffle=False, num_workers=workers)  # type: ignore[arg-type]
    return iter(loader)


class TorchExtractor(FeatureExtractor):
    """Features from a PyTorch :class:`~vireid.models.ReIDModel` (``model.extract``, inference mode)."""

    backend = "torch"

    def __init__(self, loaded: LoadedModel, *, device: str = "cpu", batch_size: int = 64, flip: bool = False):
        super().__init__(fingerprint=loaded.fingerprint,
                         input_size=loaded.input_size,
                         batch_size=batch_size, flip=flip)
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(device).eval()

    @classmethod
    def from_checkpoint(cls, cfg: Any | None = None, checkpoint: str | Path | None = None, *, device: str = "cpu",
                        batch_size: int = 64, flip: bool = False) -> TorchExtractor:
        return cls(load_model(cfg, checkpoint, device=device), device=device, batch_size=batch_size, flip=flip)

    @property
    def modalities(self) -> tuple[str, ...]:
        return MODALITIES

    def _run(self, images: np.ndarray, modality: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device)
            return self.model.extract(x, modality).float().cpu().numpy()

    def model_info(self, **extra: Any) -> dict[str, Any]:
        return self.loaded.model_info(flip=self.flip, **extra)


class OnnxExtractor(FeatureExtractor):
    """Features from graphs written by :func:`vireid.retrieval.export.export_onnx` (one per modality),
    run with ONNX Runtime; the graphs' metadata give the modality, input size and model fingerprint."""

    backend = "onnx"

    def __init__(self, graphs: Mapping[str, str | Path], *, batch_size: int = 64, flip: bool = False,
                 device: str = "cpu"):
        from vireid.models.onnx_model import OnnxGraphs

        self.onnx = OnnxGraphs(graphs, device=device)
        super().__init__(fingerprint=self.onnx.fingerprint, input_size=self.onnx.input_size,
                         batch_size=batch_size, flip=flip)
        self.graphs = self.onnx.graphs
        self.metadata = self.onnx.metadata
        self.sessions = self.onnx.sessions

    @classmethod
    def from_paths(cls, paths: str | Path | Sequence[str | Path], **kwargs: Any) -> OnnxExtractor:
        """Graphs named by ``paths`` (see :func:`vireid.models.onnx_model.resolve_onnx_paths`)."""
        from vireid.models.onnx_model import resolve_onnx_paths

        return cls(resolve_onnx_paths(paths), **kwargs)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.onnx.modalities

    def _run(self, images: np.ndarray, modality: str) -> np.ndarray:
        return self.onnx.run(images, modality)

    def model_info(self, **extra: Any) -> dict[str, Any]:
        meta = next(iter(self.metadata.values()))
        info = {k: meta.get(k) for k in ("fingerprint", "model", "arch", "input_size", "checkpoint", "config",
                                         "vireid_version")}
        return {**info, "onnx": {m: str(p.resolve()) for m, p in self.graphs.items()}, "flip": self.flip, **extra}


def build_extractor(
    *,
    backend: str = "torch",
    cfg: Any | None = None,
    checkpoint: str | Path | None = None,
    onnx: str | Path | Sequence[str | Path] | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    flip: bool = False,
) -> FeatureExtractor:
    """A :class:`TorchExtractor` (needs ``checkpoint``; ``cfg`` defaults to the checkpoint's) or an
    :class:`OnnxExtractor` (needs ``onnx``; with a ``checkpoint`` too, the graphs must come from it)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        if checkpoint is None:
            raise ValueError("the torch backend needs a checkpoint")
        return TorchExtractor.from_checkpoint(cfg, checkpoint, device=device, batch_size=batch_size, flip=flip)
    if onnx is None:
        raise ValueError("the onnx backend needs the exported graph(s) (onnx=model.onnx; see 'vireid export')")
    extractor = OnnxExtractor.from_paths(onnx, batch_size=batch_size, flip=flip, device=device)
    if checkpoint is not None:
        loaded = load_model(cfg, checkpoint, device="cpu")
        if loaded.fingerprint != extractor.fingerprint:
            from vireid.retrieval.index import ModelMismatchError

            raise ModelMismatchError(
                f"the ONNX graph(s) {', '.join(map(str, extractor.graphs.values()))} were exported from model "
                f"{extractor.fingerprint[:12]}, not from {checkpoint} with this config ({loaded.fingerprint[:12]}); "
                "export them again with 'vireid export'"
            )
    return extractor


def embed(
    extractor: FeatureExtractor, rows: Sequence[Mapping[str, Any]], *, progress: bool = True, workers: int = 0
) -> FeatureSet:
    """Features of the images of metadata ``rows`` (from :func:`list_images`) with the model info."""
    feats = extractor.embed_metadata(rows, progress=progress, workers=workers)
    info = extractor.model_info(feature_dim=int(feats.shape[1]), backend=extractor.backend)
    return FeatureSet(features=feats, metadata=[dict(r) for r in rows], model_info=info)

