"""Reading pretrained weight files (the ``model.pretrained=/path`` of every backbone)."""

from __future__ import annotations

from pathlib import Path

import torch

from vireid.errors import CheckpointError


def read_state_dict(path: str | Path, *, expected: str) -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) from a ``.safetensors`` or torch file (``state_dict`` / ``model``
    entries are unwrapped). A missing or unreadable file, or one that holds something else, is a
    :class:`CheckpointError` naming the file; ``expected`` says what the file should be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model.pretrained file not found (expected 'imagenet', 'none' or {expected})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (parameter name -> tensor), got {type(obj).__name__}")
    return obj
