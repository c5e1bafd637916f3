"""Trainer, optimiser and schedule: tested on a tiny ReIDModel and a tiny in-memory loader."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from vireid.config.defaults import VireidConfig
from vireid.engine import trainer as trainer_module
from vireid.engine.hooks import Hook
from vireid.engine.optim import build_optimizer, build_scheduler, current_lrs
from vireid.engine.trainer import Trainer, seed_everything
from vireid.errors import CheckpointError, ConfigError
from vireid.models import checkpoint as checkpoint_module
from vireid.models.base import ReIDModel

NUM_CLASSES = 5


# -- fakes ---------------------------------------------------------------------------------------
class TinyReIDModel(ReIDModel):
    """Two-layer conv net with a BNNeck-like head; dropout makes the step depend on torch's RNG."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.bottleneck = nn.BatchNorm1d(4)
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(4, num_classes, bias=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(images)).mean(dim=(2, 3))

    def forward(self, batch):
        feat = self.features(batch["images"])
        logits = self.classifier(self.dropout(self.bottleneck(feat)))
        loss_id = F.cross_entropy(logits, batch["pids"])
        loss_norm = 0.01 * feat.pow(2).sum(dim=1).mean()
        acc = (logits.argmax(1) == batch["pids"]).float().mean()
        return {"loss_id": loss_id, "loss_norm": loss_norm, "acc": acc}

    def extract(self, images, modality):
        return self.bottleneck(self.features(images))


class FakeSampler:
    def __init__(self, seed: int):
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])


class FakeLoader:
    """Batches are a function of (seed, epoch, batch index) only, like the real training loader."""

    def __init__(self, *, seed: int = 0, num_batches: int = 3, batch_size: int = 8, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.sampler = FakeSampler(seed)
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.seen: list[list[int]] = []

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        for b in range(self.num_batches):
            g = torch.Generator().manual_seed(self.sampler.seed * 100_003 + self.sampler.epoch * 1009 + b)
            pids = torch.randint(0, self.num_classes, (self.batch_size,), generator=g)
            images = torch.rand(self.batch_size, 3, 8, 4, generator=g) * 0.5 + pids.view(-1, 1, 1, 1) / 10
            self.seen.append(pids.numpy().tolist())  # numpy: not a tensor read (the read-counting tests)
            yield {"images": images, "pids": pids, "modality": torch.arange(self.batch_size) % 2,
                   "camera": torch.zeros(self.batch_size, dtype=torch.long)}


class ScriptedEvaluator:
    """Returns the next mAP of a script (and remembers the model's weights when evaluated)."""

    def __init__(self, maps):
        self.maps = list(maps)
        self.calls: list[dict[str, torch.Tensor]] = []

    def evaluate(self, model, trials):
        assert not model.training
        self.calls.append({k: v.clone() for k, v in model.state_dict().items()})
        m = self.maps[len(self.calls) - 1]
        row = {"trial": trials[0], "rank1": m + 1, "rank5": m + 2, "rank10": m + 3, "rank20": m + 4,
               "mAP": m, "mINP": m - 1, "cmc": [m + 1] * 20}  # results carry the CMC curve (a list)
        return {"dataset": "fake", "protocol": {"dataset": "fake"}, "trials": [row],
                "mean": {k: v for k, v in row.items() if k != "trial"}}


def make_cfg(tmp_path, **train):
    cfg = OmegaConf.structured(VireidConfig)
    cfg.output_dir = str(tmp_path / "run")
    cfg.train.device = "cpu"
    cfg.train.epochs = 3
    cfg.train.eval_every = 0
    cfg.train.log_every = 2
    cfg.optim.warmup_epochs = 2
    cfg.optim.milestones = [2]
    cfg.optim.lr = 0.05
    cfg.optim.backbone_lr = 0.02
    for k, v in train.items():
        cfg.train[k] = v
    return cfg


@pytest.fixture(autouse=True)
def _restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


# -- optimiser and schedule ---------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_default_schedule_hand_computed_lrs():
    """Defaults: lr 0.1 / backbone 0.01, warm-up 10, x0.1 at 20 and 50 (0-based epochs, AGW code)."""
    cfg = OmegaConf.structured(VireidConfig)
    model = TinyReIDModel()
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt)
    expected_head = {0: 0.01, 9: 0.1, 10: 0.1, 19: 0.1, 20: 0.01, 49: 0.01, 50: 0.001}
    seen = {}
    for epoch in range(51):
        seen[epoch] = current_lrs(opt)
        sched.step()
    for epoch, head in expected_head.items():
        assert seen[epoch]["head"] == pytest.approx(head, rel=1e-12), epoch
        assert seen[epoch]["backbone"] == pytest.approx(head / 10, rel=1e-12), epoch
    # warm-up is linear: (e + 1) / 10 of the base LR
    assert seen[4]["head"] == pytest.approx(0.05, rel=1e-12)


