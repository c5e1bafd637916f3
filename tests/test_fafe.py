"""FAFE (paper A): CrossViT encoder geometry and weights, CSA, loss composition, every shipped config
through the engine, ``vireid train``/``test``/``visualize attention`` end to end on synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vireid.cli as cli
from vireid.config import load_config
from vireid.errors import CheckpointError, ConfigError
from vireid.models import FAFE, build_model
from vireid.models.crossvit import CrossViTEncoder, branch_geometry, load_crossvit_weights
from vireid.models.csa import ChannelAttention, ChannelSpatialAttention, SpatialAttention

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    [p for p in REPO.glob("configs/*/fafe*.yaml") if p.parent.name != "_base_"]
    + list(REPO.glob("configs/*/ablations_fafe/*.yaml")),
    key=lambda p: str(p),
)



def micro(**kwargs) -> FAFE:
    args = dict(num_classes=5, arch="crossvit_micro", pretrained="none", img_size=(64, 32),
                crossvit_coarse_scale=1.0, pool="avg")
    args.update(kwargs)
    return FAFE(**args)


def three_view_batch(pids: list[int], size=(64, 32), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(pids)
    return {
        "images": torch.rand(3 * n, 3, *size, generator=g),
        "pids": torch.tensor(pids * 3),
        "modality": torch.tensor([0] * n + [2] * n + [1] * n),
        "camera": torch.ones(3 * n, dtype=torch.long),
    }


# -- geometry -------------------------------------------------------------------------------------
def test_branch_geometry_hand_worked() -> None:
    fine, coarse = branch_geometry((288, 144), (12, 16))  # default scale 224/240
    assert (fine.input_size, fine.grid) == ((288, 144), (24, 12))
    # 288 * 14/15 = 268.8 -> 256 = 16 * 16; 144 * 14/15 = 134.4 -> 128 = 8 * 16
    assert (coarse.input_size, coarse.grid) == ((256, 128), (16, 8))
    fine, coarse = branch_geometry((96, 48), (8, 16), coarse_scale=1.0)
    assert (fine.grid, coarse.input_size, coarse.grid) == ((12, 6), (96, 48), (6, 3))
    with pytest.raises(ConfigError, match="not divisible by the fine CrossViT patch 12"):
        branch_geometry((100, 50), (12, 16))
    with pytest.raises(ConfigError, match="smaller than one 16-pixel patch"):
        branch_geometry((24, 12), (12, 16))


_ENCODERS: dict = {}


def encoder_of(cfg) -> CrossViTEncoder:
    m = cfg.model
    key = (m.arch, cfg.data.height, cfg.data.width, tuple(m.crossvit_patch_size), m.crossvit_coarse_scale)
    if key not in _ENCODERS:  # on the meta device: shapes only, no memory or compute
        with torch.device("meta"):
            _ENCODERS[key] = CrossViTEncoder(arch=m.arch, img_size=(cfg.data.height, cfg.data.width),
                                             patch_size=list(m.crossvit_patch_size) or None,
                                             coarse_scale=m.crossvit_coarse_scale, pretrained="none")
    return _ENCODERS[key]


def test_every_shipped_config_is_found() -> None:
    names = {str(p.relative_to(REPO)) for p in CONFIGS}
    for ds in ("sysu", "regdb", "llcm"):
        assert {f"configs/{ds}/fafe.yaml", f"configs/{ds}/fafe_paper.yaml", f"configs/{ds}/fafe_tiny.yaml"} <= names
    assert len([n for n in names if n.startswith("configs/sysu/ablations_fafe/table3_")]) == 7
    assert len([n for n in names if n.startswith("configs/sysu/ablations_fafe/table4_")]) == 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_token_count_matches_position_embedding(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.name == "fafe"
    if not cfg.model.arch.startswith("crossvit"):
        assert cfg.model.arch == "resnet50" or path.name.endswith("_tiny.yaml")
        return
    enc = encoder_of(cfg)
    with torch.no_grad():
        tokens = enc.embed(torch.zeros(1, 3, cfg.data.height, cfg.data.width, device="meta"))
    for branch, t in enumerate(tokens):
        pos = enc.position_embedding(branch)
        gh, gw = enc.grid(branch)
        assert t.shape[1] == pos.shape[1] == 1 + gh * gw
        patch = enc.geometry[branch].patch
        h, w = enc.geometry[branch].input_size
        assert (gh, gw) == (h // patch, w // patch) and h % patch == 0 and w % patch == 0
    if (cfg.data.height, cfg.data.width) == (288, 144):  # the paper's size
        assert (enc.grid(0), enc.grid(1)) == ((24, 12), (16, 8))


# -- pretrained weights ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timm_tiny_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("crossvit_tiny_240", pretrained=False).eval()
    path = tmp_path_factory.mktemp("weights") / "crossvit_tiny_240.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_weights_at_the_native_size_reproduce_timm(timm_tiny_file) -> None:
    path, model = timm_tiny_file
    enc = CrossViTEncoder(arch="crossvit_tiny_240", img_size=(240, 240), multiscale_residual=False,
                          pretrained=str(path)).eval()
    report = enc.pretrained_report
    assert report.matched == report.expected and not report.missing and not report.resampled
    x = torch.randn(1, 3, 240, 240, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = enc(x)
        theirs = model.forward_features(x)  # timm resizes the coarse input to 224 itself
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("size,grids", [((288, 144), ((24, 12), (16, 8))), ((96, 48), ((8, 4), (5, 2)))])
def test_weights_load_with_resampled_position_embeddings(timm_tiny_file, size, grids) -> None:
    path, model = timm_tiny_file
    ref = model.state_dict()
    enc = CrossViTEncoder(arch="crossvit_tiny_240", img_size=size, pretrained=str(path))
    report = enc.pretrained_report
    assert report.matched == report.expected and not report.missing and not report.unexpected
    assert report.resampled == [f"pos_embed_0: 20x20 -> {grids[0][0]}x{grids[0][1]}",
                                f"pos_embed_1: 14x14 -> {grids[1][0]}x{grids[1][1]}"]
    own = enc.crossvit.state_dict()
    for key, value in ref.items():
        if key.startswith("head."):
            assert key not in own  # the ImageNet classifier is not part of the encoder
        elif key.startswith("pos_embed_"):
            i = int(key[-1])
            assert own[key].shape == (1, 1 + grids[i][0] * grids[i][1], value.shape[2])
            assert torch.equal(own[key][:, 0], value[:, 0])  # the CLS position is kept as is
        else:
            assert torch.equal(own[key], value), key
    # resampling: a position embedding that varies along the rows only keeps doing so, increasing downwards
    side = 20
    ramp = torch.arange(side, dtype=torch.float32).view(1, side, 1, 1).expand(1, side, side, 4).reshape(1, side * side, 4)
    enc2 = CrossViTEncoder(arch="crossvit_micro", img_size=(96, 48), patch_size=(12, 16))
    small = {k: v for k, v in enc2.crossvit.state_dict().items()}
    small["pos_embed_0"] = torch.cat([torch.full((1, 1, 48), -7.0), ramp.repeat(1, 1, 12)], dim=1)
    load_crossvit_weights(enc2, small, source="ramp")
    grid = enc2.position_embedding(0)[0, 1:, 0].detach().view(*enc2.grid(0))
    assert torch.allclose(grid, grid[:, :1].expand_as(grid), atol=1e-4)
    assert bool((grid[1:, 0] > grid[:-1, 0]).all())
    assert enc2.position_embedding(0)[0, 0, 0].item() == -7.0


def test_mismatched_weight_files_fail(tmp_path, timm_tiny_file) -> None:
    import timm

    other = tmp_path / "crossvit_9_240.pth"
    torch.save(timm.create_model("crossvit_9_240", pretrained=False).state_dict(), other)
    with pytest.raises(CheckpointError, match=r"crossvit_9_240\.pth.*do not fit CrossViT crossvit_tiny_240"):
        CrossViTEncoder(arch="crossvit_tiny_240", img_size=(96, 48), pretrained=str(other))
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3), "fc.bias": torch.zeros(3)}, unrelated)
    with pytest.raises(CheckpointError, match=r"unrelated\.pth: only 0 of"):
        CrossViTEncoder(arch="crossvit_tiny_240", img_size=(96, 48), pretrained=str(unrelated))
    with pytest.raises(CheckpointError, match="missing.pth: model.pretrained file not found"):
        CrossViTEncoder(arch="crossvit_tiny_240", img_size=(96, 48), pretrained=str(tmp_path / "missing.pth"))
    path, _ = timm_tiny_file
    with pytest.raises(CheckpointError, match="do not fit"):  # patch 8 cannot take the file's 12x12 kernels
        CrossViTEncoder(arch="crossvit_tiny_240", img_size=(96, 48), patch_size=(8, 16), pretrained=str(path))


def test_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants

    import vireid.models.crossvit as crossvit

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(crossvit, "_online", lambda host="huggingface.co": False)
    with pytest.raises(CheckpointError, match=r"ImageNet weights of crossvit_tiny_240 .*timm/crossvit_tiny_240"):
        CrossViTEncoder(arch="crossvit_tiny_240", img_size=(96, 48), pretrained="imagenet")
    with pytest.raises(CheckpointError, match="crossvit_micro is vireid's own small variant"):
        CrossViTEncoder(arch="crossvit_micro", img_size=(96, 48), pretrained="imagenet")
    with pytest.raises(ConfigError, match="unknown CrossViT variant 'crossvit_huge'"):
        CrossViTEncoder(arch="crossvit_huge", img_size=(96, 48))


# -- CSA ------------------------------------------------------------------------------------------
def test_csa_shapes_and_the_combine_switch() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6, 3)
    for combine, channels in (("concat", 2), ("sum", 1)):
        csa = ChannelSpatialAttention(32, reduction=8, kernel_size=7, combine=combine)
        assert csa.spatial.conv.in_channels == channels and csa.spatial.conv.kernel_size == (7, 7)
        out, a_c, a_s = csa.forward_with_maps(x)
        assert out.shape == x.shape and a_c.shape == (2, 32, 1, 1) and a_s.shape == (2, 1, 6, 3)
        assert bool(((a_c > 0) & (a_c < 1)).all()) and bool(((a_s > 0) & (a_s < 1)).all())
        assert torch.allclose(out, a_s * (a_c * x))
    with pytest.raises(ConfigError, match="csa_combine"):
        SpatialAttention(combine="product")
    with pytest.raises(ConfigError, match="odd"):
        SpatialAttention(kernel_size=4)


def test_csa_against_hand_computation() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 8, 4, 3)
    ca = ChannelAttention(8, reduction=4)
    w1, w2 = ca.c1.weight[:, :, 0, 0], ca.c2.weight[:, :, 0, 0]  # [2, 8], [8, 2]

    def mlp(v):  # v [N, C]
        return torch.relu(v @ w1.T) @ w2.T

    expected_c = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))  # eq 10
    assert torch.allclose(ca(x)[:, :, 0, 0], expected_c, atol=1e-6)
    for combine in ("concat", "sum"):
        sa = SpatialAttention(kernel_size=1, combine=combine)
        w = sa.conv.weight.view(-1)
        avg, mx = x.mean(1), x.amax(1)
        pre = w[0] * avg + w[1] * mx if combine == "concat" else w[0] * (avg + mx)
        assert torch.allclose(sa(x)[:, 0], torch.sigmoid(pre), atol=1e-6)


def test_spatial_attention_with_the_real_7x7_kernel() -> None:
    """Eq 12 with the 7x7 kernel and 'same' zero padding, summed by hand over every offset."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 9, 6)
    for combine in ("concat", "sum"):
        sa = SpatialAttention(kernel_size=7, combine=combine)
        w = sa.conv.weight[0]  # [in, 7, 7]
        maps = [x.mean(1), x.amax(1)] if combine == "concat" else [x.mean(1) + x.amax(1)]
        h, wd = x.shape[2:]
        pre = torch.zeros(2, h, wd)
        for c, m in enumerate(maps):
            padded = F.pad(m, (3, 3, 3, 3))  # zero padding of 3 on each side
            for dy in range(7):
                for dx in range(7):
                    pre += w[c, dy, dx] * padded[:, dy:dy + h, dx:dx + wd]
        assert torch.allclose(sa(x)[:, 0], torch.sigmoid(pre), atol=1e-5), combine


