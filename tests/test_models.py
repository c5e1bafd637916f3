"""Tests of vireid.models: registry, two-stream backbone, AGW/CAJ/DAM, MCA, PCA, PCB, weight loading.

Tiny CPU models (resnet18, random init, 64x32 inputs); one torch thread (faster on a shared 2-core
machine than two competing ones).
"""

from __future__ import annotations

import itertools
import logging
import urllib.error

import pytest
import torch
import torchvision
from torch.nn import functional as F

from vireid.config import load_config
from vireid.errors import CheckpointError, ConfigError
from vireid.losses import (
    EnhancedSquaredDifferenceLoss,
    HeteroCenterLoss,
    HeteroCenterTripletLoss,
    ModalityMeanMSELoss,
)
from vireid.models import (
    MODELS,
    MultiScaleCrossAttention,
    PartChannelAttention,
    PCBHead,
    ReIDModel,
    TwoStreamResNet,
    build_model,
    register_model,
)
from vireid.models.layers import BNNeck, GeneralizedMeanPooling, NonLocalBlock

NUM_CLASSES = 5
TINY = ["model.arch=resnet18", "model.pretrained=none"]

#: Per-model overrides for the parametrised tests (a model registered later gets TINY only).
MODEL_OVERRIDES = {
    "agw": ["model.non_local=true", "loss.metric=wrt"],
    "caj": ["model.non_local=true", "loss.metric=esd"],
    "dam": [
        "model.specific_stages=1", "model.mca_after=[3]", "model.pca_after=[4]", "model.local_parts=3",
        "model.local_dim=16", "loss.metric=batch_hard",
    ],
}

DAM_BASE = ["model.name=dam", "model.specific_stages=1", "loss.metric=batch_hard", "model.local_dim=16"]
#: DAM paper B ablations: Table 3 rows, Fig. 4 part counts, Table 4 test features.
DAM_VARIANTS = {
    "table3_base": ["model.mca_after=[]", "model.pca_after=[]", "model.local_parts=0"],
    "table3_base_p": ["model.mca_after=[]", "model.pca_after=[]", "model.local_parts=3"],
    "table3_base_p_mca": ["model.mca_after=[3]", "model.pca_after=[]", "model.local_parts=3"],
    "table3_base_p_pca": ["model.mca_after=[]", "model.pca_after=[4]", "model.local_parts=3"],
    "table3_full": ["model.mca_after=[3]", "model.pca_after=[4]", "model.local_parts=3"],
    **{
        f"fig4_parts{p}": ["model.mca_after=[3]", "model.pca_after=[4]", f"model.local_parts={p}", f"model.pca_parts={p}"]
        for p in (1, 2, 6)
    },
    "table4_local": ["model.mca_after=[3]", "model.pca_after=[4]", "model.local_parts=3", "model.test_feature=local"],
    "table4_both": ["model.mca_after=[3]", "model.pca_after=[4]", "model.local_parts=3", "model.test_feature=both"],
}


def tiny_cfg(overrides):
    return load_config(None, [*TINY, *overrides])


def make_batch(p=2, k=2, height=64, width=32, derived=True, seed=0):
    """A batch in docs/architecture.md order: [visible | derived | infrared], identity-major blocks."""
    g = torch.Generator().manual_seed(seed)
    block_pids = torch.arange(p).repeat_interleave(k)
    codes = [0, 2, 1] if derived else [0, 1]
    n = len(codes) * p * k
    return {
        "images": torch.rand(n, 3, height, width, generator=g),
        "pids": block_pids.repeat(len(codes)),
        "modality": torch.tensor(codes).repeat_interleave(p * k),
        "camera": torch.zeros(n, dtype=torch.long),
    }


def expected_loss_keys(cfg):
    keys = {"loss_id"} | ({"loss_tri"} if cfg.loss.metric != "none" else set())
    if cfg.model.name == "dam":
        keys |= {"loss_mse"} if cfg.loss.mse_weight > 0 else set()
        if cfg.model.local_parts > 0:
            keys |= {"loss_local_id", "loss_center", "loss_hc"}
    return keys


def expected_dim(cfg):
    global_dim = 512  # resnet18 layer4
    local_dim = cfg.model.local_parts * cfg.model.local_dim
    return {"global": global_dim, "local": local_dim, "both": global_dim + local_dim}[cfg.model.test_feature]