def test_optimizer_groups_and_options():
    cfg = OmegaConf.structured(VireidConfig)
    model = TinyReIDModel()
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.SGD)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in model.backbone.parameters()}
    head_ids = {id(p) for m in (model.bottleneck, model.classifier) for p in m.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == head_ids
    assert groups["head"]["nesterov"] and groups["head"]["momentum"] == 0.9
    assert groups["head"]["weight_decay"] == 5e-4
    cfg.optim.name = "adam"
    cfg.optim.momentum = 0.8
    adam = build_optimizer(cfg, model)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.8, 0.999)
    cfg.optim.name = "rmsprop"
    with pytest.raises(ConfigError, match="rmsprop"):
        build_optimizer(cfg, model)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fused_optimizer_makes_the_same_update(name):
    """optim.fused=true (the CUDA default; CPU kernels exist too) gives the foreach update to float
    rounding over a few steps; auto leaves it off for parameters on the CPU."""
    cfg = OmegaConf.structured(VireidConfig)
    cfg.optim.name = name
    cfg.optim.momentum = 0.9
    batch = next(iter(FakeLoader()))
    weights = {}
    for flag in ("false", "true"):
        cfg.optim.fused = flag
        seed_everything(0)
        model = TinyReIDModel()
        model.dropout.p = 0.0
        opt = build_optimizer(cfg, model)
        assert all(bool(g.get("fused")) == (flag == "true") for g in opt.param_groups)
        for _ in range(3):
            out = model(batch)
            opt.zero_grad()
            (out["loss_id"] + out["loss_norm"]).backward()
            opt.step()
        weights[flag] = [p.detach().clone() for p in model.parameters()]
    # Adam divides each gradient by its own running magnitude, so in its first steps the float rounding of
    # a tiny gradient (the fused CPU kernel of torch 2.14 orders the arithmetic differently) moves a
    # weight by up to a few thousandths of the learning rate (measured 1.8e-3 x lr); SGD stays at rounding
    atol = 5e-3 * cfg.optim.lr if name == "adam" else 1e-6
    for a, b in zip(weights["true"], weights["false"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=atol)
    cfg.optim.fused = "auto"
    assert not any(g.get("fused") for g in build_optimizer(cfg, TinyReIDModel()).param_groups)
    cfg.optim.fused = "sometimes"
    with pytest.raises(ConfigError, match="optim.fused"):
        build_optimizer(cfg, TinyReIDModel())


# -- the training step ---------------------------------------------------------------------------
def _plain_sgd_cfg(tmp_path, lr=0.1):
    cfg = make_cfg(tmp_path)
    cfg.optim.momentum = 0.0
    cfg.optim.nesterov = False
    cfg.optim.weight_decay = 0.0
    cfg.optim.warmup_epochs = 0
    cfg.optim.lr = lr
    cfg.optim.backbone_lr = lr
    return cfg


def test_run_step_is_one_sgd_step_on_the_sum_of_losses(tmp_path):
    cfg = _plain_sgd_cfg(tmp_path, lr=0.1)
    seed_everything(0)
    model = TinyReIDModel()
    model.dropout.p = 0.0
    batch = next(iter(FakeLoader()))
    # independent reference: autograd of loss_id + loss_norm (not "acc"), then p - lr * grad
    ref = TinyReIDModel()
    ref.load_state_dict(model.state_dict())
    ref.dropout.p = 0.0
    ref.train()
    out = ref(batch)
    (out["loss_id"] + out["loss_norm"]).backward()
    expected = {n: (p - 0.1 * p.grad).detach() for n, p in ref.named_parameters()}

    trainer = Trainer(cfg, model, FakeLoader(), default_hooks=False)
    result = trainer.run_step(batch)
    assert result["total_loss"] == pytest.approx(float((out["loss_id"] + out["loss_norm"]).detach()), rel=1e-6)
    assert set(result) == {"total_loss", "loss_id", "loss_norm", "acc"}
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-6, atol=1e-7)