def _linear(layer, x):
    return x @ layer.weight.T + (layer.bias if layer.bias is not None else 0)


def _cross_attention_by_hand(fusion, tokens):
    """Eqs 6-7 re-derived: LN, q from the CLS token only, k and v from all tokens, per-head softmax of
    q k^T * head_dim^-0.5, output projection; the CLS token plus the attention output (eq 7)."""
    attn = fusion.attn
    z = F.layer_norm(tokens, tokens.shape[-1:], fusion.norm1.weight, fusion.norm1.bias, fusion.norm1.eps)
    n, length, dim = z.shape
    heads = attn.num_heads
    hd = dim // heads
    q = _linear(attn.wq, z[:, :1]).view(n, 1, heads, hd).transpose(1, 2)
    k = _linear(attn.wk, z).view(n, length, heads, hd).transpose(1, 2)
    v = _linear(attn.wv, z).view(n, length, heads, hd).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)  # [n, heads, 1, length]
    out = _linear(attn.proj, (weights @ v).transpose(1, 2).reshape(n, 1, dim))
    return tokens[:, :1] + out


def test_crossvit_eqs_5_to_8_against_an_independent_computation() -> None:
    torch.manual_seed(3)
    enc = CrossViTEncoder(arch="crossvit_micro", img_size=(64, 32), pretrained="none").eval()
    block = enc.crossvit.blocks[0]
    xs = [torch.randn(2, 1 + enc.geometry[b].num_patches, enc.embed_dims[b]) for b in (0, 1)]
    with torch.no_grad():
        got = block(xs)
        branch_out = [blk(x) for blk, x in zip(block.blocks, xs)]  # eqs 2-3 per branch (timm Blocks)
        for i in (0, 1):
            j = 1 - i
            proj, revert = block.projs[i], block.revert_projs[i]
            cls = branch_out[i][:, :1]
            # eq 5: the CLS token projected to the other branch's width (LN, GELU, linear)
            p_cls = _linear(proj[2], F.gelu(F.layer_norm(cls, cls.shape[-1:], proj[0].weight, proj[0].bias,
                                                         proj[0].eps)))
            joined = torch.cat([p_cls, branch_out[j][:, 1:]], dim=1)  # with the OTHER branch's patches
            z_cls = _cross_attention_by_hand(block.fusion[i], joined)  # eqs 6-7
            back = _linear(revert[2], F.gelu(F.layer_norm(z_cls, z_cls.shape[-1:], revert[0].weight,
                                                          revert[0].bias, revert[0].eps)))
            expected = torch.cat([back, branch_out[i][:, 1:]], dim=1)  # eq 8: re-joined with its OWN patches
            assert got[i].shape == xs[i].shape
            assert torch.allclose(got[i], expected, atol=1e-5), i
            # the patch tokens are exactly the branch's own block output
            assert torch.equal(got[i][:, 1:], branch_out[i][:, 1:])


