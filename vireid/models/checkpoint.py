"""Training checkpoints: atomic writes, clear errors, exact resumption.

A vireid checkpoint is a ``torch.save`` dict::

    {"format": "vireid-checkpoint", "format_version": 1, "vireid_version": "0.1.0",
     "model": state_dict, "optimizer": ..., "scheduler": ..., "grad_scaler": ..., "sampler": ...,
     "epoch": last completed epoch (0-based), "global_step": optimizer steps so far,
     "best_metric": best eval mAP so far or None, "best_epoch": ..., "num_classes": ...,
     "rng": [per-rank RNG states], "config": resolved config as YAML text, "extra": {...}}

Everything in it is plain tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no arbitrary code runs when opening a file from elsewhere).
The file is written to a temporary name in the same folder, flushed to disk (``fsync``) and renamed
over the destination (``os.replace``), so a run killed mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vireid import __version__
from vireid.errors import CheckpointError
from vireid.io import atomic_open

logger = logging.getLogger(__name__)

FORMAT = "vireid-checkpoint"
FORMAT_VERSION = 1
#: How many missing/unexpected key names an error message lists before "... and N more".
_MAX_KEYS_LISTED = 20


# -- RNG states ------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python ``random``, NumPy global, torch CPU and (when present) every CUDA device's RNG state,
    in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore a state returned by :func:`rng_state` (CUDA states only where CUDA is available)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            torch.cuda.set_rng_state(cuda_states[0])


# -- writing -----------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, ``fsync``, then ``os.replace``."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
    return path


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    grad_scaler: Any | None = None,
    sampler: Any | None = None,
    global_step: int = 0,
    best_metric: float | None = None,
    best_epoch: int | None = None,
    num_classes: int | None = None,
    rng: list[dict[str, Any]] | dict[str, Any] | None = None,
    config_yaml: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a vireid checkpoint atomically (see the module docstring); returns the path.

    ``rng`` defaults to this process's :func:`rng_state`; a list holds one state per DDP rank.
    """
    if rng is None:
        rng = [rng_state()]
    elif isinstance(rng, Mapping):
        rng = [dict(rng)]
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vireid_version": __version__,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
        "sampler": sampler.state_dict() if sampler is not None and hasattr(sampler, "state_dict") else None,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "best_metric": None if best_metric is None else float(best_metric),
        "best_epoch": None if best_epoch is None else int(best_epoch),
        "num_classes": None if num_classes is None else int(num_classes),
        "rng": rng,
        "config": config_yaml,
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(ckpt, path)


# -- reading -----------------------------------------------------------------------------------
def _torch_load(path: Path, map_location: Any) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes; a write that never finished?)")
    check_integrity(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, unsupported pickle content...
        first = (str(exc).splitlines() or [""])[0]
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}{': ' + first if first else ''})"
        ) from exc


def check_integrity(path: str | Path) -> None:
    """Verify the CRC-32 of every record of a torch zip checkpoint (``torch.load`` does not: a file with
    flipped bytes loads silently with wrong numbers). A damaged file is a :class:`CheckpointError` naming
    the record; files in torch's legacy (non-zip) format are not checked."""
    import zipfile

    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint: its zip structure cannot be read ({exc})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint: record {bad!r} fails its CRC-32 check (the file was "
                              "altered or truncated after it was written); use another checkpoint")


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a vireid checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable, not a vireid
    checkpoint, or of a newer format version.
    """
    path = Path(path)
    return _checked_vireid_checkpoint(_torch_load(path, map_location), path)


def load_model_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """The weights to test, embed, export or fine-tune from: a vireid checkpoint (as
    :func:`load_checkpoint`), or a checkpoint of the AGW/CAJ reference code (``{'net': state_dict}`` or
    a bare state dict of its ``embed_net``) converted to vireid's keys
    (:func:`vireid.models.reference.convert_reference_state`). A converted file comes back as a
    checkpoint dict with ``"source_format": "agw-caj-reference"``, ``"config": None`` and its
    ``"reference"`` report (class count, non-local geometry, keys used and ignored). Anything else is a
    :class:`CheckpointError` naming the file and both accepted formats."""
    from vireid.models.reference import REFERENCE_FORMAT, convert_reference_state, reference_state

    path = Path(path)
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and "format" in obj:
        return _checked_vireid_checkpoint(obj, path)
    state = reference_state(obj)
    if state is None:
        raise CheckpointError(
            f"{path}: neither a vireid checkpoint (a dict with format={FORMAT!r}) nor a checkpoint of the AGW/CAJ "
            "reference code ({'net': state_dict} or a bare state_dict of embed_net, keys base_resnet.base.*, "
            "visible_module.*, thermal_module.*, bottleneck.*, classifier.weight)"
        )
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    converted, report = convert_reference_state(state, source=str(path), epoch=epoch)
    logger.info("%s: %s", path, report.summary())
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "source_format": REFERENCE_FORMAT,
            "model": converted, "num_classes": report.num_classes,
            "epoch": epoch if isinstance(epoch, int) else None, "config": None, "reference": report}


def _checked_vireid_checkpoint(ckpt: Any, path: Path) -> dict[str, Any]:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a vireid checkpoint (expected a dict with format={FORMAT!r}; "
            "a bare state_dict can be loaded with load_model_weights)"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported (this vireid reads <= {FORMAT_VERSION})"
        )
    if not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{path}: checkpoint has no 'model' state_dict")
    return ckpt


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_LISTED])
    more = len(keys) - _MAX_KEYS_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def load_model_weights(
    model: nn.Module, path: str | Path, *, strict: bool = True, map_location: Any = "cpu"
) -> dict[str, list[str]]:
    """Load the model weights of ``path`` (a vireid checkpoint or a bare ``state_dict``) into ``model``.

    With ``strict=True`` (the default) any missing or unexpected key, or any shape mismatch, raises
    :class:`CheckpointError` naming the file and listing the keys. With ``strict=False`` missing and
    unexpected keys are allowed and returned, but a shape mismatch still raises, and so does a file
    that matches none of the model's keys. Returns ``{"missing": [...], "unexpected": [...]}``.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = load_checkpoint(path, map_location=map_location)["model"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
    else:
        raise CheckpointError(f"{path}: holds neither a vireid checkpoint nor a state_dict of tensors")

    return apply_model_state(model, state, source=str(path), strict=strict)