def test_gradient_clipping_limits_the_update_norm(tmp_path):
    cfg = _plain_sgd_cfg(tmp_path, lr=1.0)
    cfg.optim.clip_grad_norm = 1e-3
    seed_everything(0)
    model = TinyReIDModel()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(cfg, model, FakeLoader(), default_hooks=False)
    trainer.run_step(next(iter(FakeLoader())))
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert update.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_nonfinite_loss_and_missing_losses_raise(tmp_path):
    class NaNModel(TinyReIDModel):
        def forward(self, batch):
            out = super().forward(batch)
            out["loss_bad"] = torch.tensor(float("nan"))
            return out

    class NoLossModel(TinyReIDModel):
        def forward(self, batch):
            return {"acc": torch.tensor(1.0)}

    batch = next(iter(FakeLoader()))
    out = Trainer(make_cfg(tmp_path), NaNModel(), FakeLoader(), default_hooks=False).run_step(batch)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 0 iteration 0 \(step 0\)"):
        out["total_loss"]  # the step itself reads nothing; its first read reports the non-finite objective
    # bfloat16 autocast has no loss scaler to skip the step: a non-finite objective is an error there too
    bf16 = Trainer(make_cfg(tmp_path), NaNModel(), FakeLoader(), default_hooks=False)
    bf16.amp, bf16.amp_dtype = True, torch.bfloat16
    assert not bf16.grad_scaler.is_enabled()
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        bf16.run_step(batch)["total_loss"]
    with pytest.raises(ValueError, match="no 'loss\\*' keys"):
        Trainer(make_cfg(tmp_path), NoLossModel(), FakeLoader(), default_hooks=False).run_step(batch)


def test_amp_skipped_steps_are_counted_logged_and_written(tmp_path, caplog):
    """Under AMP a non-finite loss does not stop the run: the scaler skips the update. Here the AMP
    scaler runs on the CPU (torch.amp.GradScaler("cpu")) with a model whose loss is NaN on two chosen
    steps; those steps must leave the weights unchanged, be counted per epoch and in the run, be left out
    of the epoch's mean losses, appear in metrics.jsonl and as a warning in the log."""
    bad_steps = {1, 4}  # global steps 1 (epoch 0) and 4 (epoch 1), 3 batches per epoch

    class SometimesNaN(TinyReIDModel):
        calls = 0

        def forward(self, batch):
            out = super().forward(batch)
            if SometimesNaN.calls in bad_steps:
                out["loss_bad"] = out["loss_id"] * float("nan")
            else:
                out["loss_bad"] = out["loss_id"] * 0.0
            SometimesNaN.calls += 1
            return out

    model = SometimesNaN()
    trainer = Trainer(make_cfg(tmp_path, epochs=2), model, FakeLoader(num_batches=3))
    trainer.amp = True
    trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    weights = []

    class Snapshot(Hook):
        def after_step(self, tr, outputs):
            weights.append((outputs.get("skipped", 0.0), [p.detach().clone() for p in model.parameters()]))

    trainer.hooks.append(Snapshot())
    with caplog.at_level("WARNING"):
        trainer.train()
    assert trainer.nonfinite_steps == 2
    assert [w[0] for w in weights] == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    for step in bad_steps:  # a skipped step leaves every weight as the step before left it
        assert all(torch.equal(a, b) for a, b in zip(weights[step][1], weights[step - 1][1]))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["skipped_steps"] for r in epochs] == [1, 1]
    assert all(math.isfinite(v) for r in epochs for v in r["losses"].values())
    assert "epoch 0: 1 of 3 steps skipped by the AMP scaler" in caplog.text