# -- the model ------------------------------------------------------------------------------------
def test_tiny_fafe_forward_backward() -> None:
    torch.manual_seed(0)
    model = micro().train()
    out = model(three_view_batch([0, 0, 1, 1, 2, 2]))
    assert set(out) == {"loss_id", "loss_tri", "acc"}
    total = out["loss_id"] + out["loss_tri"]
    assert torch.isfinite(total)
    total.backward()
    for name in ("backbone.crossvit.patch_embed.0.proj.weight", "backbone.crossvit.pos_embed_1",
                 "backbone.crossvit.blocks.1.fusion.0.attn.wq.weight", "csa.channel.c1.weight",
                 "csa.spatial.conv.weight", "neck.classifier.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    groups = model.parameter_groups()
    assert all(not any(p is q for q in groups["head"]) for p in model.backbone.parameters())
    assert any(p is model.csa.spatial.conv.weight for p in groups["head"])


def test_multiscale_residual_adds_each_encoder_input() -> None:
    torch.manual_seed(0)
    enc = CrossViTEncoder(arch="crossvit_micro", img_size=(64, 32), coarse_scale=1.0, multiscale_residual=True).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        xs = enc.embed(x)
        for block in enc.crossvit.blocks:
            xs = [y + z for y, z in zip(block(xs), xs)]
        expected = [norm(t) for norm, t in zip(enc.crossvit.norm, xs)]
        got = enc(x)
        enc.multiscale_residual = False
        plain = enc(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))
    assert not torch.allclose(got[1], plain[1])


