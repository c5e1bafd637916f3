"""Exported ONNX feature graphs, the read side: where ``vireid export`` writes them, their metadata, ONNX
Runtime sessions over them (:class:`OnnxGraphs`), and :class:`OnnxReIDModel`, the graphs behind the model
test interface so that ``vireid test --onnx`` scores an exported model with the same evaluator, protocol
and metrics as a checkpoint. The write side is :mod:`vireid.retrieval.export`.

One graph per modality: a two-stream model routes each image by its modality code, which an exported graph
cannot keep, so each graph is ``model.extract(images, modality)`` with the modality fixed. ``--modality
both`` also writes the name the user gave as one graph holding both branches (outputs
``features_visible`` and ``features_infrared``, every image through both); given that name, vireid runs the
one-branch graphs beside it when they are there (half the work), else the two-output graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vireid.data.records import MODALITIES
from vireid.errors import VireidError
from vireid.models.base import modality_codes

GRAPH_FORMAT = "vireid-onnx-features"
EXPORT_MODALITIES = (*MODALITIES, "both")
#: Modality codes each graph serves (the derived view of a visible image goes through the visible graph).
GRAPH_CODES = {"visible": (0, 2), "infrared": (1,)}


class ExportError(VireidError):
    """An export failed, an exported graph cannot be read, or it does not reproduce the PyTorch features."""


#: Output of a one-branch graph, and of each branch of the two-output graph (``--modality both``).
ONNX_OUTPUT = "features"
BRANCH_OUTPUTS = {m: f"{ONNX_OUTPUT}_{m}" for m in MODALITIES}


def onnx_output_paths(out: str | Path, modality: str) -> dict[str, Path]:
    """Where :func:`export_onnx` writes: ``out`` itself for one modality; for ``both``, ``out`` (the
    two-output graph, key ``"both"``) and ``<stem>_visible<suffix>`` / ``<stem>_infrared<suffix>`` beside it."""
    if modality not in EXPORT_MODALITIES:
        raise ValueError(f"modality must be one of {'|'.join(EXPORT_MODALITIES)}, got {modality!r}")
    p = Path(out).expanduser()
    if modality != "both":
        return {modality: p}
    suffix = p.suffix or ".onnx"
    return {**{m: p.with_name(f"{p.stem}_{m}{suffix}") for m in MODALITIES}, "both": p.with_suffix(suffix)}


def resolve_onnx_paths(paths: str | Path | Sequence[str | Path]) -> dict[str, Path]:
    """Graphs by modality from one or more paths (each graph's modality is read from its metadata). The
    two-output graph of ``--modality both`` serves both modalities, unless its one-branch siblings
    ``<stem>_visible`` / ``<stem>_infrared`` are there (they run half the work); a missing path whose
    siblings exist stands for them (exports of earlier versions)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: dict[str, Path] = {}
    for item in items:
        p = Path(item).expanduser()
        siblings = [q for m, q in onnx_output_paths(p, "both").items() if m != "both" and q.is_file()]
        if p.is_file() and read_onnx_metadata(p)["modality"] == "both":
            candidates = siblings or [p]
        else:
            candidates = [p] if p.is_file() else siblings
        if not candidates:
            raise ExportError(f"{p}: ONNX graph does not exist (nor {p.stem}_visible / {p.stem}_infrared next to it); "
                              "write it with 'vireid export'")
        for c in candidates:
            modality = read_onnx_metadata(c)["modality"]
            for m in (MODALITIES if modality == "both" else (modality,)):
                if m in out and out[m] != c:
                    raise ExportError(f"two {m} graphs given: {out[m]} and {c}")
                out[m] = c
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The vireid metadata of an exported graph: ``modality``, ``fingerprint``, ``input_size`` [H, W],
    ``feature_dim``, ``model``, ``arch``, ``checkpoint``, ``config`` and ``vireid_version``."""
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf decode errors, missing files
        raise ExportError(f"{p}: cannot be read as an ONNX graph ({type(exc).__name__}: {exc})") from None
    props = {prop.key: prop.value for prop in model.metadata_props}
    if props.get("vireid_format") != GRAPH_FORMAT:
        raise ExportError(f"{p}: not a vireid feature graph (no vireid metadata; export it with 'vireid export')")
    try:
        return {
            "modality": props["vireid_modality"],
            "fingerprint": props["vireid_fingerprint"],
            "input_size": [int(props["vireid_input_height"]), int(props["vireid_input_width"])],
            "feature_dim": int(props["vireid_feature_dim"]),
            "model": props.get("vireid_model"),
            "arch": props.get("vireid_arch"),
            "checkpoint": props.get("vireid_checkpoint") or None,
            "config": props.get("vireid_config"),
            "vireid_version": props.get("vireid_version"),
        }
    except (KeyError, ValueError) as exc:
        raise ExportError(f"{p}: incomplete vireid metadata ({exc})") from None


def ort_session(path: Path, device: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise VireidError(f"{path}: ONNX Runtime cannot load the graph ({type(exc).__name__}: {exc})") from exc


class OnnxGraphs:
    """The per-modality graphs of one exported model, loaded in ONNX Runtime.

    Args:
        graphs: path by modality (``visible`` and/or ``infrared``); every graph must carry the metadata of
            the same model (fingerprint).
        device: ``cuda...`` uses ONNX Runtime's CUDA provider when it is installed, else the CPU.
    """

    def __init__(self, graphs: Mapping[str, str | Path], *, device: str = "cpu"):
        if not graphs:
            raise ValueError("no ONNX graph given")
        metas = {m: read_onnx_metadata(p) for m, p in graphs.items()}
        fingerprints = {meta["fingerprint"] for meta in metas.values()}
        if len(fingerprints) != 1:
            raise VireidError("the ONNX graphs were exported from different models: "
                              + ", ".join(f"{graphs[m]} ({meta['fingerprint'][:12]})" for m, meta in metas.items()))
        first = next(iter(metas.values()))
        self.fingerprint: str = first["fingerprint"]
        self.input_size = (int(first["input_size"][0]), int(first["input_size"][1]))
        self.graphs = {m: Path(p) for m, p in graphs.items()}
        self.metadata = metas
        loaded: dict[Path, Any] = {}  # the two-output graph serves both modalities from one session
        self.sessions = {}
        for m, p in self.graphs.items():
            if p not in loaded:
                loaded[p] = ort_session(p, device)
            self.sessions[m] = loaded[p]
        #: the output each modality reads: its branch's of the two-output graph, else the graph's one output
        self.outputs = {}
        for m, session in self.sessions.items():
            names = [o.name for o in session.get_outputs()]
            self.outputs[m] = BRANCH_OUTPUTS[m] if BRANCH_OUTPUTS[m] in names else names[0]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.sessions)

    def run(self, images: np.ndarray, modality: str) -> np.ndarray:
        """Raw features ``[N, D]`` of a float32 batch ``[N, 3, H, W]`` in [0, 1] through one graph."""
        session = self.sessions[modality]
        return session.run([self.outputs[modality]], {session.get_inputs()[0].name: images})[0]


class OnnxReIDModel(nn.Module):
    """``extract(images, modality)`` of :class:`~vireid.models.base.ReIDModel`, run by ONNX Runtime on the
    graphs of :func:`vireid.retrieval.export.export_onnx` (one per modality). Inference only."""

    def __init__(self, graphs: OnnxGraphs):
        super().__init__()
        self.graphs = graphs

    @classmethod
    def from_paths(cls, paths: str | Path | Sequence[str | Path], *, device: str = "cpu") -> OnnxReIDModel:
        return cls(OnnxGraphs(resolve_onnx_paths(paths), device=device))

    def forward(self, batch: Any) -> Any:
        raise TypeError("an exported ONNX model is for inference only: use extract(images, modality)")

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        codes = modality_codes(modality, images.shape[0], images.device).cpu()
        out: torch.Tensor | None = None
        for name, graph_codes in GRAPH_CODES.items():
            mask = torch.isin(codes, torch.tensor(graph_codes))
            if not bool(mask.any()):
                continue
            if name not in self.graphs.sessions:
                raise VireidError(f"no {name} ONNX graph given (have: {', '.join(self.graphs.modalities)}); "
                                  "export both with 'vireid export --modality both'")
            batch = images.detach().cpu()[mask].numpy().astype(np.float32)
            feats = torch.from_numpy(np.asarray(self.graphs.run(batch, name)))
            if out is None:
                out = torch.zeros(images.shape[0], feats.shape[1], dtype=feats.dtype)
            out[mask] = feats
        assert out is not None  # images.shape[0] >= 1 and every code maps to a graph
        return out