def check_train_and_extract(cfg, height=64):
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES)
    assert isinstance(model, ReIDModel)
    batch = make_batch(height=height)
    model.train()
    out = model(batch)
    loss_keys = {k for k in out if k.startswith("loss")}
    assert loss_keys == expected_loss_keys(cfg)
    assert "acc" in out and 0.0 <= float(out["acc"]) <= 1.0
    for key in loss_keys:
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    sum(out[k] for k in loss_keys).backward()
    for stream in (model.backbone.visible, model.backbone.infrared):
        grad = stream["stem"][0].weight.grad
        assert grad is not None and grad.abs().sum() > 0
    for name, param in model.named_parameters():
        if param.requires_grad and name.startswith(("backbone.shared", "neck", "local")):
            assert param.grad is not None, name

    model.eval()
    with torch.no_grad():
        vis = model.extract(batch["images"][:3], "visible")
        ir = model.extract(batch["images"][-3:], torch.ones(3, dtype=torch.long))
    for feats in (vis, ir):
        assert feats.shape == (3, expected_dim(cfg))
        assert torch.allclose(feats.norm(dim=1), torch.ones(3), atol=1e-5)
    return model


# --------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------
def test_builtin_models_registered():
    assert {"agw", "caj", "dam"} <= set(MODELS)


def test_unknown_model_lists_valid_names_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown model 'dma'.*agw, caj, dam.*Did you mean 'dam'"):
        build_model(load_config(None, ["model.name=dma"]), NUM_CLASSES)


def test_register_model_rejects_duplicates_and_non_models():
    with pytest.raises(ValueError, match="already registered"):
        register_model("agw")(type("Other", (MODELS["dam"],), {}))
    with pytest.raises(ValueError, match="ReIDModel subclass"):
        register_model("not_a_model")(torch.nn.Linear)
    typo = type("Typo", (MODELS["agw"],), {"CONFIG_KEYS": {**MODELS["agw"].CONFIG_KEYS, "pool": "model.pol"}})
    with pytest.raises(ValueError, match=r"Typo.CONFIG_KEYS names \['model.pol'\], which are not keys"):
        register_model("typo")(typo)
    assert "not_a_model" not in MODELS and "typo" not in MODELS


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_declares_its_config_keys_and_its_module_reads_no_config(name):
    """Each declared source is a key of the defaults file and each argument one of the constructor's; building
    the model reads the configuration in the registry and the model base only (ReIDModel.from_config)."""
    import inspect

    from tests.bench_scripts import bench_script
    from vireid.config import config_keys
    from vireid.models.base import source_keys

    cls, keys = MODELS[name], set(config_keys())
    for arg, source in cls.CONFIG_KEYS.items():
        assert set(source_keys(source)) <= keys, (arg, source)
        assert any(arg in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c)), arg
    arch = "crossvit_micro" if name == "fafe" else "resnet18"
    cfg = load_config(None, [f"model.name={name}", f"model.arch={arch}", "model.pretrained=none"])
    with bench_script("config_walk").config_reads() as reads:
        model = build_model(cfg, NUM_CLASSES)
    readers = set(reads)
    assert type(model) is cls and readers == {"models/registry.py", "models/base.py"}, readers


def test_build_model_rejects_bad_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(tiny_cfg([]), 0)


# --------------------------------------------------------------------------------------------------
# every registered model and the DAM ablation variants: forward/backward and extract
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_registered_model_trains_and_extracts(name):
    check_train_and_extract(tiny_cfg([f"model.name={name}", *MODEL_OVERRIDES.get(name, [])]))


@pytest.mark.parametrize("variant", sorted(DAM_VARIANTS))
def test_dam_variant_trains_and_extracts(variant):
    cfg = tiny_cfg([*DAM_BASE, *DAM_VARIANTS[variant]])
    # six stripes need six rows at layer4 (output stride 16 with last stride 1)
    model = check_train_and_extract(cfg, height=96 if cfg.model.local_parts == 6 else 64)
    assert len(model.mca) == len(cfg.model.mca_after) and len(model.pca) == len(cfg.model.pca_after)
    assert (model.local is None) == (cfg.model.local_parts == 0)