def test_extract_shapes_and_features() -> None:
    torch.manual_seed(0)
    model = micro().eval()
    images = torch.rand(3, 3, 64, 32)
    feats = model.extract(images, "infrared")
    # CLS fine (48) + CLS coarse (96) + pooled coarse map (96)
    assert feats.shape == (3, 48 + 96 + 96) and torch.allclose(feats.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model.extract(images, "visible"), feats)  # one encoder shared by all modalities
    fine = micro(csa_branch="fine").eval()
    assert fine.extract(images, "visible").shape == (3, 48 + 96 + 48)
    assert model.spatial_attention(images, "visible").shape == (3, 4, 2)
    assert fine.spatial_attention(images, "visible").shape == (3, 8, 4)
    before = micro(neck_feat="before").eval()
    before.load_state_dict(model.state_dict())
    raw = before.features(images, "visible")
    assert torch.allclose(before.extract(images, "visible"), F.normalize(raw, dim=1), atol=1e-6)
    resnet = FAFE(num_classes=5, arch="resnet18", pretrained="none", non_local=False, pool="gem").eval()
    assert resnet.extract(torch.rand(2, 3, 64, 32), torch.tensor([0, 1])).shape == (2, 512)
    with pytest.raises(ValueError, match="no CSA module"):
        micro(csa=False).spatial_attention(images, "visible")