def apply_model_state(
    model: nn.Module, state: Mapping[str, Any], *, source: str, strict: bool = True
) -> dict[str, list[str]]:
    """Copy ``state`` into ``model`` after checking it fits (the rules of :func:`load_model_weights`);
    ``source`` names where the weights come from in error messages."""
    target = unwrap_model(model)
    own = target.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    )
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_list_keys(mismatched)}")
    if strict and missing:
        problems.append(f"{len(missing)} missing keys: {_list_keys(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_list_keys(unexpected)}")
    if not strict and own and len(missing) == len(own):
        problems.append(f"none of the model's {len(own)} keys are in the file")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit {type(target).__name__}: " + "; ".join(problems))
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {"missing": missing, "unexpected": unexpected}


def initialise_from_checkpoint(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Start training from the weights of ``path`` (``train.init_checkpoint``: a vireid checkpoint or one
    of the AGW/CAJ reference code, :func:`load_model_checkpoint`), for fine-tuning.

    Every tensor of the file must fit the model by name and shape, except the identity classifiers,
    which are skipped when the class count differs (a new dataset); model tensors the file lacks keep
    their initial values. Both lists are logged and returned (``{"skipped": [...], "missing": [...]}``);
    a tensor that does not fit, or a file that covers under half of the model, is a
    :class:`CheckpointError` naming the file and the keys."""
    ckpt = load_model_checkpoint(path)
    state = ckpt["model"]
    own = unwrap_model(model).state_dict()
    skipped = sorted(k for k in state if k in own and "classifier" in k and state[k].dim() >= 1
                     and state[k].shape[1:] == own[k].shape[1:] and state[k].shape[0] != own[k].shape[0])
    used = {k: v for k, v in state.items() if k not in skipped}
    counted = [k for k in own if not k.endswith("num_batches_tracked")]
    loaded = sum(1 for k in counted if k in used)
    if loaded < 0.5 * len(counted):
        raise CheckpointError(f"{path}: train.init_checkpoint holds only {loaded} of the model's {len(counted)} "
                              f"tensors (missing e.g. {_list_keys([k for k in counted if k not in used][:3])})")
    unexpected = sorted(k for k in used if k not in own)
    if unexpected:  # a tensor the model lacks: another network, refused by name (not dropped)
        raise CheckpointError(f"{path}: train.init_checkpoint does not fit {type(unwrap_model(model)).__name__}: "
                              f"{len(unexpected)} keys the model lacks: {_list_keys(unexpected)}")
    # shapes are checked (and the tensors copied) by the one loader of model weights
    apply_model_state(model, used, source=f"{path} (train.init_checkpoint)", strict=False)
    missing = sorted(k for k in counted if k not in state)
    logger.info("initialised %d of %d tensors from %s", loaded, len(counted), path)
    if skipped:
        logger.info("%s: classifiers skipped (class count differs): %s", path, _list_keys(skipped))
    if missing:
        logger.warning("%s: %d tensors not in the file keep their initial values: %s", path, len(missing),
                       _list_keys(missing))
    return {"skipped": skipped, "missing": missing}