def test_dam_losses_follow_eq16_weights():
    """L = L_global + alpha L_local with L_local = l1 L_id + l2 L_center + l3 L_hc (eqs 14-16)."""
    common = [*DAM_BASE, "model.mca_after=[3]", "model.pca_after=[4]", "model.local_parts=3"]
    batch = make_batch()
    outs = []
    for alpha, l1, l2, l3, mse in [(1.0, 1.0, 1.0, 1.0, 1.0), (2.0, 0.5, 0.1, 2.0, 0.25)]:
        cfg = tiny_cfg([*common, f"loss.alpha={alpha}", f"loss.lambda1={l1}", f"loss.lambda2={l2}",
                        f"loss.lambda3={l3}", f"loss.mse_weight={mse}"])
        torch.manual_seed(0)
        model = build_model(cfg, NUM_CLASSES).train()
        outs.append(model(batch))
    unit, weighted = outs
    for key in ("loss_id", "loss_tri"):
        assert torch.allclose(unit[key], weighted[key])
    assert torch.allclose(weighted["loss_mse"], 0.25 * unit["loss_mse"])
    assert torch.allclose(weighted["loss_local_id"], 2.0 * 0.5 * unit["loss_local_id"])
    assert torch.allclose(weighted["loss_center"], 2.0 * 0.1 * unit["loss_center"])
    assert torch.allclose(weighted["loss_hc"], 2.0 * 2.0 * unit["loss_hc"], rtol=1e-4)

    # unit weights: each term against an independent computation from the model's own features
    torch.manual_seed(0)
    model = build_model(tiny_cfg([*common, "loss.lambda1=1", "loss.lambda2=1", "loss.lambda3=1"]), NUM_CLASSES)
    model.train()
    out = model(batch)
    pids, modality = batch["pids"], batch["modality"]
    with torch.no_grad():  # train-mode BatchNorm: batch statistics, so the same values again
        fmap = model.feature_map(batch["images"], modality)
        pooled = model.pool(fmap)
        bn = model.neck.bn
        logits = model.neck.classifier(F.batch_norm(pooled, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
        stripes, part_logits = model.local(fmap)
    assert torch.allclose(out["loss_id"], F.cross_entropy(logits, pids), atol=1e-5)
    assert torch.allclose(out["loss_mse"], ModalityMeanMSELoss()(pooled, pids, modality), atol=1e-5)
    part_ce = torch.stack([F.cross_entropy(lg, pids) for lg in part_logits]).mean()
    assert torch.allclose(out["loss_local_id"], part_ce, atol=1e-5)
    local = torch.nn.functional.normalize(stripes.flatten(1), dim=1)  # loss.center_normalize (default)
    assert torch.allclose(out["loss_center"], HeteroCenterTripletLoss(margin=0.3)(local, pids, modality), atol=1e-4)
    assert torch.allclose(out["loss_hc"], HeteroCenterLoss()(local, pids, modality), rtol=1e-4)
    assert torch.allclose(out["loss_tri"], eq10_cross_modality_batch_hard(pooled, pids, modality, 0.3), atol=1e-5)


def eq10_cross_modality_batch_hard(feats, pids, modality, margin):
    """DAM eq 10 over the pre-BN pooled features of all three views, re-derived with loops: for each
    anchor, the farthest positive and nearest negative on the other side of the modality gap (codes 0 and
    2 visible side, 1 infrared), hinge with rho, mean over anchors that have both."""
    terms = []
    side = [int(m == 1) for m in modality.tolist()]
    for a in range(len(pids)):
        d = [float(torch.linalg.vector_norm(feats[a] - feats[j])) for j in range(len(pids))]
        pos = [d[j] for j in range(len(pids)) if pids[j] == pids[a] and side[j] != side[a]]
        neg = [d[j] for j in range(len(pids)) if pids[j] != pids[a] and side[j] != side[a]]
        if pos and neg:
            terms.append(max(0.0, margin + max(pos) - min(neg)))
    return torch.tensor(sum(terms) / len(terms))


def test_dam_extract_both_is_normalised_concatenation():
    cfg = tiny_cfg([*DAM_BASE, "model.local_parts=3", "model.test_feature=both"])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES).eval()
    images = make_batch()["images"][:3]
    with torch.no_grad():
        both = model.extract(images, "visible")
        fmap = model.feature_map(images, "visible")
        g = F.normalize(model.neck.bn(model.pool(fmap)), dim=1)
        loc = F.normalize(model.local.stripe_features(fmap).flatten(1), dim=1)
    assert torch.allclose(both, torch.cat([g, loc], 1) / 2**0.5, atol=1e-6)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.name=agw", "model.test_feature=local"], "model.test_feature"),
        ([*DAM_BASE, "model.local_parts=0", "model.test_feature=both"], "model.local_parts"),
        ([*DAM_BASE, "model.mca_after=[5]"], "model.mca_after"),
        ([*DAM_BASE, "model.specific_stages=2", "model.pca_after=[1]"], "model.pca_after"),
        (["model.name=agw", "model.pool=median"], "model.pool"),
        (["model.name=agw", "loss.metric=quadruplet"], "loss.metric"),
        (["model.name=agw", "model.arch=vgg16"], "model.arch"),
        (["model.name=agw", "model.neck_feat=middle"], "model.neck_feat"),
    ],
)
def test_bad_config_values_raise_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_model(tiny_cfg(overrides), NUM_CLASSES)