def _reference_label_smoothing(logits: torch.Tensor, pids: torch.Tensor, xi: float) -> torch.Tensor:
    n_cls = logits.shape[1]
    total = 0.0
    for row, y in zip(torch.log_softmax(logits.double(), 1), pids.tolist()):
        for i in range(n_cls):
            q = 1 - (n_cls - 1) / n_cls * xi if i == y else xi / n_cls
            total += -q * row[i].item()
    return torch.tensor(total / len(pids), dtype=torch.float64)


def _reference_adaptive(feat: torch.Tensor, pids: torch.Tensor, alpha: float, mode: str) -> torch.Tensor:
    x = feat.double()
    terms = []
    for a in range(len(pids)):
        pos = [j for j in range(len(pids)) if j != a and pids[j] == pids[a]]
        neg = [j for j in range(len(pids)) if pids[j] != pids[a]]
        dp = [torch.dist(x[a], x[j]).item() for j in pos]
        dn = [torch.dist(x[a], x[j]).item() for j in neg]
        wp = [math.exp(d) / sum(math.exp(e) for e in dp) for d in dp]
        wn = [math.exp(-d) / sum(math.exp(-e) for e in dn) for d in dn]
        t = sum(w * d for w, d in zip(wp, dp)) - sum(w * d for w, d in zip(wn, dn))
        terms.append(max(t + alpha, 0.0) if mode == "hinge" else math.log1p(math.exp(t)))
    return torch.tensor(sum(terms) / len(terms), dtype=torch.float64)


