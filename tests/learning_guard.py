"""The learning guard's shared pieces (tests/test_learning.py, tests/test_learning_unseen.py): the seeded
synthetic set, a short tiny training and the infrared-to-visible mAP before and after it."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

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
    tf = build_test_transform(cfg.data)
    fv = torch.nn.functional.normalize(extract_features(model, visible, transform=tf, progress=False), dim=1)
    fi = torch.nn.functional.normalize(extract_features(model, infrared, transform=tf, progress=False), dim=1)
    m = rank_metrics(-(fi @ fv.T).numpy(), [r.pid for r in infrared], [r.pid for r in visible], protocol="regdb")
    return 100 * float(m["mAP"])


#: The guard's margins over the untrained model, infrared-to-visible mAP points: on the training identities
#: (what the network memorised) and on identities it never saw (the cross-modal rule).
SEEN_MARGIN = 15.0
UNSEEN_MARGIN = 5.0


def break_cross_modal_pairs(root: Path, train_ids: list[int]) -> None:
    """Give each training identity's infrared folders to another training identity (a derangement):
    the visible and infrared images of one label are then two different people."""
    ids = sorted(train_ids)
    shifted = dict(zip(ids, ids[1:] + ids[:1]))
    for cam in ("cam3", "cam6"):
        folder = root / cam
        for pid in ids:
            if (folder / f"{pid:04d}").is_dir():
                (folder / f"{pid:04d}").rename(folder / f"tmp{shifted[pid]:04d}")
        for tmp in folder.glob("tmp*"):
            tmp.rename(folder / tmp.name[3:])


def train_and_measure(tmp_path: Path, root: Path, model_name: str, *, broken: bool = False,
                      steps: int = 60, seen: bool = True, unseen: bool = True) -> dict[str, float]:
    """Train ``model_name`` for ``steps`` steps on ``root`` (with ``broken``, on a copy whose cross-modal pairs
    are broken) and measure infrared-to-visible mAP before and after, on the training identities (``seen``)
    and on the test identities (``unseen``)."""
    if broken:
        root = Path(shutil.copytree(root, tmp_path / "data"))
        break_cross_modal_pairs(root, sorted({r.pid for r in build_dataset("sysu", root).train_records()}))
    dataset = build_dataset("sysu", root)
    overrides = {"agw": {}, "dam": {"specific_stages": 1, "mca_after": [3], "pca_after": [4], "local_parts": 3,
                                    "local_dim": 32}}[model_name]
    config = write_tiny_config(
        tmp_path / "tiny.yaml", root=root, output_dir=tmp_path / "run",
        data={"height": H, "width": W, "pad": 2, "ids_per_batch": 6, "images_per_id": 2, "random_erasing": 0.0},
        model={"name": model_name, **overrides},
        loss={"metric": "batch_hard" if model_name == "dam" else "wrt", "lambda3": 0.1},
        optim={"name": "adam", "lr": 1e-3, "backbone_lr": 1e-3, "warmup_epochs": 1, "milestones": [],
               "fused": "true"},  # one Adam kernel per group: a fifth off each run on the CPU
        train={"epochs": steps // 10, "iters_per_epoch": 10, "eval_every": 0, "seed": 0, "deterministic": True,
               "checkpoint_every": steps},  # last.pt at the end only (a checkpoint every 10 steps: 7% of the run)
        test={"trials": 1, "batch_size": 64},
    )
    cfg = load_config(config)
    run_training(cfg)
    trained, _ = load_trained_model(cfg, tmp_path / "run" / "checkpoints" / "last.pt")
    seed_everything(0)
    untrained = build_model(copy.deepcopy(cfg), trained.num_classes)
    out = {}
    for name, records, wanted in (("seen", dataset.train_records(), seen), ("unseen", dataset.test_records(), unseen)):
        if wanted:
            out[f"{name}_before"] = cross_modal_map(untrained, records, cfg)
            out[f"{name}_after"] = cross_modal_map(trained, records, cfg)
    return out


def synthetic_sets(tmp_path_factory):
    """``synthetic_set(ids, test_ids)``: the guard's seeded SYSU-MM01-layout set, generated once per size
    for the whole module (tests that change it work on a copy)."""
    made: dict[tuple[int, int], Path] = {}

    def get(ids: int, test_ids: int) -> Path:
        if (ids, test_ids) not in made:
            made[ids, test_ids] = generate("sysu", tmp_path_factory.mktemp(f"sysu{ids}") / "data", ids=ids,
                                           test_ids=test_ids, seed=3, images_per_camera=3, size=(H, W),
                                           workers=1, progress=False)
        return made[ids, test_ids]

    return get
