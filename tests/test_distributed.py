"""DDP on CPU: two Gloo processes train a tiny model; the replicas must stay identical, see different
batches, and match one process trained on both ranks' batches together (gradient averaging)."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from vireid.config.defaults import VireidConfig
from vireid.engine.trainer import Trainer, seed_everything
from vireid.models.base import ReIDModel

WORLD_SIZE = 2
NUM_CLASSES = 4
STEPS_PER_EPOCH = 2
EPOCHS = 2
BATCH = 6
TIMEOUT_S = 120


class TinyNet(ReIDModel):
    """No BatchNorm or dropout, mean losses: DDP's averaged gradient equals the gradient on the
    concatenated batches, which the test checks against a single-process run."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.classifier = nn.Linear(4, NUM_CLASSES)

    def forward(self, batch):
        feat = torch.relu(self.backbone(self.normalize(batch["images"]))).mean(dim=(2, 3))
        return {"loss_id": F.cross_entropy(self.classifier(feat), batch["pids"])}

    def extract(self, images, modality):
        return torch.relu(self.backbone(self.normalize(images))).mean(dim=(2, 3))


def make_batch(epoch: int, index: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * epoch + index)
    pids = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
    return {"images": torch.rand(BATCH, 3, 6, 4, generator=g), "pids": pids,
            "modality": torch.zeros(BATCH, dtype=torch.long), "camera": torch.zeros(BATCH, dtype=torch.long)}


class RankLoader:
    """Global batch ``b`` of an epoch goes to rank ``b % world_size`` (like the identity sampler)."""

    num_classes = NUM_CLASSES

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.seen: list[tuple[int, int]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return STEPS_PER_EPOCH

    def __iter__(self):
        for i in range(STEPS_PER_EPOCH):
            index = i * self.world_size + self.rank
            self.seen.append((self.epoch, index))
            yield make_batch(self.epoch, index)


def make_cfg(output_dir: str):
    cfg = OmegaConf.structured(VireidConfig)
    cfg.output_dir = output_dir
    cfg.train.update(device="cpu", epochs=EPOCHS, eval_every=0, log_every=1, deterministic=True)
    cfg.optim.update(warmup_epochs=0, lr=0.2, backbone_lr=0.1, weight_decay=1e-3)
    return cfg


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from vireid.engine.distributed import cleanup, init_distributed

    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, WORLD_SIZE, "gloo")
    seed_everything(100 + rank)  # different initial weights: DDP must broadcast rank 0's
    model = TinyNet()
    loader = RankLoader(rank, WORLD_SIZE)
    trainer = Trainer(make_cfg(os.path.join(out_dir, "run")), model, loader, dist=ctx, tensorboard=False)
    trainer.train()
    torch.save({"state": trainer.model_without_ddp.state_dict(), "seen": loader.seen},
               os.path.join(out_dir, f"rank{rank}.pt"))
    cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.slow
def test_two_gloo_ranks_stay_identical_and_average_gradients(tmp_path):
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"distributed training did not finish within {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE))

    # the replicas are identical after training
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # they saw different, complementary batches
    assert set(r0["seen"]).isdisjoint(r1["seen"])
    assert sorted(r0["seen"] + r1["seen"]) == [(e, b) for e in range(EPOCHS) for b in range(4)]

    # reference: one process, rank 0's initial weights, each step on the two ranks' batches together
    seed_everything(100)
    ref = TinyNet()
    trainer = Trainer(make_cfg(str(tmp_path / "ref")), ref, RankLoader(0, 1), default_hooks=False)
    for epoch in range(EPOCHS):
        for i in range(STEPS_PER_EPOCH):
            parts = [make_batch(epoch, i * WORLD_SIZE + r) for r in range(WORLD_SIZE)]
            trainer.run_step({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
        trainer.scheduler.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)

    # only rank 0 wrote the run folder; the checkpoint holds both ranks' RNG states
    run = tmp_path / "run"
    epochs = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"type": "epoch"' in line]
    assert len(epochs) == EPOCHS
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == EPOCHS - 1 and len(last["rng"]) == WORLD_SIZE
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])