def test_override_point_run_step(tmp_path):
    class CountingTrainer(Trainer):
        def run_step(self, batch):
            out = super().run_step(batch)
            out["batch_size"] = float(len(batch["pids"]))
            return out

    cfg = make_cfg(tmp_path, epochs=1)
    t = CountingTrainer(cfg, TinyReIDModel(), FakeLoader(num_batches=2), tensorboard=False)
    t.train()
    record = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")][-1]
    assert record["losses"]["batch_size"] == 8.0


# -- a whole run ---------------------------------------------------------------------------------
def test_training_run_writes_logs_checkpoints_and_best(tmp_path):
    cfg = make_cfg(tmp_path, epochs=3, eval_every=1, log_every=2)
    seed_everything(0)
    evaluator = ScriptedEvaluator([10.0, 30.0, 20.0])
    loader = FakeLoader(num_batches=3)
    trainer = Trainer(cfg, TinyReIDModel(), loader, evaluator=evaluator, eval_trials=[0])
    trainer.train()
    run = tmp_path / "run"

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "train"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8]  # log_every 2 over 9 steps
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and [r["step"] for r in epochs] == [3, 6, 9]
    # LRs of the schedule (warm-up 2, x0.1 at epoch 2): head 0.05 * (1/2, 1, 0.1)
    assert [r["lr"]["head"] for r in epochs] == pytest.approx([0.025, 0.05, 0.005])
    assert [r["lr"]["backbone"] for r in epochs] == pytest.approx([0.01, 0.02, 0.002])
    assert [r["eval"]["mean"]["mAP"] for r in epochs] == [10.0, 30.0, 20.0]
    assert set(epochs[0]["losses"]) == {"total_loss", "loss_id", "loss_norm", "acc"}
    assert all(math.isfinite(v) for r in steps for v in r["losses"].values())

    last = checkpoint_module.load_checkpoint(run / "checkpoints" / "last.pt")
    best = checkpoint_module.load_checkpoint(run / "checkpoints" / "best.pt")
    assert last["epoch"] == 2 and last["global_step"] == 9 and last["best_metric"] == 30.0
    assert best["epoch"] == 1 and best["best_epoch"] == 1 and best["num_classes"] == NUM_CLASSES
    # best.pt holds the weights evaluated at epoch 1
    for k, v in evaluator.calls[1].items():
        assert torch.equal(best["model"][k], v), k
    assert "optim:" in last["config"] and last["sampler"] == {"epoch": 2, "seed": 0}
    log = (run / "log.txt").read_text()
    assert "epoch 2 done" in log and "new best mAP 30.00 at epoch 1" in log
    assert list(run.glob("events.out.tfevents.*"))
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert best["extra"] == {"selected_on_test_set": True, "selected_by": "mAP on test trial(s) [0]",
                             "torch_threads": torch.get_num_threads()}


def test_best_checkpoint_by_rank1_as_the_reference_code(tmp_path):
    # the scripted rank1 is mAP + 1 but here mAP and rank-1 disagree: make rank1 peak at epoch 2
    class Rank1Evaluator(ScriptedEvaluator):
        def evaluate(self, model, trials):
            out = super().evaluate(model, trials)
            out["mean"]["rank1"] = [5.0, 1.0, 9.0][len(self.calls) - 1]
            return out

    cfg = make_cfg(tmp_path, epochs=3, eval_every=1, best_metric="rank1")
    trainer = Trainer(cfg, TinyReIDModel(), FakeLoader(num_batches=2), evaluator=Rank1Evaluator([10.0, 30.0, 20.0]),
                      eval_trials=[0])
    trainer.train()
    best = checkpoint_module.load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["epoch"] == 2 and best["best_metric"] == 9.0
    assert best["extra"]["selected_by"] == "rank1 on test trial(s) [0]"
    with pytest.raises(ConfigError, match="train.best_metric.*mAP, rank1"):
        Trainer(make_cfg(tmp_path, best_metric="R1"), TinyReIDModel(), FakeLoader())


