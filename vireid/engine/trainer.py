"""The training loop: one override point for a step, hooks for everything else.

:class:`Trainer` trains any :class:`~vireid.models.base.ReIDModel`: ``forward(batch)`` returns a
dict whose ``loss*`` entries are summed into the objective. Subclasses change the step by overriding
:meth:`Trainer.run_step`; logging, checkpoints and evaluation are :mod:`vireid.engine.hooks`.

Epochs are 0-based everywhere (the LR schedule, ``metrics.jsonl``, checkpoints); a checkpoint's
``epoch`` is the last completed epoch and a resumed run continues with the next one.

Reproducibility: :func:`seed_everything` seeds Python, NumPy and torch; with ``train.deterministic``
:func:`configure_determinism` turns on ``torch.use_deterministic_algorithms`` and the cuDNN flags. The
training loader draws its batches and augmentations as a function of ``(train.seed, epoch)`` and the
checkpoint restores model, optimiser, scheduler, AMP scaler, sampler and every RNG, so on CPU a run
killed after epoch ``e`` and resumed ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vireid.engine.distributed import DistributedContext, resolve_device, wrap_model
from vireid.engine.hooks import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    CheckpointHook,
    EvaluationHook,
    Hook,
    MetricsLogHook,
    TensorBoardHook,
    TextLogHook,
)
from vireid.engine.optim import build_optimizer, build_scheduler, current_lrs
from vireid.engine.settings import OptimSettings, TrainSettings
from vireid.engine.step import DeviceSums, StepOutputs, check_batch_codes, move_batch
from vireid.errors import CheckpointError
from vireid.models.checkpoint import (
    apply_model_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)

logger = logging.getLogger("vireid.engine")


def amp_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``train.amp_dtype`` on ``device``."""
    if name == "bfloat16" or (name == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool) -> None:
    """``train.deterministic``: deterministic algorithms (errors on ops that have none), cuDNN
    deterministic and no autotuning, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (needed by cuBLAS; set
    before CUDA starts, or the variable has no effect). Off: cuDNN autotuning for speed."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


class Trainer:
    """Trains ``model`` on ``train_loader`` with the given settings; it never reads the configuration.

    Args:
        settings: :class:`~vireid.engine.settings.TrainSettings` (built once from the config by
            :func:`vireid.engine.run.build_training_parts`), or a resolved config, whose ``TrainSettings`` and
            ``OptimSettings`` are then built here (a shortcut for tests and scripts).
        model: a :class:`~vireid.models.base.ReIDModel` (moved to the device, wrapped in DDP when
            distributed).
        optimizer, scheduler: built over ``model`` (:func:`~vireid.engine.optim.build_optimizer`,
            :func:`~vireid.engine.optim.build_scheduler`); default: from the config given as ``settings``,
            else from ``optim`` (:class:`~vireid.engine.settings.OptimSettings`).
        train_loader: iterable of batch dicts with ``len``; ``set_epoch(epoch)`` is called before each
            epoch when present, and ``sampler.state_dict()``/``load_state_dict()`` go into checkpoints.
        evaluator: an object with ``evaluate(model, trials) -> results`` (results in percent with a
            ``"mean"`` dict holding ``"mAP"``); evaluated every ``train.eval_every`` epochs on
            ``eval_trials`` (default: the protocol's first trial).
        hooks: extra :class:`~vireid.engine.hooks.Hook` objects, called after the default ones.
        output_dir: run folder (default ``settings.output_dir``).
        dist: the :class:`~vireid.engine.distributed.DistributedContext` (default: one process on
            ``train.device``).
        default_hooks: install evaluation, checkpoint, metrics.jsonl, TensorBoard and log.txt hooks.
        tensorboard: include the TensorBoard hook among the defaults.
    """

    def __init__(
        self,
        settings: TrainSettings | Any,
        model: nn.Module,
        train_loader: Any,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        optim: OptimSettings | None = None,
        evaluator: Any | None = None,
        eval_trials: Sequence[int] | None = None,
        hooks: Iterable[Hook] = (),
        output_dir: str | Path | None = None,
        dist: DistributedContext | None = None,
        default_hooks: bool = True,
        tensorboard: bool = True,
    ):
        if not isinstance(settings, TrainSettings):  # a config: its settings, read here once
            optim = optim or OptimSettings.from_config(settings)
            settings = TrainSettings.from_config(settings)
        optim = optim or OptimSettings()
        self.settings = t = settings
        self.dist = dist if dist is not None else DistributedContext(device=resolve_device(t.device))
        self.device = self.dist.device
        configure_determinism(t.deterministic)
        self.output_dir = Path(output_dir if output_dir is not None else t.output_dir)
        #: channels-last memory format: "auto" turns it on for CUDA only (measured 15-25% slower for the tiny
        #: CNNs on a 2-core CPU; docs/architecture.md, "Speed options")
        self.channels_last = t.channels_last == "true" or (t.channels_last == "auto" and self.device.type == "cuda")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = wrap_model(model, self.dist, find_unused_parameters=t.find_unused_parameters)
        #: train.compile: the (DDP-wrapped) model compiled in place by torch.compile; its state_dict keys
        #: are unchanged, so checkpoints load into an uncompiled model and back
        self.compiled = t.compile
        if self.compiled:  # reduce-overhead: CUDA graphs where the step allows (torch.compile's own mode)
            self.model.compile(mode=t.compile_mode)
        self.train_loader = train_loader
        self.num_classes: int | None = getattr(train_loader, "num_classes", None)
        self.optimizer = optimizer if optimizer is not None else build_optimizer(optim, self.model)
        self.scheduler = scheduler if scheduler is not None else build_scheduler(optim, self.optimizer)
        self.amp = t.amp and self.device.type == "cuda"
        #: autocast dtype: bfloat16 where the GPU supports it ("auto"; no loss scaling needed), else float16
        self.amp_dtype = amp_dtype(t.amp_dtype, self.device) if self.amp else None
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.clip_grad_norm = t.clip_grad_norm
        self.max_epochs = t.epochs
        self.eval_every = t.eval_every
        self.best_key = t.best_metric
        self.checkpoint_every = t.checkpoint_every
        self.evaluator = evaluator
        if eval_trials is None and evaluator is not None:
            protocol = getattr(evaluator, "protocol", None)
            if protocol is None:
                raise ValueError("eval_trials is required when the evaluator has no 'protocol' attribute")
            eval_trials = [protocol.trials[0]]
        self.eval_trials = list(eval_trials or [])

        # state
        self.start_epoch = 0
        self.epoch = 0
        self.global_step = 0
        self.iter_in_epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.eval_results: dict[str, Any] | None = None
        self.eval_improved = False
        self.epoch_losses: dict[str, float] = {}
        self.epoch_lrs: dict[str, float] = current_lrs(self.optimizer)
        self.epoch_time = 0.0
        self.nonfinite_steps = 0  # steps skipped for a non-finite loss or gradient (AMP), whole run
        self.epoch_skipped_steps = 0  # the same, this epoch (metrics.jsonl "skipped_steps", log.txt)
        self.final_test_trials: list[int] = list(self.eval_trials)  # set by build_trainer
        self._window = DeviceSums()  # outputs since the last window_losses() read
        self._window_step = 0
        self._window_means: dict[str, float] = {}
        self._bar: Any = None

        self.hooks: list[Hook] = []
        if default_hooks:
            if evaluator is not None:
                self.hooks.append(EvaluationHook(evaluator, self.eval_trials))
            # metrics.jsonl before the checkpoint: a run killed between the two re-runs the epoch on resume,
            # and the resumed MetricsLogHook drops the lines of epochs it will run again
            self.hooks.append(MetricsLogHook(self.output_dir / METRICS_FILE, t.log_every))
            self.hooks.append(CheckpointHook(self.output_dir / CHECKPOINT_DIR))
            if tensorboard:
                self.hooks.append(TensorBoardHook(self.output_dir, t.log_every))
            self.hooks.append(TextLogHook(self.output_dir / LOG_FILE, t.log_every))
        self.hooks.extend(hooks)

    # -- properties ------------------------------------------------------------------------
    @property
    def model_without_ddp(self) -> nn.Module:
        return unwrap_model(self.model)

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def sampler(self) -> Any:
        return getattr(self.train_loader, "sampler", None)

    def eval_due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` ends with an evaluation (every ``eval_every`` and the last)."""
        if self.evaluator is None or self.eval_every == 0 or not self.eval_trials:
            return False
        return (epoch + 1) % self.eval_every == 0 or epoch == self.max_epochs - 1

    def checkpoint_due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` ends with ``last.pt`` (every ``checkpoint_every`` and the last)."""
        if self.checkpoint_every == 0:
            return False
        return (epoch + 1) % self.checkpoint_every == 0 or epoch == self.max_epochs - 1

    # -- the one override point ------------------------------------------------------------
    def run_step(self, batch: dict[str, Any]) -> StepOutputs:
        """One optimisation step: forward, sum of the ``loss*`` outputs, backward (AMP-scaled on CUDA
        when ``train.amp``), optional gradient clipping (``optim.clip_grad_norm``), optimiser step.

        Nothing is read back from the device: the batch's labels are checked on the host before they move
        (:func:`check_batch_codes`), and the step's scalar outputs come back as :class:`StepOutputs`, whose
        first read copies them all at once (``total_loss`` is the objective; ``"skipped": 1.0`` when the
        AMP scaler skipped the update for a non-finite loss or gradient). Without a loss scaler (float32, or
        bfloat16 autocast) a non-finite objective is a :class:`FloatingPointError` when its outputs are read (the training loop reads once per log
        interval and at the end of each epoch, before any checkpoint).
        """
        check_batch_codes(batch, self.num_classes)
        batch = move_batch(batch, self.device)
        if "augment" in batch:  # data.augment_on=device: uint8 images, augmented here as one batch
            augment = getattr(self.train_loader, "batch_augment", None)
            if augment is None:
                raise ValueError("the batch carries augmentation parameters but the training loader has no batch_augment")
            batch["images"] = augment(batch["images"], batch.pop("augment"))
        if self.channels_last:
            batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, enabled=self.amp, dtype=self.amp_dtype):
            outputs = self.model(batch)
        if not isinstance(outputs, dict):
            raise TypeError(f"{type(self.model_without_ddp).__name__}.forward must return a dict in training mode")
        losses = {k: v for k, v in outputs.items() if k.startswith("loss")}
        if not losses:
            raise ValueError(
                f"{type(self.model_without_ddp).__name__}.forward returned no 'loss*' keys (got {sorted(outputs)})"
            )
        total = sum(v.float() for v in losses.values())
        names = ["total_loss"] + [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
        values = torch.stack([total.detach()] + [outputs[k].detach().float().reshape(()) for k in names[1:]])
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(total).backward()
        if self.clip_grad_norm > 0:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.clip_grad_norm
            )
        skipped = None
        if self.grad_scaler.is_enabled():
            # GradScaler lowers its scale exactly when it skips optimizer.step for an inf/NaN gradient;
            # comparing the scale tensors on the device keeps the step free of a host read
            scale_before = self.grad_scaler._scale.detach().clone()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
            skipped = (self.grad_scaler._scale < scale_before).float().reshape(())
        else:
            self.optimizer.step()
        where = (self.epoch, self.iter_in_epoch, self.global_step)
        # without a loss scaler (float32, or bfloat16 autocast) nothing skips a non-finite step: it is an error
        result = StepOutputs(names, values, skipped,
                             None if skipped is not None else lambda read: self._nonfinite_error(*where, read))
        for k, v in outputs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                result[k] = float(v)
        return result

    def _nonfinite_error(self, epoch: int, iteration: int, step: int, losses: dict[str, float]) -> None:
        shown = {k: v for k, v in losses.items() if k.startswith("loss") or k == "total_loss"}
        raise FloatingPointError(
            f"non-finite loss at epoch {epoch} iteration {iteration} (step {step}): {shown}; lower optim.lr / "
            f"optim.backbone_lr or set optim.clip_grad_norm"
        )

    def window_losses(self) -> dict[str, float]:
        """The outputs averaged over the steps since the previous call (steps the AMP scaler skipped left
        out): the one device-to-host read of a log interval. Hooks call it at their log steps; calls at the
        same step share one read. Raises :class:`FloatingPointError` for a non-finite objective without AMP."""
        if self._window_step != self.global_step:
            means, _, first_bad = self._window.read()
            self._window = DeviceSums()
            self._window_step = self.global_step
            self._window_means = means
            self._check_finite(first_bad, means)
            if self._bar is not None and "total_loss" in means:
                self._bar.set_postfix(loss=f"{means['total_loss']:.4f}", refresh=False)
        return self._window_means

    def _check_finite(self, first_bad: int, means: dict[str, float]) -> None:
        if first_bad >= 0:
            steps_before = self.global_step - self.iter_in_epoch
            self._nonfinite_error(self.epoch, first_bad - steps_before, first_bad - 1,
                                  {k: v for k, v in means.items() if not math.isfinite(v)} or means)

    # -- loop --------------------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self, *args)

    def train(self) -> None:
        """Train from ``start_epoch`` (0, or the epoch after a resumed checkpoint) to ``train.epochs``."""
        from vireid.engine.distributed import barrier

        try:
            self._call("before_train")
            for epoch in range(self.start_epoch, self.max_epochs):
                self.epoch = epoch
                self.train_epoch(epoch)
                self.scheduler.step()
                self._call("after_epoch")
                barrier()  # ranks > 0 wait while rank 0 evaluates and writes
            self._call("after_train")
        finally:
            self._call("teardown")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Run one epoch of :meth:`run_step`; sets and returns ``epoch_losses`` (epoch means)."""
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        self.epoch_lrs = current_lrs(self.optimizer)
        self.model.train()
        t0 = time.perf_counter()
        sums = DeviceSums()  # the epoch's outputs, summed on the device, read once at its end
        self._window = DeviceSums()
        self._window_step = self.global_step
        self.iter_in_epoch = 0
        self.epoch_skipped_steps = 0
        self._bar = tqdm(total=len(self.train_loader), desc=f"epoch {epoch}/{self.max_epochs - 1}", unit="step",
                         dynamic_ncols=True, leave=False, disable=None if self.is_main else True)
        try:
            for batch in self.train_loader:
                self.iter_in_epoch += 1
                outputs = self.run_step(batch)
                if not isinstance(outputs, StepOutputs):  # an overriding run_step that returns plain floats
                    outputs = StepOutputs.from_floats(outputs)
                self.global_step += 1
                sums.add(outputs, self.global_step)
                self._window.add(outputs, self.global_step)
                self._bar.update()
                self._call("after_step", outputs)
        finally:
            self._bar.close()
            self._bar = None
        if self.iter_in_epoch == 0:
            raise ValueError(f"the training loader yielded no batch in epoch {epoch}")
        means, skipped, first_bad = sums.read()
        self._check_finite(first_bad, means)
        self.epoch_skipped_steps = skipped
        self.nonfinite_steps += skipped
        if skipped:
            logger.debug("epoch %d: %d steps skipped by the AMP scaler", epoch, skipped)
        self.epoch_losses = means
        self.epoch_time = time.perf_counter() - t0
        return self.epoch_losses

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, evaluator: Any | None = None, trials: Sequence[int] | None = None) -> dict[str, Any]:
        """``evaluator.evaluate(model, trials)`` on the unwrapped model (default: the trainer's
        evaluator and eval trials); the model is back in training mode afterwards."""
        evaluator = evaluator if evaluator is not None else self.evaluator
        if evaluator is None:
            raise ValueError("no evaluator was given to the Trainer")
        model = self.model_without_ddp
        was_training = model.training
        model.eval()
        try:
            return evaluator.evaluate(model, list(trials if trials is not None else self.eval_trials))
        finally:
            model.train(was_training)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path, *, rng: list[dict[str, Any]] | None = None,
                        extra: dict[str, Any] | None = None) -> Path:
        """Write the full training state after epoch ``self.epoch`` (see
        :mod:`vireid.models.checkpoint`)."""
        return save_checkpoint(
            path,
            model=self.model,
            epoch=self.epoch,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            grad_scaler=self.grad_scaler if self.amp else None,
            sampler=self.sampler,
            global_step=self.global_step,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            num_classes=self.num_classes,
            rng=rng,
            config_yaml=self.settings.config_yaml,
            extra={"torch_threads": torch.get_num_threads(), **(extra or {})},
        )

    def resume(self, path: str | Path | None = None) -> int:
        """Restore the state of a checkpoint (default ``output_dir/checkpoints/last.pt``) and return the
        epoch training continues with. Raises :class:`CheckpointError` if the file is missing,
        unreadable or does not fit the model/optimiser."""
        path = Path(path) if path is not None else self.output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
        ckpt = load_checkpoint(path, map_location="cpu")
        apply_model_state(self.model, ckpt["model"], source=str(path), strict=True)
        try:
            if ckpt.get("optimizer") is not None:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimiser/scheduler state does not fit this model: {exc}") from exc
        if self.amp and ckpt.get("grad_scaler"):
            self.grad_scaler.load_state_dict(ckpt["grad_scaler"])
        sampler = self.sampler
        if ckpt.get("sampler") is not None and sampler is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(ckpt["sampler"])
        self.epoch = int(ckpt["epoch"])
        self.start_epoch = self.epoch + 1
        self.global_step = int(ckpt.get("global_step", 0))
        self.best_metric = ckpt.get("best_metric")
        self.best_epoch = ckpt.get("best_epoch")
        self.epoch_lrs = current_lrs(self.optimizer)
        rngs = ckpt.get("rng") or []
        if self.dist.rank < len(rngs):
            set_rng_state(rngs[self.dist.rank])
        else:
            logger.warning("%s has no RNG state for rank %d (saved with world size %d); RNG not restored",
                           path, self.dist.rank, len(rngs))
        self._warn_config_changes(path, ckpt.get("config"))
        threads = (ckpt.get("extra") or {}).get("torch_threads")
        if threads is not None and threads != torch.get_num_threads() and self.is_main:
            logger.warning("%s was written by a process with %d torch threads, this one has %d: the run continues, "
                           "but weights identical to an uninterrupted run need the same thread count (set "
                           "OMP_NUM_THREADS=%d)", path, threads, torch.get_num_threads(), threads)
        if self.is_main:
            logger.info("resumed from %s (epoch %d done, step %d); continuing with epoch %d",
                        path, self.epoch, self.global_step, self.start_epoch)
        return self.start_epoch

    def _warn_config_changes(self, path: Path, saved_yaml: str | None) -> None:
        if not saved_yaml or not self.is_main:
            return
        import yaml

        def flat(d: Any, prefix: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {}
            if isinstance(d, dict):
                for k, v in d.items():
                    out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix[:-1]] = d
            return out

        try:
            old, new = flat(yaml.safe_load(saved_yaml)), flat(yaml.safe_load(self.settings.config_yaml))
        except Exception:  # a config that cannot be compared is not worth failing the resume for
            return
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if changed:
            note = (" (optimiser and LR-schedule settings are restored from the checkpoint; the new optim.* "
                    "values are not applied)" if any(k.startswith("optim.") for k in changed) else "")
            logger.warning("resuming %s with a changed config: %s%s",
                           path, ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed), note)