def _reference_batch_hard(feat: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    x = feat.double()
    terms = []
    for a in range(len(pids)):
        dp = max(torch.dist(x[a], x[j]).item() for j in range(len(pids)) if j != a and pids[j] == pids[a])
        dn = min(torch.dist(x[a], x[j]).item() for j in range(len(pids)) if pids[j] != pids[a])
        terms.append(max(dp - dn + margin, 0.0))
    return torch.tensor(sum(terms) / len(terms), dtype=torch.float64)


@pytest.mark.parametrize("metric,mode", [("adaptive", "hinge"), ("adaptive", "softplus"), ("batch_hard", "hinge"),
                                         ("center", "hinge"), ("none", "hinge")])
def test_loss_composition_against_hand_computation(metric: str, mode: str) -> None:
    torch.manual_seed(0)
    margin = 1.0 if metric == "adaptive" else 0.3
    model = micro(metric=metric, adaptive_mode=mode, margin=margin, center_weight=0.01, id_smoothing=0.1).train()
    batch = three_view_batch([0, 0, 3, 3], seed=2)
    out = model(batch)
    feat = model.features(batch["images"], batch["modality"])  # same batch statistics, no dropout
    logits = model.neck(feat)[1]
    assert torch.allclose(out["loss_id"].double(), _reference_label_smoothing(logits, batch["pids"], 0.1), atol=1e-5)
    expected_keys = {"loss_id", "acc"}
    if metric == "adaptive":
        ref = _reference_adaptive(feat, batch["pids"], margin, mode)
        assert torch.allclose(out["loss_tri"].double(), ref, atol=1e-4)
        expected_keys.add("loss_tri")
    elif metric == "batch_hard":
        assert torch.allclose(out["loss_tri"].double(), _reference_batch_hard(feat, batch["pids"], margin), atol=1e-4)
        expected_keys.add("loss_tri")
    elif metric == "center":
        centres = model.metric_loss.centers[batch["pids"]]
        ref = 0.01 * 0.5 * ((feat - centres) ** 2).sum(1).mean()
        assert torch.allclose(out["loss_center"], ref, atol=1e-5)
        expected_keys.add("loss_center")
    assert set(out) == expected_keys


def test_from_config_reads_the_keys(tmp_path) -> None:
    cfg = load_config(REPO / "configs/sysu/fafe_tiny.yaml", [
        "data.height=64", "data.width=32", "model.csa_combine=sum", "model.csa_branch=fine",
        "loss.metric=batch_hard", "loss.margin=0.5", "model.multiscale_residual=false"])
    model = build_model(cfg, 7)
    assert isinstance(model, FAFE) and model.backbone.img_size == (64, 32)
    assert model.csa.spatial.combine == "sum" and model.csa_branch == 0 and not model.backbone.multiscale_residual
    assert model.metric_loss.margin == 0.5 and model.id_loss.epsilon == 0.1 and model.neck.classifier.out_features == 7
    with pytest.raises(ConfigError, match="loss.metric: .*unsupported.*adaptive, batch_hard, center, wrt, none"):
        build_model(load_config(REPO / "configs/sysu/fafe_tiny.yaml", ["loss.metric=esd"]), 7)
    with pytest.raises(ConfigError, match="not divisible"):
        build_model(load_config(REPO / "configs/sysu/fafe_tiny.yaml", ["data.height=100"]), 7)


# -- data: TrivialAugment on both modalities ------------------------------------------------------
def test_trivial_augment_changes_visible_and_infrared_images() -> None:
    from vireid.data.transforms import build_test_transform, build_train_transforms

    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8))
    gray = Image.fromarray(np.repeat(rng.integers(0, 256, (64, 32, 1), dtype=np.uint8), 3, axis=2))
    plain = ["data.height=64", "data.width=32", "data.pad=0", "data.flip=false", "data.random_erasing=0"]
    for ta in (False, True):
        cfg = load_config(REPO / "configs/sysu/fafe_tiny.yaml", [*plain, f"data.trivial_augment={str(ta).lower()}"])
        tfs, test = build_train_transforms(cfg.data), build_test_transform(cfg.data)
        for view, img in (("visible", colour), ("infrared", gray)):
            reference = test(img)
            changed = 0
            for seed in range(12):
                torch.manual_seed(seed)
                changed += not torch.allclose(tfs[view](img), reference)
            # TrivialAugmentWide picks the identity 1 time in 14 (and magnitude 0 now and then)
            assert (changed >= 8) if ta else (changed == 0), (view, ta, changed)