def test_a_kill_between_the_metrics_line_and_the_checkpoint_loses_nothing(tmp_path, monkeypatch, caplog):
    """Killed at epoch 1 after its metrics.jsonl line but before its checkpoint: the resumed run re-runs
    epoch 1, the stale line is dropped, every epoch has exactly one line; the killed write's temporary
    file is removed; a different thread count is warned about."""
    cfg = make_cfg(tmp_path, epochs=3)
    real_save = checkpoint_module.save_checkpoint

    class Killed(Exception):
        pass

    def dying_save(path, **kwargs):
        if kwargs["epoch"] == 1:
            (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"half a checkpoint")  # the killed write
            raise Killed
        return real_save(path, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", dying_save)
    with pytest.raises(Killed):
        Trainer(cfg, TinyReIDModel(), FakeLoader()).train()
    metrics = tmp_path / "run" / "metrics.jsonl"
    written = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in written if r["type"] == "epoch"] == [0, 1]  # epoch 1's line, no checkpoint
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    ckpt = checkpoint_module.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    ckpt["extra"]["torch_threads"] = torch.get_num_threads() + 1  # as if written by another thread count
    torch.save(ckpt, tmp_path / "run" / "checkpoints" / "last.pt")
    resumed = Trainer(cfg, TinyReIDModel(), FakeLoader())
    with caplog.at_level("WARNING"):
        resumed.resume()
    assert "need the same thread count" in caplog.text
    resumed.train()
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [0, 1, 2]
    assert [r["type"] for r in records].count("resume") == 1
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


class KillAfterEpoch(Hook):
    """Simulates a run killed right after epoch ``epoch`` (its checkpoint already written)."""

    class Killed(Exception):
        pass

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_epoch(self, trainer):
        if trainer.epoch == self.epoch:
            raise self.Killed


def _train(tmp_path, name, *, kill_after=None, resume=False):
    cfg = make_cfg(tmp_path, epochs=3, deterministic=True, eval_every=2)
    cfg.output_dir = str(tmp_path / name)
    seed_everything(cfg.train.seed)
    model = TinyReIDModel()
    hooks = [KillAfterEpoch(kill_after)] if kill_after is not None else []
    script = [7.0] if resume else [5.0, 7.0]  # evaluations at epochs 1 and 2
    trainer = Trainer(cfg, model, FakeLoader(seed=cfg.train.seed), evaluator=ScriptedEvaluator(script),
                      eval_trials=[0], hooks=hooks, tensorboard=False)
    if resume:
        assert trainer.resume() == 2
    try:
        trainer.train()
    except KillAfterEpoch.Killed:
        pass
    return trainer