def test_bad_batch_is_rejected():
    model = build_model(tiny_cfg(["model.name=agw"]), NUM_CLASSES)
    batch = make_batch()
    with pytest.raises(ValueError, match="modality"):
        model({k: v for k, v in batch.items() if k != "modality"})
    with pytest.raises(ValueError, match="modality codes"):
        model.backbone(batch["images"], torch.full((len(batch["pids"]),), 3))


def test_parameter_groups_put_new_layers_in_head():
    model = build_model(tiny_cfg(["model.name=dam", *MODEL_OVERRIDES["dam"]]), NUM_CLASSES)
    groups = model.parameter_groups()
    ids = {k: {id(p) for p in v} for k, v in groups.items()}
    for module in (model.mca, model.pca, model.local, model.neck):
        assert all(id(p) in ids["head"] for p in module.parameters() if p.requires_grad)
    assert all(id(p) in ids["backbone"] for p in model.backbone.parameters())
    assert len(ids["backbone"]) + len(ids["head"]) == sum(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# two-stream routing
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("specific_stages", [0, 1])
def test_modalities_go_through_their_own_stream(specific_stages):
    torch.manual_seed(0)
    net = TwoStreamResNet(arch="resnet18", specific_stages=specific_stages).eval()
    assert list(net.visible) == ["stem", "layer1"][: specific_stages + 1]
    images = torch.rand(4, 3, 64, 32)
    with torch.no_grad():
        vis0, ir0 = net(images, "visible"), net(images, "infrared")
        # perturb the infrared stream's last specific stage (its stem, or its layer1)
        for p in net.infrared[list(net.infrared)[-1]].parameters():
            p.add_(torch.randn_like(p) * 0.1)
        vis, ir, derived = net(images, "visible"), net(images, "infrared"), net(images, "intermediate")
        # a mixed batch is routed by masks and re-assembled in its original order
        mixed = net(images, torch.tensor([1, 0, 2, 1]))
    assert torch.equal(vis, vis0)  # the visible stream is untouched
    assert not torch.allclose(ir, ir0, atol=1e-4)
    assert torch.allclose(derived, vis)  # code 2 uses the visible stream
    assert torch.allclose(mixed, torch.stack([ir[0], vis[1], derived[2], ir[3]]), atol=1e-5)


def test_streams_start_from_the_same_weights_and_last_stride():
    net = TwoStreamResNet(arch="resnet18", specific_stages=1, last_stride=1)
    for (name_v, p_v), (name_i, p_i) in zip(net.visible.named_parameters(), net.infrared.named_parameters()):
        assert name_v == name_i and torch.equal(p_v, p_i) and p_v is not p_i
    assert net(torch.rand(2, 3, 64, 32), "visible").shape == (2, 512, 4, 2)
    strided = TwoStreamResNet(arch="resnet18", last_stride=2)
    assert strided(torch.rand(2, 3, 64, 32), "visible").shape == (2, 512, 2, 1)


def test_hooks_run_after_their_stage():
    net = TwoStreamResNet(arch="resnet18", specific_stages=1)
    seen = {}

    def hook(stage):
        def record(x):
            seen[stage] = tuple(x.shape)
            return x
        return record

    net(torch.rand(2, 3, 64, 32), torch.tensor([0, 1]), hooks={s: hook(s) for s in (1, 2, 3, 4)})
    assert seen == {1: (2, 64, 16, 8), 2: (2, 128, 8, 4), 3: (2, 256, 4, 2), 4: (2, 512, 4, 2)}
    with pytest.raises(ValueError, match="shared stage"):
        TwoStreamResNet(arch="resnet18", specific_stages=2)(torch.rand(2, 3, 64, 32), "visible", hooks={1: hook(1)})


def test_non_local_placement_on_resnet50():
    """AGW on ResNet-50: non-local blocks after the last 2 of layer2's 4 blocks and the last 3 of layer3's
    6 (the reference's NL_2_idx [2, 3] and NL_3_idx [3, 4, 5]), none in layers 1 and 4; C/2 wide."""
    net = TwoStreamResNet(arch="resnet50", non_local=True)
    assert {k: len(v) for k, v in net.non_local.items()} == {"layer2": 2, "layer3": 3}
    assert [b.in_channels for b in net.non_local["layer2"]] == [512, 512]
    assert [b.inter_channels for b in net.non_local["layer3"]] == [512, 512, 512]
    calls = []
    for name in ("layer2", "layer3"):
        for i, block in enumerate(net.shared[name]):
            block.register_forward_hook(lambda m, inp, out, tag=(name, "res", i): calls.append(tag))
        for i, block in enumerate(net.non_local[name]):
            block.register_forward_hook(lambda m, inp, out, tag=(name, "nl", i): calls.append(tag))
    with torch.no_grad():
        net.eval()(torch.rand(1, 3, 64, 32), "visible")
    assert calls == [("layer2", "res", 0), ("layer2", "res", 1), ("layer2", "res", 2), ("layer2", "nl", 0),
                     ("layer2", "res", 3), ("layer2", "nl", 1),
                     ("layer3", "res", 0), ("layer3", "res", 1), ("layer3", "res", 2), ("layer3", "res", 3),
                     ("layer3", "nl", 0), ("layer3", "res", 4), ("layer3", "nl", 1), ("layer3", "res", 5),
                     ("layer3", "nl", 2)]


def test_non_local_placement_and_inter_channels():
    net = TwoStreamResNet(arch="resnet18", non_local=True)
    # resnet18 stages have 2 blocks: AGW's 2 (layer2) and 3 (layer3) are clipped to the block count
    assert {k: len(v) for k, v in net.non_local.items()} == {"layer2": 2, "layer3": 2}
    assert net.non_local["layer2"][0].inter_channels == 64
    mistake = TwoStreamResNet(arch="resnet18", non_local=True, non_local_inter_channels_one=True)
    assert all(b.inter_channels == 1 for blocks in mistake.non_local.values() for b in blocks)
    with torch.no_grad():  # non-local blocks start as the identity
        x = torch.rand(2, 3, 64, 32)
        plain = TwoStreamResNet(arch="resnet18")
        plain.load_state_dict(net.state_dict(), strict=False)
        assert torch.allclose(plain.eval()(x, "visible"), net.eval()(x, "visible"), atol=1e-5)


# --------------------------------------------------------------------------------------------------
# AGW layers
# --------------------------------------------------------------------------------------------------
def test_non_local_block_matches_formula():
    torch.manual_seed(0)
    block = NonLocalBlock(4).eval()
    torch.nn.init.ones_(block.W[1].weight)
    x = torch.randn(1, 4, 2, 3)
    out = block(x)

    def conv(c, t):  # 1x1 conv over [C, HW]
        return c.weight[:, :, 0, 0] @ t + c.bias[:, None]

    flat = x[0].flatten(1)
    theta, phi, g = conv(block.theta, flat), conv(block.phi, flat), conv(block.g, flat)
    hw = flat.shape[1]
    y = torch.zeros_like(g)
    for i in range(hw):
        for j in range(hw):
            y[:, i] += (theta[:, i] @ phi[:, j]) / hw * g[:, j]
    wy = conv(block.W[0], y)
    bn = block.W[1]
    wy = (wy - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None] + bn.bias[:, None]
    assert torch.allclose(out[0].flatten(1), flat + wy, atol=1e-5)


def test_gem_pooling():
    x = torch.rand(2, 3, 4, 5) + 0.1
    assert torch.allclose(GeneralizedMeanPooling(p=3.0)(x), (x**3).mean(dim=(2, 3)) ** (1 / 3))
    assert torch.allclose(GeneralizedMeanPooling(p=1.0)(x), x.mean(dim=(2, 3)))
    assert torch.isfinite(GeneralizedMeanPooling(p=3.0)(torch.zeros(1, 2, 3, 3))).all()  # clamped


def test_bnneck_frozen_bias_and_bias_free_classifier():
    torch.manual_seed(0)
    neck = BNNeck(8, 3)
    assert not neck.bn.bias.requires_grad and neck.classifier.bias is None
    assert torch.equal(neck.bn.bias, torch.zeros(8))
    x = torch.randn(6, 8) * 3 + 1
    feats, logits = neck(x)
    # train mode: batch statistics (biased variance), weight as initialised, zero bias; logits = W feats
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + neck.bn.eps) * neck.bn.weight
    assert torch.allclose(feats, expected, atol=1e-5)
    assert torch.allclose(logits, feats @ neck.classifier.weight.T, atol=1e-6)
    # an optimiser step with weight decay leaves the frozen bias at exactly zero
    opt = torch.optim.SGD([p for p in neck.parameters() if p.requires_grad], lr=0.1, weight_decay=5e-4)
    (logits.square().sum() + feats.sum()).backward()
    opt.step()
    assert neck.bn.bias.grad is None and torch.equal(neck.bn.bias, torch.zeros(8))
    # initialisation as the AGW reference: BN weight ~ N(1, 0.01), classifier ~ N(0, 0.001)
    big = BNNeck(4096, 512)
    assert abs(big.bn.weight.mean().item() - 1) < 1e-3 and abs(big.bn.weight.std().item() - 0.01) < 1e-3
    assert abs(big.classifier.weight.std().item() - 0.001) < 1e-5