# -- every shipped config: one training step through the engine ------------------------------------
@pytest.fixture(scope="module")
def synthetic_roots(tmp_path_factory) -> dict[str, Path]:
    from vireid.data.synthetic import generate

    base = tmp_path_factory.mktemp("synthetic")
    return {
        name: generate(name, base / name, ids=6, seed=0, images_per_camera=2, size=(64, 32), workers=1, progress=False)
        for name in ("sysu", "regdb", "llcm")
    }


def tiny_overrides(cfg, root: Path) -> list[str]:
    arch = ["model.arch=crossvit_micro", "model.crossvit_coarse_scale=1.0"] if cfg.model.arch.startswith(
        "crossvit") else ["model.arch=resnet18"]
    return [*arch, "model.pretrained=none", f"data.root={root}", "data.height=64", "data.width=32", "data.pad=2",
            "data.workers=0", "data.ids_per_batch=2", "data.images_per_id=2", "train.epochs=1",
            "train.iters_per_epoch=1", "train.device=cpu", "train.eval_every=0"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_trains_one_step(path: Path, synthetic_roots, tmp_path) -> None:
    from vireid.data import build_dataset
    from vireid.data.training import build_train_loader
    from vireid.engine.trainer import Trainer

    cfg0 = load_config(path)
    cfg = load_config(path, tiny_overrides(cfg0, synthetic_roots[cfg0.data.name]) + [f"output_dir={tmp_path}"])
    assert cfg.data.grayscale_view and cfg.loss.id_smoothing == 0.1 and cfg.optim.name == "adam"
    dataset = build_dataset(cfg.data.name, cfg.data.root)
    records = dataset.train_records(trial=1) if cfg.data.name == "regdb" else dataset.train_records()
    loader = build_train_loader(cfg, records)
    torch.manual_seed(0)
    model = build_model(cfg, loader.num_classes)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = Trainer(cfg, model, loader, default_hooks=False)
    steps = []

    class Record:
        def __getattr__(self, name):
            return lambda *args: steps.append(args[1]) if name == "after_step" else None

    trainer.hooks.append(Record())
    trainer.train()
    assert trainer.global_step == 1 and len(steps) == 1
    losses = {k: v for k, v in steps[0].items() if k.startswith("loss")}
    metric = {"adaptive": "loss_tri", "batch_hard": "loss_tri", "center": "loss_center"}[cfg.loss.metric]
    assert set(losses) == {"loss_id", metric} and all(math.isfinite(v) for v in losses.values())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("neck.") for k in changed)
    assert (model.csa is not None) == bool(cfg0.model.csa)


