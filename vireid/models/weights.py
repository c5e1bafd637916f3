"""Where a network's weights come from: pretrained weight files (the ``model.pretrained=/path`` of every
backbone), and no random initialisation for a network whose every weight is loaded next."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vireid.errors import CheckpointError

logger = logging.getLogger(__name__)

#: A weight file must hold at least this fraction of a backbone's tensors to be loaded.
MIN_MATCHED_FRACTION = 0.9


@dataclass
class WeightLoadReport:
    """What loading a weight file into a backbone did: counts and the keys that did not match."""

    source: str
    matched: int
    expected: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


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


def load_fitting_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    *,
    source: str,
    what: str,
    expected_file: str,
    counted: Iterable[str] | None = None,
    mismatched: Iterable[str] = (),
    check_shape: Callable[[str], bool] = lambda key: True,
    ignore_unexpected: Callable[[str], bool] = lambda key: False,
) -> WeightLoadReport:
    """Load the tensors of ``state`` that ``module`` owns (``own``: its state dict, filtered), never
    silently: a tensor of the wrong shape (``check_shape`` keys, plus the caller's ``mismatched``
    lines), or fewer than :data:`MIN_MATCHED_FRACTION` of the ``counted`` keys found, raises
    :class:`CheckpointError` naming ``source``; missing and unexpected keys are logged and reported.
    ``what`` names the receiving backbone and ``expected_file`` the kind of file it takes."""
    bad = list(mismatched) + [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and check_shape(k) and state[k].shape != v.shape
    ]
    if bad:
        shown = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise CheckpointError(f"{source}: {len(bad)} tensors do not fit {what} (is it a weight file of another "
                              f"architecture, variant or patch size?): {shown}")
    counted = list(own) if counted is None else list(counted)
    missing = [k for k in counted if k not in state]
    unexpected = sorted(k for k in state if k not in own and not ignore_unexpected(k))
    matched = len(counted) - len(missing)
    if matched < MIN_MATCHED_FRACTION * len(counted):
        raise CheckpointError(f"{source}: only {matched} of {what}'s {len(counted)} tensors are in the file "
                              f"(missing e.g. {', '.join(missing[:3])}); expected {expected_file}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    if missing:
        logger.warning("%s: %d tensors of %s missing, left at random init: %s", source, len(missing), what, missing)
    if unexpected:
        logger.warning("%s: %d unexpected tensors ignored: %s", source, len(unexpected), unexpected)
    logger.info("loaded %d/%d tensors of %s from %s", matched, len(counted), what, source)
    return WeightLoadReport(source=source, matched=matched, expected=len(counted), missing=missing,
                            unexpected=unexpected)


#: The initialisers of ``torch.nn.init`` that module constructors call (torch's layers, torchvision's ResNet,
#: vireid's modules).
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_")


class _SkippedInitialisation:
    """While one or more threads are inside :func:`initialisation_skipped`, ``torch.nn.init``'s initialisers are
    wrappers that skip in those threads and initialise as usual in every other; the originals are back once the
    last thread has left."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0  # threads (and nested contexts) inside
        self.originals: dict[str, Callable] = {}
        self.here = threading.local()

    def wrap(self, original: Callable) -> Callable:
        def initialise_or_skip(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            return tensor if getattr(self.here, "skipping", False) else original(tensor, *args, **kwargs)

        return initialise_or_skip

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.inside == 0:
                self.originals = {name: getattr(nn.init, name) for name in _INITIALISERS}
                for name, original in self.originals.items():
                    setattr(nn.init, name, self.wrap(original))
            self.inside += 1
        before, self.here.skipping = getattr(self.here, "skipping", False), True
        try:
            yield
        finally:
            self.here.skipping = before
            with self.lock:
                self.inside -= 1
                if self.inside == 0:
                    for name, original in self.originals.items():
                        setattr(nn.init, name, original)


_skipped_initialisation = _SkippedInitialisation()


def initialisation_skipped() -> AbstractContextManager[None]:
    """Inside, ``torch.nn.init``'s initialisers leave their tensor as it is: a network built here holds
    uninitialised memory until a state dict is loaded into it *strictly* (every parameter and persistent
    buffer overwritten). Drawing the random start of a network whose weights are loaded next is most of the
    time it takes to build (ResNet layers initialise twice: the layer's own start, then the ResNet's). A network
    initialised through ``torch.nn.init`` only (the ResNet models) then leaves the global random state as it
    found it; timm's CrossViT still draws its own truncated normals. Only the calling thread skips: a network
    built meanwhile in another thread is initialised as usual."""
    return _skipped_initialisation()