# --------------------------------------------------------------------------------------------------
# MCA (eqs 1-4), PCA (eqs 5-8), PCB
# --------------------------------------------------------------------------------------------------
def test_mca_preserves_shape_and_starts_as_identity():
    mca = MultiScaleCrossAttention(16, reduction=4, pool_sizes=(3, 5), dilations=(1, 2))
    x = torch.randn(2, 16, 5, 3)
    out = mca(x)
    assert out.shape == x.shape and torch.equal(out, x)
    out.sum().backward()
    assert mca.gamma.grad is not None and mca.gamma.grad.abs() > 0  # the block can leave the identity


def test_mca_matches_hand_computation():
    torch.manual_seed(0)
    mca = MultiScaleCrossAttention(8, reduction=2, pool_sizes=(3, 5), dilations=(1, 2))
    with torch.no_grad():
        mca.gamma.fill_(0.7)
    x = torch.randn(1, 8, 4, 3)
    out = mca(x)[0]

    def conv1x1(c, t):  # t: [C, H, W]
        return torch.einsum("oc,chw->ohw", c.weight[:, :, 0, 0], t) + c.bias[:, None, None]

    def maxpool(t, k):  # stride 1, same padding, by explicit windows
        c, h, w = t.shape
        r = k // 2
        res = torch.empty_like(t)
        for i, j in itertools.product(range(h), range(w)):
            win = t[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
            res[:, i, j] = win.amax(dim=(1, 2))
        return res

    def avgpool3(t):  # 3x3, stride 1, padding not counted
        c, h, w = t.shape
        res = torch.empty_like(t)
        for i, j in itertools.product(range(h), range(w)):
            res[:, i, j] = t[:, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].mean(dim=(1, 2))
        return res

    xi = x[0]
    q = conv1x1(mca.conv_q1, conv1x1(mca.conv_q, xi))
    q1 = conv1x1(mca.conv_q2, torch.cat([maxpool(q, 3), maxpool(q, 5)]))  # eq 1
    k = conv1x1(mca.conv_k1, conv1x1(mca.conv_k, xi))
    k1 = conv1x1(mca.conv_k2, torch.cat([maxpool(k, 3), maxpool(k, 5)]))  # eq 2
    dilated = torch.cat([F.conv2d(x, c.weight, c.bias, padding=c.dilation, dilation=c.dilation)[0] for c in mca.dilated])
    v1 = avgpool3(conv1x1(mca.conv_v, dilated))  # eq 3
    qf, kf, vf = q1.flatten(1), k1.flatten(1), v1.flatten(1)
    agg = torch.zeros_like(vf)
    for i in range(qf.shape[1]):
        weights = torch.softmax(torch.stack([qf[:, i] @ kf[:, j] for j in range(kf.shape[1])]), dim=0)
        agg[:, i] = (vf * weights).sum(1)
    assert torch.allclose(out, xi + 0.7 * agg.view_as(xi), atol=1e-5)  # eq 4


@pytest.mark.parametrize("height", [6, 7])  # divisible and not divisible by 3 parts
def test_pca_matches_hand_computation(height):
    torch.manual_seed(0)
    pca = PartChannelAttention(8, parts=3, reduction=2)
    x = torch.randn(2, 8, height, 3)
    out = pca(x)
    assert out.shape == x.shape
    bounds = {6: [(0, 2), (2, 4), (4, 6)], 7: [(0, 3), (3, 5), (5, 7)]}[height]  # tensor_split rows
    expected = x.clone()
    for n in range(2):
        for i, (top, bottom) in enumerate(bounds):
            part = x[n, :, top:bottom]  # [C, h, W]
            w1, b1 = pca.reduce[i].weight[:, :, 0, 0], pca.reduce[i].bias
            w2, b2 = pca.expand[i].weight[:, :, 0, 0], pca.expand[i].bias
            y = torch.relu(torch.einsum("oc,chw->ohw", w1, part) + b1[:, None, None])
            h, w = y.shape[1:]
            pooled = torch.empty_like(y)  # eq 5: 3x3 stride-1 max pooling
            for r, c in itertools.product(range(h), range(w)):
                pooled[:, r, c] = y[:, max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].amax(dim=(1, 2))
            z = torch.einsum("oc,chw->ohw", w2, pooled) + b2[:, None, None]
            vector = torch.tanh(z.mean(dim=(1, 2)))  # eq 6
            expected[n, :, top:bottom] += torch.tanh(vector)[:, None, None]  # eqs 7-8 (double tanh)
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="height 2 into 3 parts"):
        pca(torch.randn(1, 8, 2, 3))