def _assert_same_training_state(a: Trainer, b: Trainer):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for i in oa:
        assert torch.equal(oa[i]["momentum_buffer"], ob[i]["momentum_buffer"])
    assert a.global_step == b.global_step and a.scheduler.last_epoch == b.scheduler.last_epoch


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted 3-epoch run both resume tests compare against."""
    before = torch.are_deterministic_algorithms_enabled()
    trainer = _train(tmp_path_factory.mktemp("straight"), "straight")
    torch.use_deterministic_algorithms(before)
    return trainer


def test_resume_after_a_kill_ends_with_identical_weights(tmp_path, straight_run):
    straight = straight_run
    _train(tmp_path, "resumed", kill_after=1)
    killed_ckpt = checkpoint_module.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert killed_ckpt["epoch"] == 1 and killed_ckpt["best_metric"] == 5.0
    resumed = _train(tmp_path, "resumed", resume=True)
    _assert_same_training_state(straight, resumed)
    assert resumed.best_metric == straight.best_metric == 7.0
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert {"type": "resume", "epoch": 2, "step": 6} in [json.loads(x) for x in lines]


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch, straight_run):
    """Control: the dropout RNG matters, so the equality above really tests the RNG restore."""
    straight = straight_run
    _train(tmp_path, "resumed", kill_after=1)
    monkeypatch.setattr(trainer_module, "set_rng_state", lambda state: None)
    torch.manual_seed(12345)
    resumed = _train(tmp_path, "resumed", resume=True)
    differs = any(not torch.equal(v, resumed.model.state_dict()[k]) for k, v in straight.model.state_dict().items())
    assert differs


def test_resume_missing_checkpoint_is_an_error(tmp_path):
    trainer = Trainer(make_cfg(tmp_path), TinyReIDModel(), FakeLoader(), default_hooks=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        trainer.resume()


def test_deterministic_flag_sets_torch_flags(tmp_path):
    torch.use_deterministic_algorithms(False)
    Trainer(make_cfg(tmp_path, deterministic=True), TinyReIDModel(), FakeLoader(), default_hooks=False)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_bad_train_values_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.device"):
        Trainer(make_cfg(tmp_path, device="tpu"), TinyReIDModel(), FakeLoader(), default_hooks=False)
    with pytest.raises(ConfigError, match="train.eval_every"):
        Trainer(make_cfg(tmp_path, eval_every=-1), TinyReIDModel(), FakeLoader(), default_hooks=False)


def test_channels_last_gives_the_same_step(tmp_path):
    """train.channels_last=true changes the memory format only: the same losses and updates (to float
    tolerance) as the contiguous layout; auto leaves it off on the CPU."""
    batch = next(iter(FakeLoader()))
    results = {}
    for flag in ("false", "true"):
        seed_everything(0)
        model = TinyReIDModel()
        trainer = Trainer(make_cfg(tmp_path / flag, channels_last=flag), model, FakeLoader(), default_hooks=False)
        results[flag] = (trainer.run_step(batch), [p.detach().clone() for p in model.parameters()])
        assert trainer.channels_last == (flag == "true")
    assert results["true"][0]["total_loss"] == pytest.approx(results["false"][0]["total_loss"], rel=1e-5)
    for a, b in zip(results["true"][1], results["false"][1]):
        assert torch.allclose(a, b, atol=1e-5)
    assert not Trainer(make_cfg(tmp_path / "auto"), TinyReIDModel(), FakeLoader(), default_hooks=False).channels_last
    with pytest.raises(ConfigError, match="train.channels_last"):
        Trainer(make_cfg(tmp_path / "bad", channels_last="yes"), TinyReIDModel(), FakeLoader(), default_hooks=False)


def test_resuming_a_finished_run_says_it_is_complete(tmp_path, caplog):
    cfg = make_cfg(tmp_path, epochs=2)
    Trainer(cfg, TinyReIDModel(), FakeLoader()).train()
    again = Trainer(cfg, TinyReIDModel(), FakeLoader())
    again.resume()
    with caplog.at_level("INFO", logger="vireid.engine"):
        again.train()
    assert "the run is already complete: its 2 epochs (0..1) are trained" in caplog.text
    assert "resuming at" not in caplog.text


def _count_host_reads(monkeypatch):
    """Counts of the tensor methods that read a value back to the host (a device synchronisation on an
    accelerator)."""
    counts = {"tolist": 0, "item": 0, "float": 0, "bool": 0, "int": 0}
    for name, attr in (("tolist", "tolist"), ("item", "item"), ("float", "__float__"), ("bool", "__bool__"),
                       ("int", "__int__")):
        real = getattr(torch.Tensor, attr)

        def wrapper(self, *args, _name=name, _real=real, **kwargs):
            counts[_name] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, attr, wrapper)
    return counts


def test_run_step_reads_nothing_and_its_outputs_in_one_copy(tmp_path, monkeypatch):
    """A step reads no value back from the device; its scalar outputs reach the host in one copy on the
    first read, then come from that copy."""
    trainer = Trainer(make_cfg(tmp_path), TinyReIDModel(), FakeLoader(), default_hooks=False)
    batch = next(iter(FakeLoader()))
    trainer.run_step(batch)  # warm-up (lazy initialisation outside the count)
    counts = _count_host_reads(monkeypatch)
    out = trainer.run_step(batch)
    assert counts == {"tolist": 0, "item": 0, "float": 0, "bool": 0, "int": 0}, counts
    assert set(out) == {"total_loss", "loss_id", "loss_norm", "acc"}
    assert all(isinstance(v, float) for v in out.values()) and out["total_loss"] == out["total_loss"]
    monkeypatch.undo()
    assert counts["tolist"] == 1 and counts["item"] + counts["float"] + counts["bool"] + counts["int"] == 0, counts


@pytest.mark.parametrize("log_every, reads", [(0, 1), (3, 3), (2, 4)])
def test_an_epoch_reads_the_device_once_per_log_interval(tmp_path, monkeypatch, log_every, reads):
    """6 steps: one read per log interval (shared by every logging hook) and one at the end of the epoch,
    with the same epoch means as the step outputs averaged on the host."""
    cfg = make_cfg(tmp_path, epochs=1, log_every=log_every)
    seed_everything(0)
    trainer = Trainer(cfg, TinyReIDModel(), FakeLoader(num_batches=6), tensorboard=False)
    trainer.start_epoch, trainer.epoch = 0, 0
    counts = _count_host_reads(monkeypatch)
    trainer.train_epoch(0)
    monkeypatch.undo()
    assert counts == {"tolist": reads, "item": 0, "float": 0, "bool": 0, "int": 0}, counts
    seed_everything(0)
    again = Trainer(cfg, TinyReIDModel(), FakeLoader(num_batches=6), default_hooks=False)
    again.train_loader.set_epoch(0)
    steps = [dict(again.run_step(b)) for b in again.train_loader]
    for k, v in trainer.epoch_losses.items():
        assert v == pytest.approx(sum(s[k] for s in steps) / 6, rel=1e-5)
    if log_every:
        lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in lines if r["type"] == "train"]
        assert [r["step"] for r in train] == list(range(log_every, 7, log_every))
        first = train[0]["losses"]["total_loss"]
        assert first == pytest.approx(sum(s["total_loss"] for s in steps[:log_every]) / log_every, rel=1e-5)


def test_a_nonfinite_loss_stops_the_epoch_before_its_checkpoint(tmp_path):
    """Without AMP a non-finite objective is found at the next read (the end of the epoch here) and names
    its step; no checkpoint of the broken weights is written."""
    class NaNOnSecondStep(TinyReIDModel):
        calls = 0

        def forward(self, batch):
            out = super().forward(batch)
            NaNOnSecondStep.calls += 1
            out["loss_bad"] = out["loss_id"] * (float("nan") if NaNOnSecondStep.calls == 2 else 0.0)
            return out

    trainer = Trainer(make_cfg(tmp_path, epochs=1, log_every=0), NaNOnSecondStep(), FakeLoader(num_batches=3))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 0 iteration 2 \(step 1\)"):
        trainer.train()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_compiled_model_takes_the_same_steps_and_keeps_its_keys(tmp_path, monkeypatch):
    """train.compile=true compiles the model in place (module.compile): the same losses and weights as
    eager over a few steps (dropout off: compiled dropout draws other random numbers), the same state-dict
    keys (checkpoints load either way), and train.compile_mode reaches torch.compile."""
    batch = next(iter(FakeLoader()))
    runs = {}
    for flag in (False, True):
        seed_everything(0)
        model = TinyReIDModel()
        model.dropout.p = 0.0
        trainer = Trainer(make_cfg(tmp_path / str(flag), compile=flag), model, FakeLoader(), default_hooks=False)
        assert trainer.compiled == flag
        losses = [dict(trainer.run_step(batch))["total_loss"] for _ in range(3)]
        runs[flag] = (losses, model.state_dict())
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    assert list(runs[True][1]) == list(runs[False][1])
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k], v, rtol=1e-4, atol=1e-6)
    modes = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: modes.append(kw.get("mode")))
    Trainer(make_cfg(tmp_path / "ro", compile=True, compile_mode="reduce-overhead"), TinyReIDModel(), FakeLoader(),
            default_hooks=False)
    assert modes == ["reduce-overhead"]
    with pytest.raises(ConfigError, match="train.compile_mode"):
        Trainer(make_cfg(tmp_path / "bad", compile=True, compile_mode="fastest"), TinyReIDModel(), FakeLoader(),
                default_hooks=False)