# -- the commands -----------------------------------------------------------------------------------
def vireid(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.fixture(scope="module")
def tiny_run(synthetic_roots, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("run") / "fafe_tiny"
    overrides = [f"data.root={synthetic_roots['sysu']}", "data.height=64", "data.width=32", "data.ids_per_batch=2",
                 "data.images_per_id=2", "train.iters_per_epoch=2", "test.trials=1"]
    saved = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = ["train", "test", "visualize"]
    try:
        assert vireid("train", str(REPO / "configs/sysu/fafe_tiny.yaml"), *overrides, f"output_dir={out}",
                      "train.epochs=1") == 0
    finally:
        cli.COMMAND_MODULES = saved
    return out, overrides


def test_train_then_test_end_to_end(tiny_run, tmp_path, monkeypatch, capsys) -> None:
    out, overrides = tiny_run
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["train", "test", "visualize"])
    trained = json.loads((out / "results.json").read_text())
    assert len(trained["trials"]) == 1 and 0 <= trained["mean"]["mAP"] <= 100
    saved = load_config(out / "config.yaml")
    assert saved.model.name == "fafe" and saved.model.arch == "crossvit_micro" and saved.data.grayscale_view
    result = tmp_path / "test.json"
    assert vireid("test", str(REPO / "configs/sysu/fafe_tiny.yaml"), *overrides, "--checkpoint",
                  str(out / "checkpoints" / "last.pt"), "--json", str(result)) == 0
    tested = json.loads(result.read_text())
    for key in ("rank1", "rank10", "rank20", "mAP"):
        assert tested["mean"][key] == pytest.approx(trained["mean"][key], abs=1e-6)


def test_visualize_attention(tiny_run, synthetic_roots, tmp_path, monkeypatch, capsys) -> None:
    out, overrides = tiny_run
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["train", "test", "visualize"])
    images = sorted((synthetic_roots["sysu"] / "cam3").rglob("*.jpg"))[:2]
    # a tiny AGW baseline checkpoint of the same input size, built directly
    from vireid.models.checkpoint import save_checkpoint

    agw_cfg = tmp_path / "agw.yaml"
    agw_cfg.write_text("_base_: " + str(REPO / "configs/sysu/agw_tiny.yaml") + "\ndata:\n  height: 64\n  width: 32\n")
    agw = build_model(load_config(agw_cfg), 4)
    save_checkpoint(tmp_path / "agw.pt", model=agw, epoch=0, num_classes=4)
    dest = tmp_path / "pictures"
    assert vireid("visualize", "attention", str(REPO / "configs/sysu/fafe_tiny.yaml"), *overrides,
                  "--checkpoint", str(out / "checkpoints" / "last.pt"), "--images", *map(str, images),
                  "--modality", "infrared", "--out", str(dest), "--baseline-config", str(agw_cfg),
                  "--baseline-checkpoint", str(tmp_path / "agw.pt")) == 0
    printed = [Path(line) for line in capsys.readouterr().out.split()]
    names = [f"{p.parent.parent.name}_{p.parent.name}_{p.stem}_attention.png" for p in images]
    assert printed == [dest / names[0], dest / names[1], dest / "attention_grid.png"]
    assert printed[0].name.startswith("cam3_") and all(p.is_file() for p in printed)
    with Image.open(printed[0]) as im:
        arr = np.asarray(im.convert("RGB"))
    # 64 px high shown x4 = 256 px + the caption band; three columns (image, FAFE map, AGW map) and the
    # colour bar
    from vireid.visualization.attention import COLOUR_BAR_WIDTH, LABEL_HEIGHT

    assert arr.shape[0] == 256 + LABEL_HEIGHT and arr.shape[1] == 3 * 128 + COLOUR_BAR_WIDTH + 3 * 4
    tiles = [arr[LABEL_HEIGHT:, i * 132 : i * 132 + 128].astype(int) for i in range(3)]
    bar = arr[LABEL_HEIGHT:, 3 * 132 : 3 * 132 + 16].astype(int)
    assert bar[0, 0, 0] > 100 and bar[0, 0, 2] < 100 and bar[-1, 0, 2] > 100  # jet: red at the top, blue below
    assert np.abs(tiles[1] - tiles[0]).mean() > 5 and np.abs(tiles[2] - tiles[1]).mean() > 1
    assert not list(dest.glob(".*.tmp"))
    with pytest.raises(SystemExit):
        vireid("visualize", "attention", "--help")
    assert vireid("visualize", "attention", str(REPO / "configs/sysu/fafe_tiny.yaml"), "--checkpoint",
                  str(tmp_path / "missing.pt"), "--images", str(images[0]), "--out", str(dest)) == 2


def test_attention_map_helpers() -> None:
    from vireid.visualization.attention import blend, colorize, normalize_maps, picture_name

    assert picture_name("data/SYSU-MM01/cam3/0007/0001.jpg") == "cam3_0007_0001"
    assert picture_name("/0001.jpg") == "0001" and picture_name("q.png") == "q"

    maps = normalize_maps(torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]]))
    assert torch.allclose(maps[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]])) and torch.equal(maps[1], torch.zeros(2, 2))
    heat = colorize(maps[0], (8, 4))
    assert heat.shape == (8, 4, 3) and heat.dtype == np.uint8
    assert heat[0, 0, 2] > heat[0, 0, 0] and heat[-1, -1, 0] > heat[-1, -1, 2]  # jet: low blue, high red
    img = np.full((8, 4, 3), 200, np.uint8)
    assert np.array_equal(blend(img, heat, 0.0), img) and np.array_equal(blend(img, heat, 1.0), heat)
    assert blend(img, np.zeros_like(img), 0.25)[0, 0, 0] == 150