def test_pcb_head_stripes():
    torch.manual_seed(0)
    head = PCBHead(8, NUM_CLASSES, parts=3, local_dim=4, pool="avg").eval()
    fmap = torch.rand(2, 8, 7, 2)
    feats, logits = head(fmap)
    assert feats.shape == (2, 3, 4) and len(logits) == 3 and logits[0].shape == (2, NUM_CLASSES)
    # stripe 1 holds rows 3-4 (tensor_split of 7 rows into 3)
    stripe = fmap[:, :, 3:5].mean(dim=(2, 3))[:, :, None, None]
    assert torch.allclose(feats[:, 1], head.reduce[1](stripe).flatten(1), atol=1e-6)
    with pytest.raises(ValueError, match="stripes"):
        head(torch.rand(2, 8, 2, 2))


def test_pcb_head_every_stripe_with_gem_and_its_classifier():
    torch.manual_seed(1)
    head = PCBHead(6, NUM_CLASSES, parts=3, local_dim=4, pool="gem", gem_p=3.0).eval()
    with torch.no_grad():  # non-trivial BN statistics so the reduction is not the identity
        for block in head.reduce:
            block[1].running_mean.uniform_(-0.2, 0.2)
            block[1].running_var.uniform_(0.5, 2.0)
    fmap = torch.rand(2, 6, 8, 3) + 0.05
    feats, logits = head(fmap)
    rows = [(0, 3), (3, 6), (6, 8)]  # tensor_split of 8 rows into 3: 3, 3, 2
    for i, (top, bottom) in enumerate(rows):
        gem = fmap[:, :, top:bottom].pow(3).mean(dim=(2, 3)).pow(1 / 3)  # GeM p = 3 of stripe i
        conv, bn = head.reduce[i][0], head.reduce[i][1]
        z = gem @ conv.weight[:, :, 0, 0].T
        z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        expected = torch.relu(z)
        assert torch.allclose(feats[:, i], expected, atol=1e-5), i
        assert head.classifiers[i].bias is None
        assert torch.allclose(logits[i], expected @ head.classifiers[i].weight.T, atol=1e-6), i
    # each stripe has its own reduction and classifier
    assert len({id(m) for m in head.reduce}) == 3 and len({id(c) for c in head.classifiers}) == 3


