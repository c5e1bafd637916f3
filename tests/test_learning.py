"""A guard on learning: a short CPU training on a small synthetic set must beat the untrained model by a
clear margin, so a change that breaks learning (a loss cut off from the graph, labels that do not match
the images, an optimiser that does not step, augmentations that destroy the images) fails CI.

It measures infrared-to-visible retrieval of the training identities (what 60 steps can teach a
network from scratch); bench/learning.py measures the test identities with the full tiny recipes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.layouts import write_tiny_config
from vireid.config import load_config
from vireid.data import build_dataset
from vireid.data.synthetic import generate
from vireid.data.transforms import build_test_transform
from vireid.engine.run import load_trained_model, run_training
from vireid.engine.trainer import seed_everything
from vireid.evaluation.evaluator import extract_features
from vireid.evaluation.metrics import rank_metrics
from vireid.models import build_model

H, W = 64, 32


def cross_modal_map(model, records, cfg) -> float:
    """mAP of every infrared image against the visible images (all cameras), in percent."""
    visible = [r for r in records if r.modality == "visible"]
    infrared = [r for r in records if r.modality == "infrared"]
    tf = build_test_transform(cfg)
    fv = torch.nn.functional.normalize(extract_features(model, visible, transform=tf, progress=False), dim=1)
    fi = torch.nn.functional.normalize(extract_features(model, infrared, transform=tf, progress=False), dim=1)
    m = rank_metrics(-(fi @ fv.T).numpy(), [r.pid for r in infrared], [r.pid for r in visible], protocol="regdb")
    return 100 * float(m["mAP"])


@pytest.mark.parametrize("model_name", ["agw", "dam"])
def test_short_training_beats_the_untrained_model(tmp_path, model_name):
    root = generate("sysu", tmp_path / "data", ids=16, test_ids=4, seed=3, images_per_camera=3, size=(H, W),
                    workers=1, progress=False)
    overrides = {"agw": {}, "dam": {"specific_stages": 1, "mca_after": [3], "pca_after": [4], "local_parts": 3,
                                    "local_dim": 32}}[model_name]
    config = write_tiny_config(
        tmp_path / "tiny.yaml", root=root, output_dir=tmp_path / "run",
        data={"height": H, "width": W, "pad": 2, "ids_per_batch": 6, "images_per_id": 2},
        model={"name": model_name, **overrides},
        loss={"metric": "batch_hard" if model_name == "dam" else "wrt", "lambda3": 0.1},
        optim={"name": "adam", "lr": 1e-3, "backbone_lr": 1e-3, "warmup_epochs": 1, "milestones": []},
        train={"epochs": 6, "iters_per_epoch": 10, "eval_every": 0, "seed": 0, "deterministic": True},
        test={"trials": 1, "batch_size": 64},
    )
    cfg = load_config(config)
    run_training(cfg)
    records = build_dataset("sysu", root).train_records()
    trained, _ = load_trained_model(cfg, tmp_path / "run" / "checkpoints" / "last.pt")
    seed_everything(0)
    untrained = build_model(copy.deepcopy(cfg), trained.num_classes)
    before = cross_modal_map(untrained, records, cfg)
    after = cross_modal_map(trained, records, cfg)
    print(f"\n{model_name}: infrared->visible mAP of the training identities, untrained {before:.1f}, trained {after:.1f}")
    assert after > before + 15, (before, after)
