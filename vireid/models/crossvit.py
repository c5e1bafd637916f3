"""CrossViT multi-scale encoder for re-id (FAFE §1.2, eqs 1-8), built on timm's CrossViT.

The encoder is a timm :class:`timm.models.crossvit.CrossVit` (its ``PatchEmbed``, class tokens,
position embeddings, ``MultiScaleBlock`` stack with ``CrossAttentionBlock`` fusion, final norms),
adapted to re-id inputs; vireid writes only the forward pass around timm's modules:

- eq 1: each branch embeds its patches, prepends its CLS token and adds its position embedding,
  ``z0 = [x_cls; x_patch] + E_pos``; eqs 2-3: pre-norm MSA + MLP blocks (timm ``Block``);
- eqs 5-8: in each multi-scale encoder (timm ``MultiScaleBlock``) each branch runs its blocks, then its
  CLS token is projected to the other branch's width (``P``), attends over itself and the other
  branch's patch tokens (q from the CLS only, eq 6), ``z_cls = P(I_cls) + CrossA(LN[z])`` (eq 7), and is
  projected back (``BP``) and re-joined with **its own** branch's patch tokens (as the original CrossViT;
  eq 8 writes the other branch's, see docs/paper-notes.md);
- "multi-scale residual connections" (§1.2, not specified further): with ``multiscale_residual`` the
  input of each multi-scale encoder is added to its output, per branch (all tokens);
- eq 4: the final LayerNorm of each branch. The encoder returns both branches' token sequences.

Branch 0 is the **fine** branch (small patches, fewer blocks, narrower), branch 1 the **coarse** one
(large patches, more blocks, wider), as in timm's variants.

Re-id geometry (inputs are not square, e.g. 288 x 144): the fine branch sees the image at its input
size, which its patch size must divide (288 x 144, patch 12: a 24 x 12 token grid); the coarse branch
sees the image resized (bicubic, timm's ``scale_image``) to ``coarse_scale`` times the input size,
floored to a multiple of its patch (timm's ImageNet models use 224/240: 288 x 144 -> 256 x 128,
patch 16: a 16 x 8 grid). See :func:`branch_geometry`.

Weights: ``pretrained="imagenet"`` reads timm's ImageNet weights of the variant from the Hugging Face
cache, downloading them when online (offline without a cached copy: :class:`CheckpointError`); a path
reads a timm CrossViT state dict (``.safetensors`` or a torch file) of the same variant. Position
embeddings are resampled to the re-id grids with ``timm.layers.resample_abs_pos_embed``; the
classifier (``head.*``) is ignored; missing / unexpected keys are reported, and a file whose tensors do
not fit, or which provides fewer than 90% of the encoder's tensors, raises :class:`CheckpointError`
naming it.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vireid.errors import CheckpointError, ConfigError
from vireid.models.weights import WeightLoadReport, load_fitting_weights, read_state_dict

logger = logging.getLogger(__name__)

#: vireid's own small CrossViT for CPU tests and the demo (no ImageNet weights): timm ``CrossVit``
#: keyword arguments. Two multi-scale encoders; fine branch 1 block, coarse branch 2 blocks per encoder.
LOCAL_VARIANTS: dict[str, dict] = {
    "crossvit_micro": dict(
        patch_size=(8, 16),
        embed_dim=(48, 96),
        depth=((1, 2, 0), (1, 2, 0)),
        num_heads=(3, 3),
        mlp_ratio=(2.0, 2.0, 1.0),
    ),
}

#: timm's coarse/fine image ratio of its ImageNet CrossViT models (224 / 240).
TIMM_COARSE_SCALE = 224 / 240

BRANCH_NAMES = ("fine", "coarse")


def crossvit_names() -> list[str]:
    """The CrossViT variants ``model.arch`` may name: timm's ``crossvit_*`` models and vireid's own."""
    import timm

    return sorted(set(timm.list_models("crossvit_*")) | set(LOCAL_VARIANTS))


def is_crossvit(arch: str) -> bool:
    return str(arch).startswith("crossvit")


@dataclass(frozen=True)
class BranchGeometry:
    """Input size ``(h, w)`` a branch embeds, its patch size and its token ``grid`` ``(h/p, w/p)``."""

    name: str
    patch: int
    input_size: tuple[int, int]
    grid: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


def branch_geometry(
    img_size: Sequence[int], patch_size: Sequence[int], *, coarse_scale: float = TIMM_COARSE_SCALE
) -> tuple[BranchGeometry, BranchGeometry]:
    """The fine and coarse branches' input sizes and token grids for re-id images of ``img_size``.

    Fine: the image itself; its patch must divide height and width. Coarse: ``coarse_scale * (h, w)``
    floored to multiples of the coarse patch (at least one patch each way). A size that does not fit
    raises :class:`ConfigError` naming the keys.
    """
    h, w = (int(v) for v in img_size)
    fine_p, coarse_p = (int(p) for p in patch_size)
    if fine_p < 1 or coarse_p < 1:
        raise ConfigError(f"model.crossvit_patch_size: patch sizes must be positive, got {[fine_p, coarse_p]}")
    if h % fine_p or w % fine_p:
        raise ConfigError(
            f"data.height x data.width = {h} x {w} is not divisible by the fine CrossViT patch {fine_p}: "
            f"use multiples of {fine_p} (e.g. {fine_p * max(1, round(h / fine_p))} x "
            f"{fine_p * max(1, round(w / fine_p))}) or set model.crossvit_patch_size"
        )
    if not 0 < coarse_scale <= 4:
        raise ConfigError(f"model.crossvit_coarse_scale must be in (0, 4], got {coarse_scale}")
    ch = int(math.floor(coarse_scale * h / coarse_p + 1e-6)) * coarse_p
    cw = int(math.floor(coarse_scale * w / coarse_p + 1e-6)) * coarse_p
    if ch < coarse_p or cw < coarse_p:
        raise ConfigError(
            f"the coarse CrossViT branch gets {coarse_scale:.4g} x ({h} x {w}), smaller than one {coarse_p}-pixel "
            "patch: use larger images, a larger model.crossvit_coarse_scale or a smaller coarse patch"
        )
    return (
        BranchGeometry("fine", fine_p, (h, w), (h // fine_p, w // fine_p)),
        BranchGeometry("coarse", coarse_p, (ch, cw), (ch // coarse_p, cw // coarse_p)),
    )


def _build_timm_crossvit(arch: str, *, patch_size: Sequence[int] | None, img_size: tuple[int, int],
                         drop_path_rate: float) -> nn.Module:
    import timm
    from timm.models.crossvit import CrossVit

    kwargs: dict = dict(num_classes=0, img_size=img_size, drop_path_rate=float(drop_path_rate))
    if patch_size:
        kwargs["patch_size"] = [int(p) for p in patch_size]
    if arch in LOCAL_VARIANTS:
        return CrossVit(**{**LOCAL_VARIANTS[arch], **kwargs})
    if arch not in crossvit_names():
        raise ConfigError(f"model.arch: unknown CrossViT variant {arch!r}; expected one of {', '.join(crossvit_names())}")
    return timm.create_model(arch, pretrained=False, **kwargs)


@dataclass
class CrossViTLoadReport(WeightLoadReport):
    """A :class:`WeightLoadReport` that also lists the position embeddings resampled to new grids."""

    resampled: list[str] = field(default_factory=list)


class CrossViTEncoder(nn.Module):
    """Two-branch CrossViT encoder for re-id images: ``forward(images) -> [fine tokens, coarse tokens]``.

    ``images`` are normalised ``[N, 3, H, W]`` with ``(H, W) == img_size``; each output is
    ``[N, 1 + h_b * w_b, d_b]`` (CLS token first) after the branch's final LayerNorm.

    Args:
        arch: a timm CrossViT name (``crossvit_small_240``, ``crossvit_9_240``, ``crossvit_tiny_240``, ...)
            or ``crossvit_micro`` (vireid's CPU-sized variant, no ImageNet weights).
        img_size: re-id input ``(height, width)``.
        patch_size: ``(fine, coarse)`` patch sizes; ``None`` keeps the variant's (timm: 12 and 16).
        coarse_scale: the coarse branch's input size relative to the image (see :func:`branch_geometry`).
        multiscale_residual: add each multi-scale encoder's input to its output, per branch.
        drop_path_rate: stochastic depth of the transformer blocks (timm's rule).
        pretrained: ``"imagenet"``, a weight file path, or ``"none"``.
    """

    def __init__(
        self,
        *,
        arch: str = "crossvit_small_240",
        img_size: Sequence[int] = (288, 144),
        patch_size: Sequence[int] | None = None,
        coarse_scale: float = TIMM_COARSE_SCALE,
        multiscale_residual: bool = True,
        drop_path_rate: float = 0.0,
        pretrained: str = "none",
    ) -> None:
        super().__init__()
        from timm.layers import trunc_normal_

        if patch_size is not None and len(patch_size) not in (0, 2):
            raise ConfigError(f"model.crossvit_patch_size: expected [fine, coarse] or [], got {list(patch_size)}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {drop_path_rate}")
        img_size = (int(img_size[0]), int(img_size[1]))
        self.arch = arch
        self.crossvit = _build_timm_crossvit(arch, patch_size=patch_size, img_size=img_size, drop_path_rate=drop_path_rate)
        vit = self.crossvit
        if vit.num_branches != 2:
            raise ConfigError(f"model.arch={arch!r}: FAFE expects a two-branch CrossViT, got {vit.num_branches} branches")
        patches = tuple(int(pe.patch_size[0]) for pe in vit.patch_embed)
        self.geometry = branch_geometry(img_size, patches, coarse_scale=coarse_scale)
        self.img_size = img_size
        self.embed_dims: tuple[int, int] = (int(vit.embed_dim[0]), int(vit.embed_dim[1]))
        self.multiscale_residual = bool(multiscale_residual)
        # fit timm's patch embeddings and position embeddings to the re-id branch sizes
        vit.img_size_scaled = [g.input_size for g in self.geometry]
        for i, geo in enumerate(self.geometry):
            pe = vit.patch_embed[i]
            pe.img_size = geo.input_size
            pe.num_patches = geo.num_patches
            pos = nn.Parameter(torch.zeros(1, 1 + geo.num_patches, self.embed_dims[i]))
            trunc_normal_(pos, std=0.02)
            setattr(vit, f"pos_embed_{i}", pos)
            with torch.no_grad():  # the patch embedding really yields that grid (multi-conv stems included)
                out = pe.proj(torch.zeros(1, 3, *geo.input_size))
            if tuple(out.shape[-2:]) != geo.grid:
                raise ConfigError(
                    f"model.arch={arch!r}: the {geo.name} patch embedding maps {geo.input_size} to a "
                    f"{tuple(out.shape[-2:])} grid, expected {geo.grid}; choose another input size"
                )
        self.pretrained_report: CrossViTLoadReport | None = None
        if pretrained == "imagenet":
            state, source = imagenet_state_dict(arch)
            self.pretrained_report = load_crossvit_weights(self, state, source=source)
        elif pretrained not in ("none", "", None):
            path = Path(pretrained).expanduser()
            self.pretrained_report = load_crossvit_weights(self, read_state_dict(path, expected=CROSSVIT_FILE), source=str(path))

    # -- geometry ----------------------------------------------------------------------------------
    def grid(self, branch: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` of ``branch`` (0 fine, 1 coarse)."""
        return self.geometry[branch].grid

    def position_embedding(self, branch: int) -> nn.Parameter:
        return getattr(self.crossvit, f"pos_embed_{branch}")

    def patch_map(self, tokens: torch.Tensor, branch: int) -> torch.Tensor:
        """Patch tokens of ``branch`` (CLS dropped) as a feature map ``[N, d_b, h_b, w_b]``."""
        h, w = self.grid(branch)
        n, length, d = tokens.shape
        if length != 1 + h * w:
            raise ValueError(f"{BRANCH_NAMES[branch]} branch: expected {1 + h * w} tokens, got {length}")
        return tokens[:, 1:].transpose(1, 2).reshape(n, d, h, w)

    # -- forward -----------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Eq 1 per branch: ``[x_cls; x_patch] + E_pos`` (the coarse branch on the resized image)."""
        if tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(
                f"CrossViTEncoder built for {self.img_size[0]} x {self.img_size[1]} images, got "
                f"{images.shape[-2]} x {images.shape[-1]}"
            )
        vit = self.crossvit
        out = []
        for i, (pe, geo) in enumerate(zip(vit.patch_embed, self.geometry)):
            # timm's scale_image: bicubic resize of the coarse branch's input
            x = images if geo.input_size == self.img_size else F.interpolate(
                images, size=geo.input_size, mode="bicubic", align_corners=False)
            x = pe(x)
            cls = getattr(vit, f"cls_token_{i}").expand(x.shape[0], -1, -1)
            x = torch.cat((cls, x), dim=1) + self.position_embedding(i)
            out.append(vit.pos_drop(x))
        return out

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        xs = self.embed(images)
        for block in self.crossvit.blocks:  # L multi-scale encoders (eqs 2-3, 5-8)
            ys = block(xs)
            xs = [y + x for y, x in zip(ys, xs)] if self.multiscale_residual else ys
        return [norm(x) for norm, x in zip(self.crossvit.norm, xs)]  # eq 4


CROSSVIT_FILE = "the path of a timm CrossViT state dict, .safetensors or .pth"

# -- weights -------------------------------------------------------------------------------------
def _online(host: str = "huggingface.co") -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def imagenet_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """timm's ImageNet weights of CrossViT ``arch`` from the Hugging Face cache, or downloaded when
    online; returns ``(state_dict, source)``. Offline without a cached copy: :class:`CheckpointError`."""
    if arch in LOCAL_VARIANTS:
        raise CheckpointError(
            f"model.pretrained=imagenet: {arch} is vireid's own small variant and has no ImageNet weights; "
            "use model.pretrained=none or a timm variant (e.g. crossvit_small_240)"
        )
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        raise CheckpointError(f"model.pretrained=imagenet: timm lists no ImageNet weights for {arch}")
    filenames = ("model.safetensors", "pytorch_model.bin")
    cached = next((p for f in filenames if isinstance(p := try_to_load_from_cache(repo, f), str)), None)
    path: str | None = cached
    error = None
    if path is None and _online():
        for name in filenames:
            try:
                path = hf_hub_download(repo, name)
                break
            except Exception as exc:  # missing file, HTTP error, interrupted download
                error = exc
    if path is None:
        reason = f"download failed ({type(error).__name__}: {error})" if error else "no network connection"
        raise CheckpointError(
            f"model.pretrained=imagenet: timm's ImageNet weights of {arch} (Hugging Face repo {repo}) are not in "
            f"the local cache and cannot be downloaded: {reason}. Download {repo}/model.safetensors on a "
            "connected machine and set model.pretrained=/path/to/model.safetensors, or use model.pretrained=none."
        )
    return read_state_dict(path, expected=CROSSVIT_FILE), f"{path} (timm {arch} ImageNet weights)"


def _normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for prefix in ("backbone.crossvit.", "crossvit."):
            key = key.removeprefix(prefix)
        if key.startswith(("pos_embed.", "cls_token.")):  # the original CrossViT release's names
            key = key.replace(".", "_", 1)
        out[key] = value
    return out


def load_crossvit_weights(
    encoder: CrossViTEncoder, state_dict: Mapping[str, torch.Tensor], *, source: str
) -> CrossViTLoadReport:
    """Copy a timm CrossViT state dict into ``encoder``, resampling position embeddings to its grids.

    A position embedding whose token count differs is resampled from its square grid (ImageNet
    checkpoints) with ``resample_abs_pos_embed(old_size=..., num_prefix_tokens=1)``; any other tensor of
    the wrong shape, an unresolvable grid, or fewer than 90% of the encoder's tensors found raises
    :class:`CheckpointError` naming ``source``. Missing and unexpected keys are logged and returned;
    ``head.*`` (the ImageNet classifier) is ignored.
    """
    from timm.layers import resample_abs_pos_embed

    state = {k: v for k, v in _normalise_keys(state_dict).items() if not k.startswith("head.")}
    own = encoder.crossvit.state_dict()
    own = {k: v for k, v in own.items() if not k.startswith("head.")}
    resampled, mismatched = [], []
    for i in range(2):
        key = f"pos_embed_{i}"
        if key not in state or state[key].shape == own[key].shape:
            continue
        pos = state[key]
        grid = encoder.grid(i)
        n = pos.shape[1] - 1
        side = math.isqrt(max(n, 0))
        if pos.dim() != 3 or pos.shape[2] != own[key].shape[2] or side * side != n:
            mismatched.append(f"{key}: file {tuple(pos.shape)} vs model {tuple(own[key].shape)}")
            continue
        state[key] = resample_abs_pos_embed(pos.float(), new_size=list(grid), old_size=[side, side],
                                            num_prefix_tokens=1).to(pos.dtype)
        resampled.append(f"{key}: {side}x{side} -> {grid[0]}x{grid[1]}")
    report = load_fitting_weights(
        encoder.crossvit, state, own, source=source, what=f"CrossViT {encoder.arch}",
        expected_file=f"a timm {encoder.arch} state dict", mismatched=mismatched,
        check_shape=lambda k: not k.startswith("pos_embed_"),
    )
    for line in resampled:
        logger.info("%s: position embedding %s", source, line)
    return CrossViTLoadReport(**vars(report), resampled=resampled)