# --------------------------------------------------------------------------------------------------
# CAJ's enhanced squared difference
# --------------------------------------------------------------------------------------------------
def test_esd_matches_hand_computation():
    torch.manual_seed(0)
    feats = torch.randn(6, 4)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = EnhancedSquaredDifferenceLoss(variant="softmax")(feats, pids)
    terms = []
    for a in range(6):
        pos = [j for j in range(6) if pids[j] == pids[a] and j != a]
        neg = [j for j in range(6) if pids[j] != pids[a]]
        dp_all = torch.stack([torch.dist(feats[a], feats[j]) for j in pos])
        dn_all = torch.stack([torch.dist(feats[a], feats[j]) for j in neg])
        dp = (torch.softmax(dp_all, 0) * dp_all).sum()
        dn = (torch.softmax(-dn_all, 0) * dn_all).sum()
        sign = 1.0 if dp > dn else -1.0
        terms.append(torch.log1p(torch.exp(sign * (dp - dn) ** 2)))
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    # well separated identities give a small loss
    separated = torch.tensor([[0.0, 0], [0, 0.1], [10, 0], [10, 0.1], [0, 10], [0.1, 10]])
    assert EnhancedSquaredDifferenceLoss(variant="softmax")(separated, pids) < 1e-6


def test_esd_reference_variant_follows_the_reference_arithmetic():
    """TripletLoss_ADP(alpha=1, gamma=1, square=1) re-derived row by row: the reference's softmax_weights
    (row max of dist * mask subtracted, +1e-6 in the normaliser, the anchor in its positive mask), then
    SoftMarginLoss(min(gamma (fp - cn)^2, 88), y) with y = -1 where fp > cn, else +1."""
    import math

    torch.manual_seed(1)
    feats = torch.randn(8, 5) * 2
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    x = feats.double()
    total = 0.0
    for a in range(8):
        d = torch.sqrt(((x[a] - x) ** 2).sum(1).clamp(min=1e-12))
        pos = (pids == pids[a]).double()
        neg = 1 - pos

        def weights(v, m):
            shifted = v - (v * m).max()
            return torch.exp(shifted) * m / ((torch.exp(shifted) * m).sum() + 1e-6)

        fp = (d * pos * weights(d * pos, pos)).sum()
        cn = (d * neg * weights(-d * neg, neg)).sum()
        diff_pow = min(float((fp - cn) ** 2), 88.0)
        y = -1.0 if fp > cn else 1.0
        total += math.log1p(math.exp(-y * diff_pow))
    got = EnhancedSquaredDifferenceLoss()(feats, pids)
    assert EnhancedSquaredDifferenceLoss().variant == "reference"
    assert got.item() == pytest.approx(total / 8, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# pretrained weights
# --------------------------------------------------------------------------------------------------
def saved_resnet18(path, keep=None):
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    if keep is not None:
        state = {k: v for k, v in state.items() if keep(k)}
    torch.save(state, path)
    return state


def test_weight_file_loads_into_both_streams(tmp_path, caplog):
    path = tmp_path / "resnet18.pth"
    state = saved_resnet18(path)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="vireid.models.backbones"):
        net = TwoStreamResNet(arch="resnet18", pretrained=str(path), specific_stages=1)
    assert torch.equal(net.visible["stem"][0].weight, state["conv1.weight"])
    assert torch.equal(net.infrared["stem"][0].weight, state["conv1.weight"])
    assert torch.equal(net.infrared["layer1"][1].bn2.running_var, state["layer1.1.bn2.running_var"])
    assert torch.equal(net.shared["layer4"][0].conv1.weight, state["layer4.0.conv1.weight"])
    report = net.pretrained_report
    assert report.matched == report.expected and report.unexpected == ["extra.weight"]
    assert "extra.weight" in caplog.text


