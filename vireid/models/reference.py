"""Checkpoints of the AGW/CAJ reference code (mangye16/Cross-Modal-Re-ID-baseline) mapped onto vireid's
AGW/CAJ model.

Most published VI-ReID checkpoints (AGW, CAJ, and the methods built on that code) are ``.t``/``.pth``
files holding ``{'net': state_dict, 'epoch': ..., ...}`` (or a bare state dict, possibly with
DataParallel's ``module.`` prefix) of the reference ``embed_net``:

- ``visible_module.visible.*`` / ``thermal_module.thermal.*``: a whole ResNet-50 each, of which only
  ``conv1`` and ``bn1`` (the stem) are used;
- ``base_resnet.base.*``: a ResNet-50 of which ``layer1..layer4`` are used (shared by both modalities);
- ``NL_1..NL_4.<i>.{g.0, theta, phi, W.0, W.1}.*``: non-local blocks after the last blocks of a stage
  (the published AGW/CAJ place 2 in layer2 and 3 in layer3); their ``inter_channels`` is 1 in the
  reference code (``reduc_ratio // reduc_ratio``), read here from the weights;
- ``bottleneck.*`` (BatchNorm1d, BNNeck) and ``classifier.weight`` (its rows give the class count).

:func:`convert_reference_state` returns the vireid state dict of the same network together with a
:class:`ReferenceReport` of the geometry found and of the keys used and ignored. A file that fits
neither format, or whose tensors do not fit the expected layout, is a :class:`CheckpointError` naming
the file and the offending keys: never a partial load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from vireid.errors import CheckpointError

#: How ``source_format`` names a converted reference checkpoint.
REFERENCE_FORMAT = "agw-caj-reference"
#: vireid models whose network is the reference ``embed_net``.
REFERENCE_MODELS = ("agw", "caj")
#: ``model.*`` keys whose values a reference checkpoint's weights determine.
REFERENCE_GEOMETRY_KEYS = ("arch", "specific_stages", "non_local", "non_local_inter_channels_one")

_STEM = {"visible_module.visible.": "backbone.visible.stem.", "thermal_module.thermal.": "backbone.infrared.stem."}
_STEM_PARTS = {"conv1.": "0.", "bn1.": "1."}
_NON_LOCAL = re.compile(r"^NL_(\d)\.(\d+)\.(g\.0|theta|phi|W\.0|W\.1)\.(.+)$")


@dataclass
class ReferenceReport:
    """What a reference checkpoint holds and how it was mapped."""

    num_classes: int
    non_local: bool
    inter_channels_one: bool
    non_local_blocks: dict[int, int]
    used: int
    ignored: list[str] = field(default_factory=list)
    epoch: Any = None

    def model_overrides(self) -> dict[str, Any]:
        """The ``model.*`` values the reference network has (detected from its weights)."""
        values = ("resnet50", 0, self.non_local, self.inter_channels_one)
        return dict(zip(REFERENCE_GEOMETRY_KEYS, values))

    def summary(self) -> str:
        nl = (f"non-local {self.non_local_blocks} with inter_channels "
              f"{'1 (the reference code)' if self.inter_channels_one else 'C/2'}" if self.non_local else "no non-local")
        groups = sorted({".".join(k.split(".")[:3]) for k in self.ignored})
        return (f"reference embed_net: {self.num_classes} classes, {nl}; {self.used} tensors used, "
                f"{len(self.ignored)} ignored (unused layers of the modality stems and of the shared ResNet: "
                f"{', '.join(groups)})")


def reference_state(obj: Any) -> dict[str, torch.Tensor] | None:
    """The reference ``embed_net`` state dict inside a loaded file (``{'net': ...}`` or bare, with or
    without ``module.``), or None when ``obj`` is not one."""
    if isinstance(obj, Mapping) and isinstance(obj.get("net"), Mapping):
        obj = obj["net"]
    if not isinstance(obj, Mapping) or not obj:
        return None
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    if not any(k.startswith("base_resnet.base.") for k in state):
        return None
    return state


def convert_reference_state(state: Mapping[str, Any], *, source: str, epoch: Any = None
                            ) -> tuple[dict[str, torch.Tensor], ReferenceReport]:
    """Map a reference ``embed_net`` state dict onto vireid's AGW/CAJ keys (see the module docstring)."""
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source}: not a state dict of tensors (e.g. {', '.join(bad[:3])})")
    if "classifier.weight" not in state or state["classifier.weight"].dim() != 2:
        raise CheckpointError(f"{source}: reference checkpoint without a 2-d 'classifier.weight'; expected the "
                              "AGW/CAJ embed_net (keys visible_module.*, thermal_module.*, base_resnet.*, "
                              "bottleneck.*, classifier.weight)")
    if "base_resnet.base.layer1.0.conv3.weight" not in state:
        raise CheckpointError(f"{source}: the shared ResNet has no bottleneck blocks (no "
                              "base_resnet.base.layer1.0.conv3.weight): the reference embed_net is a ResNet-50")
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    blocks: dict[int, set[int]] = {}
    inter: dict[int, set[int]] = {}
    for key, value in state.items():
        new = _map_key(key)
        if new is None:
            if _is_unused(key):
                ignored.append(key)
            else:
                unknown.append(key)
            continue
        out[new] = value
        m = _NON_LOCAL.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
            if m.group(3) == "g.0" and m.group(4) == "weight":
                inter.setdefault(int(m.group(1)), set()).add(int(value.shape[0]))
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} keys fit neither vireid's AGW/CAJ nor the reference "
                              f"embed_net: {', '.join(sorted(unknown)[:10])}")
    missing = [k for k in ("visible_module.visible.conv1.weight", "thermal_module.thermal.conv1.weight",
                           "bottleneck.weight") if k not in state]
    if missing:
        raise CheckpointError(f"{source}: reference checkpoint lacks {', '.join(missing)}")
    counts = {stage: len(idx) for stage, idx in sorted(blocks.items())}
    channels = {1: 256, 2: 512, 3: 1024, 4: 2048}
    widths = {w for ws in inter.values() for w in ws}
    inter_one = widths == {1}
    if widths and not inter_one and any(ws != {channels[st] // 2} for st, ws in inter.items()):
        found = ", ".join(f"layer{st}: {sorted(ws)}" for st, ws in sorted(inter.items()))
        raise CheckpointError(f"{source}: non-local inter_channels ({found}) are neither all 1 (the reference "
                              "code) nor all C/2 of their stage (different widths cannot be mapped)")
    for stage, n in counts.items():
        expected = {1: 0, 2: 2, 3: 3, 4: 0}[stage]
        if n != expected:
            raise CheckpointError(f"{source}: {n} non-local blocks in layer{stage} (NL_{stage}.*); vireid places "
                                  f"AGW's 2 in layer2 and 3 in layer3")
    report = ReferenceReport(num_classes=int(state["classifier.weight"].shape[0]), non_local=bool(counts),
                             inter_channels_one=inter_one, non_local_blocks=counts, used=len(out),
                             ignored=sorted(ignored), epoch=epoch)
    return out, report


def _map_key(key: str) -> str | None:
    for prefix, target in _STEM.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for part, index in _STEM_PARTS.items():
                if rest.startswith(part):
                    return target + index + rest[len(part):]
            return None
    if key.startswith("base_resnet.base.layer"):
        return "backbone.shared." + key[len("base_resnet.base."):]
    m = _NON_LOCAL.match(key)
    if m:
        stage, block, part, rest = m.groups()
        part = "g" if part == "g.0" else part
        return f"backbone.non_local.layer{stage}.{block}.{part}.{rest}"
    if key.startswith("bottleneck."):
        return "neck.bn." + key[len("bottleneck."):]
    if key == "classifier.weight":
        return "neck.classifier.weight"
    return None


def _is_unused(key: str) -> bool:
    """Tensors the reference network holds but never uses: the stems' ResNets beyond conv1/bn1, the
    shared ResNet's own stem and every ``fc``."""
    for prefix in _STEM:
        if key.startswith(prefix):
            return True
    return key.startswith(("base_resnet.base.conv1.", "base_resnet.base.bn1.", "base_resnet.base.fc."))
