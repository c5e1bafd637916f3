"""ONNX export of a trained model's test-feature extractor, with a parity check against PyTorch.

**One graph per modality.** A two-stream model routes each image by its modality code, and that
routing is data-dependent control flow (``TwoStreamResNet.forward`` branches on the codes), which an
exported graph cannot keep. Each exported graph is therefore ``model.extract(images, modality)`` with
the modality fixed (:class:`FixedModalityExtractor`): ``model_visible.onnx`` runs the visible stem and
``model_infrared.onnx`` the infrared one; the shared layers are stored in each file. Running only the
branch that is needed keeps inference as cheap as in PyTorch. ``--out model.onnx`` with both modalities
also writes ``model.onnx`` itself: one graph with both branches (:class:`BothBranchesExtractor`, outputs
``features_visible`` and ``features_infrared``, every image through both), the single file a deployment can
carry; vireid's commands given ``model.onnx`` run the one-branch graphs beside it when they are there.

Graph interface: input ``images`` float32 ``[batch, 3, H, W]`` in **[0, 1]** (the model normalises its
own input; the batch dimension is dynamic), output ``features`` float32 ``[batch, D]``, L2-normalised
(``model.extract``). The file's metadata (``metadata_props``) records ``vireid_modality``,
``vireid_fingerprint`` (:func:`vireid.retrieval.embed.model_fingerprint`), the input size, the model
name, the checkpoint and the resolved config, so a graph is never used for the wrong modality or
against an index of another model.

Export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which traces
the model; the tracer's warnings about the modality branch (fixed by design) are silenced.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid.data.records import MODALITIES
from vireid.io import write_bytes_atomic
from vireid.models.onnx_model import (  # the read side of the graph format (models floor: the engine's tests use it)
    BRANCH_OUTPUTS,
    GRAPH_FORMAT,
    ONNX_OUTPUT,
    ExportError,
    onnx_output_paths,
    read_onnx_metadata,
)

ONNX_INPUT = "images"
DEFAULT_OPSET = 17
#: Largest accepted |PyTorch - ONNX Runtime| over the features of the parity check.
PARITY_TOLERANCE = 1e-4
@dataclass
class ExportResult:
    """Written graphs by modality and the parity check's max abs difference of each (None: not checked)."""

    paths: dict[str, Path]
    max_abs_diff: dict[str, float | None]


class FixedModalityExtractor(torch.nn.Module):
    """``model.extract(images, modality)`` with ``modality`` fixed: the graph of one branch."""

    def __init__(self, model: torch.nn.Module, modality: str):
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
        self.model = model
        self.modality = modality

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.extract(images, self.modality)


class BothBranchesExtractor(torch.nn.Module):
    """Both fixed-modality extractors in one graph: every image through each branch, one output per branch
    (the single file ``--out NAME.onnx`` names; no data-dependent routing)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.branches = torch.nn.ModuleList(FixedModalityExtractor(model, m) for m in MODALITIES)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(branch(images) for branch in self.branches)


def _trace_to_bytes(module: Any, dummy: Any, opset: int, outputs: Sequence[str] = (ONNX_OUTPUT,)) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            module,
            (dummy,),
            buf,
            input_names=[ONNX_INPUT],
            output_names=list(outputs),
            dynamic_axes={ONNX_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def export_onnx(
    loaded: Any,
    out: str | Path,
    *,
    modality: str = "both",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export the test-feature extractor of ``loaded`` (a :class:`vireid.retrieval.embed.LoadedModel`)
    to ONNX (see the module docstring and :func:`onnx_output_paths` for the file names).

    With ``check`` each graph is run with ONNX Runtime on random batches of 1 and 3 images (the export
    traced 2, so the dynamic batch dimension is exercised) and compared with ``model.extract``; a max
    abs difference above ``tolerance`` raises :class:`ExportError`.
    """
    import onnx

    from vireid import __version__
    from vireid.config import config_to_yaml

    targets = onnx_output_paths(out, modality)
    model = copy.deepcopy(loaded.model).to("cpu").eval()
    h, w = loaded.input_size
    dummy = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    result = ExportResult(paths={}, max_abs_diff={})
    for mod, path in targets.items():
        both = mod == "both"
        module = (BothBranchesExtractor(model) if both else FixedModalityExtractor(model, mod)).eval()
        outputs = [BRANCH_OUTPUTS[m] for m in MODALITIES] if both else [ONNX_OUTPUT]
        with torch.inference_mode():
            dim = int((module(dummy)[0] if both else module(dummy)).shape[1])
        try:
            data = _trace_to_bytes(module, dummy, opset, outputs)
        except Exception as exc:  # the exporter raises many types
            raise ExportError(f"ONNX export of the {mod} branch failed ({type(exc).__name__}: {exc})") from exc
        graph = onnx.load_from_string(data)
        meta = {
            "vireid_format": GRAPH_FORMAT,
            "vireid_modality": mod,
            "vireid_fingerprint": loaded.fingerprint,
            "vireid_input_height": str(h),
            "vireid_input_width": str(w),
            "vireid_feature_dim": str(dim),
            "vireid_model": loaded.name,
            "vireid_arch": loaded.arch,
            "vireid_checkpoint": "" if loaded.checkpoint is None else str(loaded.checkpoint),
            "vireid_config": config_to_yaml(loaded.cfg),
            "vireid_version": __version__,
        }
        del graph.metadata_props[:]
        for k, v in meta.items():
            graph.metadata_props.add(key=k, value=v)
        graph.doc_string = (f"vireid {loaded.name} test features of {mod} images: input {ONNX_INPUT} "
                            f"[batch, 3, {h}, {w}] in [0, 1], output{'s' if both else ''} {', '.join(outputs)} "
                            f"[batch, {dim}] L2-normalised")
        write_bytes_atomic(path, graph.SerializeToString())
        result.paths[mod] = path
        result.max_abs_diff[mod] = None
        if check:
            diff = max(parity_check(model, path, m, input_size=(h, w), output=out)
                       for m, out in zip(MODALITIES if both else (mod,), outputs))
            result.max_abs_diff[mod] = diff
            if not diff <= tolerance:
                raise ExportError(f"{path}: ONNX Runtime features differ from PyTorch by up to {diff:.3g} "
                                  f"(tolerance {tolerance:g})")
    return result


def parity_check(
    model: Any, path: str | Path, modality: str, *, input_size: tuple[int, int],
    batch_sizes: Sequence[int] = (1, 3), seed: int = 0, output: str = ONNX_OUTPUT,
) -> float:
    """Max abs difference between ``model.extract`` and the ONNX graph at ``path`` on random images
    in [0, 1] (one batch of each size in ``batch_sizes``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    model = model.eval()
    for n in batch_sizes:
        x = torch.rand(int(n), 3, *input_size, generator=gen)
        with torch.inference_mode():
            ref = model.extract(x, modality).float().cpu().numpy()
        got = session.run([output], {ONNX_INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {ref.shape} for batch {n}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def describe_graphs(paths: Mapping[str, Path]) -> list[str]:
    """One line per graph: modality, path and metadata summary."""
    lines = []
    for mod, p in paths.items():
        meta = read_onnx_metadata(p)
        lines.append(f"{mod}: {p} (input [batch, 3, {meta['input_size'][0]}, {meta['input_size'][1]}], "
                     f"features [batch, {meta['feature_dim']}], model {meta['fingerprint'][:12]})")
    return lines