def test_weight_file_of_another_architecture_fails(tmp_path):
    path = tmp_path / "resnet18.pth"
    saved_resnet18(path)
    with pytest.raises(CheckpointError, match=r"resnet18\.pth.*do not fit"):
        TwoStreamResNet(arch="resnet50", pretrained=str(path))


def test_weight_file_with_too_few_keys_fails(tmp_path):
    path = tmp_path / "stem_only.pth"
    saved_resnet18(path, keep=lambda k: k.startswith(("conv1", "bn1")))
    with pytest.raises(CheckpointError, match=r"stem_only\.pth: only \d+ of the backbone's \d+ tensors"):
        TwoStreamResNet(arch="resnet18", pretrained=str(path))


def test_unreadable_or_missing_weight_file_fails(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth: cannot be read"):
        TwoStreamResNet(arch="resnet18", pretrained=str(bad))
    with pytest.raises(CheckpointError, match="missing.pth: model.pretrained file not found"):
        TwoStreamResNet(arch="resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_imagenet_offline_without_cache_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError, match=r"not in the torch hub cache.*model\.pretrained=none"):
        TwoStreamResNet(arch="resnet18", pretrained="imagenet")


def test_imagenet_uses_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    (tmp_path / "checkpoints").mkdir()
    name = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    state = saved_resnet18(tmp_path / "checkpoints" / name)
    net = TwoStreamResNet(arch="resnet18", pretrained="imagenet")
    assert torch.equal(net.infrared["stem"][0].weight, state["conv1.weight"])
    assert torch.equal(net.shared["layer3"][0].conv2.weight, state["layer3.0.conv2.weight"])


# --------------------------------------------------------------------------------------------------
# no host reads in a training forward (the step an accelerator runs without synchronising)
# --------------------------------------------------------------------------------------------------
#: torch functions whose output shape depends on tensor values (a device synchronisation on an accelerator)
VALUE_SHAPED = ("nonzero", "unique", "bincount", "masked_select", "argwhere")


@pytest.mark.parametrize("name", ["agw", "caj", "dam", "fafe", "fafe_crossvit"])
def test_training_forward_reads_nothing_back(name, monkeypatch):
    """A training forward and its losses neither read a tensor's value on the host (item, tolist, bool,
    int, float) nor call an op whose output shape depends on values: with the modality codes given on the
    host (``modality_host``, as the training loop does), routing and loss masks stay on the device."""
    overrides = MODEL_OVERRIDES.get(name, [])
    if name == "fafe_crossvit":
        name, overrides = "fafe", ["model.arch=crossvit_micro", "data.height=64", "data.width=32"]
    model = build_model(tiny_cfg([f"model.name={name}", *overrides]), NUM_CLASSES).train()
    batch = make_batch()
    batch["modality_host"] = batch["modality"].clone()
    model(batch)  # warm-up: lazy initialisation outside the count
    counts: dict[str, int] = {}

    def counting(label, real):
        def wrapper(*args, **kwargs):
            counts[label] = counts.get(label, 0) + 1
            return real(*args, **kwargs)
        return wrapper

    for attr in ("item", "tolist", "__bool__", "__int__", "__float__", *VALUE_SHAPED):
        if hasattr(torch.Tensor, attr):
            monkeypatch.setattr(torch.Tensor, attr, counting(f"Tensor.{attr}", getattr(torch.Tensor, attr)))
    for fn in VALUE_SHAPED:
        monkeypatch.setattr(torch, fn, counting(f"torch.{fn}", getattr(torch, fn)))
    out = model(batch)
    total = sum(v for k, v in out.items() if k.startswith("loss"))
    total.backward()
    monkeypatch.undo()
    assert counts == {}, counts
    assert torch.isfinite(total)
