"""Exported ONNX graphs behind the model test interface, so ``vireid test --onnx`` scores an exported
model with the same evaluator, protocol and metrics as a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vireid.errors import VireidError
from vireid.models.base import modality_codes
from vireid.retrieval.embed import OnnxExtractor

#: Modality codes each graph serves (the derived view of a visible image goes through the visible graph).
GRAPH_CODES = {"visible": (0, 2), "infrared": (1,)}


class OnnxReIDModel(nn.Module):
    """``extract(images, modality)`` of :class:`~vireid.models.base.ReIDModel`, run by ONNX Runtime on the
    graphs of :func:`vireid.retrieval.export.export_onnx` (one per modality). Inference only."""

    def __init__(self, extractor: OnnxExtractor):
        super().__init__()
        self.extractor = extractor

    @classmethod
    def from_paths(cls, paths: str | Path | list[str | Path], *, device: str = "cpu") -> OnnxReIDModel:
        return cls(OnnxExtractor.from_paths(paths, device=device))

    def forward(self, batch: Any) -> Any:
        raise TypeError("an exported ONNX model is for inference only: use extract(images, modality)")

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        codes = modality_codes(modality, images.shape[0], images.device).cpu()
        out: torch.Tensor | None = None
        for name, graph_codes in GRAPH_CODES.items():
            mask = torch.isin(codes, torch.tensor(graph_codes))
            if not bool(mask.any()):
                continue
            if name not in self.extractor.sessions:
                raise VireidError(f"no {name} ONNX graph given (have: {', '.join(self.extractor.modalities)}); "
                                  "export both with 'vireid export --modality both'")
            batch = images.detach().cpu()[mask].numpy().astype(np.float32)
            feats = torch.from_numpy(np.asarray(self.extractor._run(batch, name)))
            if out is None:
                out = torch.zeros(images.shape[0], feats.shape[1], dtype=feats.dtype)
            out[mask] = feats
        assert out is not None  # images.shape[0] >= 1 and every code maps to a graph
        return out
