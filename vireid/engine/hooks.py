"""Trainer hooks: evaluation, checkpoints, metrics.jsonl, TensorBoard and the text log.

A :class:`Hook` is called by :class:`~vireid.engine.trainer.Trainer` at fixed points and reads the
trainer's state (``epoch``, ``global_step``, ``epoch_losses``, ``eval_results``...). The default
hooks run in this order after each epoch: evaluation, checkpoints, metrics.jsonl, TensorBoard, text
log; user hooks come after them. Hooks run on every rank: those that write or evaluate check
``trainer.is_main`` (rank 0) themselves.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from vireid.engine.distributed import all_gather_objects
from vireid.models.checkpoint import rng_state

#: The :class:`vireid.engine.trainer.Trainer` a hook is called with (not imported: the trainer imports the
#: hooks, and a file never imports its importer); hooks read its state attributes, listed in its docstring.
Trainer = Any

logger = logging.getLogger("vireid.engine")

LOG_FILE = "log.txt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class Hook:
    """Base class: override any of the call points (each a no-op here).

    - ``before_train``: after a possible resume, before the first epoch;
    - ``after_step(trainer, outputs)``: after each optimiser step with the step's
      :class:`~vireid.engine.step.StepOutputs` (reading them copies them from the device: a hook that
      logs every few steps reads ``trainer.window_losses()``, the means since its previous log, instead);
    - ``after_epoch``: after each epoch (the scheduler has already stepped to the next epoch);
    - ``after_train``: after the last epoch (not called when training raised);
    - ``teardown``: always, last, to close files (also when training raised).
    """

    def before_train(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer, outputs: dict[str, float]) -> None:
        pass

    def after_epoch(self, trainer: Trainer) -> None:
        pass

    def after_train(self, trainer: Trainer) -> None:
        pass

    def teardown(self, trainer: Trainer) -> None:
        pass


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


class EvaluationHook(Hook):
    """Evaluates (rank 0) every ``train.eval_every`` epochs and after the last epoch, on the given
    trials; sets ``trainer.eval_results`` and tracks the best mean ``train.best_metric`` (mAP or rank1,
    ``trainer.best_metric``)."""

    def __init__(self, evaluator: Any, trials: list[int]):
        self.evaluator = evaluator
        self.trials = list(trials)

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.eval_results = None
        trainer.eval_improved = False
        if not (trainer.is_main and trainer.eval_due(trainer.epoch)):
            return
        results = trainer.evaluate(self.evaluator, self.trials)
        trainer.eval_results = results
        value = float(results["mean"][trainer.best_key])
        if trainer.best_metric is None or value > trainer.best_metric:
            trainer.best_metric = value
            trainer.best_epoch = trainer.epoch
            trainer.eval_improved = True


class CheckpointHook(Hook):
    """Writes ``checkpoints/last.pt`` every ``train.checkpoint_every`` epochs and after the last
    epoch, and ``checkpoints/best.pt`` whenever the evaluation mAP improves (rank 0 writes; every rank
    contributes its RNG state, so a resumed DDP run restores each rank's generators). Temporary files of
    writes killed midway (``.last.pt.*.tmp``) are removed when training starts."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.is_main or not self.folder.is_dir():
            return
        for stale in self.folder.glob(".*.tmp"):
            logger.info("removing %s, left by a checkpoint write that was killed", stale)
            stale.unlink(missing_ok=True)

    def after_epoch(self, trainer: Trainer) -> None:
        write_last = trainer.checkpoint_due(trainer.epoch)
        may_write_best = trainer.eval_due(trainer.epoch)  # known on every rank
        if not (write_last or may_write_best):
            return
        rngs = all_gather_objects(rng_state())  # collective: every rank calls it
        if not trainer.is_main:
            return
        if write_last:
            path = trainer.save_checkpoint(self.folder / LAST_CHECKPOINT, rng=rngs)
            logger.debug("wrote %s", path)
        if trainer.eval_improved:
            selected = {"selected_on_test_set": True,
                        "selected_by": f"{trainer.best_key} on test trial(s) {trainer.eval_trials}"}
            path = trainer.save_checkpoint(self.folder / BEST_CHECKPOINT, rng=rngs, extra=selected)
            logger.info("new best %s %.2f at epoch %d: wrote %s", trainer.best_key, trainer.best_metric,
                        trainer.epoch, path)


class MetricsLogHook(Hook):
    """Appends JSON lines to ``metrics.jsonl`` (rank 0):

    - ``{"type": "train", "epoch", "step", "iter", "lr": {group: lr}, "losses": {...}}`` every
      ``train.log_every`` steps, losses averaged over those steps;
    - ``{"type": "epoch", "epoch", "step", "lr", "losses", "skipped_steps", "time_s", "eval": results |
      null}`` after each epoch, losses averaged over the epoch's steps that were not skipped;
      ``skipped_steps`` counts the steps the AMP scaler skipped (non-finite loss or gradient);
    - ``{"type": "resume", "epoch", "step"}`` when a run resumes.

    ``epoch`` is 0-based (the schedule's numbering); ``step`` counts optimiser steps.
    """

    def __init__(self, path: str | Path, log_every: int):
        self.path = Path(path)
        self.log_every = max(int(log_every), 0)

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(record), sort_keys=False) + "\n")

    def before_train(self, trainer: Trainer) -> None:
        if trainer.is_main and trainer.start_epoch > 0:
            self._drop_epochs_from(trainer.start_epoch)
            self._write({"type": "resume", "epoch": trainer.start_epoch, "step": trainer.global_step})

    def _drop_epochs_from(self, epoch: int) -> None:
        """Remove the lines of epochs ``>= epoch`` (written before a kill that came before their
        checkpoint): the resumed run writes them again."""
        if not self.path.is_file():
            return
        from vireid.io import write_text_atomic

        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if rec.get("type") in ("train", "epoch") and int(rec.get("epoch", -1)) >= epoch:
                continue
            kept.append(line)
        if len(kept) != len(lines):
            write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))

    def after_step(self, trainer: Trainer, outputs: dict[str, float]) -> None:
        if not trainer.is_main or self.log_every == 0 or trainer.global_step % self.log_every:
            return
        self._write({"type": "train", "epoch": trainer.epoch, "step": trainer.global_step,
                     "iter": trainer.iter_in_epoch, "lr": trainer.epoch_lrs, "losses": trainer.window_losses()})

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.is_main:
            self._write({"type": "epoch", "epoch": trainer.epoch, "step": trainer.global_step,
                         "lr": trainer.epoch_lrs, "losses": trainer.epoch_losses,
                         "skipped_steps": trainer.epoch_skipped_steps, "time_s": round(trainer.epoch_time, 3), "eval": trainer.eval_results})


class TensorBoardHook(Hook):
    """TensorBoard scalars in the run folder (rank 0): ``train/<loss>`` every ``train.log_every``
    steps, ``epoch/<loss>``, ``lr/<group>`` and ``eval/<metric>`` per epoch (x axis: optimiser steps)."""

    def __init__(self, log_dir: str | Path, log_every: int):
        self.log_dir = Path(log_dir)
        self.log_every = max(int(log_every), 0)
        self.writer: Any = None

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow to import

        # on resume, purge_step drops the events a killed run wrote after its last checkpoint (the
        # checkpoint's own epoch summary was logged at its global_step and is kept)
        self.writer = SummaryWriter(log_dir=str(self.log_dir),
                                    purge_step=trainer.global_step + 1 if trainer.global_step > 0 else None)

    def after_step(self, trainer: Trainer, outputs: dict[str, float]) -> None:
        if self.writer is None or self.log_every == 0 or trainer.global_step % self.log_every:
            return
        for k, v in trainer.window_losses().items():
            self.writer.add_scalar(f"train/{k}", v, trainer.global_step)

    def after_epoch(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        step = trainer.global_step
        for k, v in trainer.epoch_losses.items():
            self.writer.add_scalar(f"epoch/{k}", v, step)
        for k, v in trainer.epoch_lrs.items():
            self.writer.add_scalar(f"lr/{k}", v, step)
        if trainer.eval_results is not None:
            for k, v in trainer.eval_results["mean"].items():
                if isinstance(v, (int, float)):  # scalars; the CMC curve ("cmc") is a list
                    self.writer.add_scalar(f"eval/{k}", v, step)
        self.writer.flush()

    def teardown(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


def attach_log_file(path: str | Path) -> logging.Handler | None:
    """Copy the ``vireid`` loggers' INFO+ records to ``path`` (appending); returns the new handler, or
    None when one for that file is already attached."""
    path = Path(path).resolve()
    root = logging.getLogger("vireid")
    for h in root.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_FORMAT)
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("vireid").removeHandler(handler)
        handler.close()


class TextLogHook(Hook):
    """Human-readable lines on the ``vireid.engine`` logger, also written to ``log.txt`` (rank 0):
    losses, learning rates and the ETA of the whole run every ``train.log_every`` steps, a summary
    per epoch and the evaluation results."""

    def __init__(self, path: str | Path, log_every: int):
        self.path = Path(path)
        self.log_every = max(int(log_every), 0)
        self.handler: logging.Handler | None = None
        self.active = False
        self._t0 = 0.0
        self._steps0 = 0

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        self.handler = attach_log_file(self.path)  # None: the caller already logs to this file
        self.active = True
        self._t0 = time.perf_counter()
        self._steps0 = trainer.global_step
        if trainer.start_epoch >= trainer.max_epochs:
            logger.info("the run is already complete: its %d epochs (0..%d) are trained; nothing to train (raise "
                        "train.epochs to train longer)", trainer.max_epochs, trainer.max_epochs - 1)
            return
        what = "resuming at" if trainer.start_epoch > 0 else "starting at"
        logger.info("training %s epoch %d (0-based) of epochs 0..%d, %d steps per epoch, device %s, world size %d",
                    what, trainer.start_epoch, trainer.max_epochs - 1, trainer.steps_per_epoch, trainer.device,
                    trainer.world_size)

    def _eta(self, trainer: Trainer) -> str:
        done = trainer.global_step - self._steps0
        total_left = (trainer.max_epochs - trainer.epoch) * trainer.steps_per_epoch - trainer.iter_in_epoch
        if done <= 0:
            return "?"
        return _fmt_duration((time.perf_counter() - self._t0) / done * total_left)

    def after_step(self, trainer: Trainer, outputs: dict[str, float]) -> None:
        if not self.active or self.log_every == 0 or trainer.global_step % self.log_every:
            return
        losses = " ".join(f"{k} {v:.4f}" for k, v in trainer.window_losses().items())
        lrs = " ".join(f"{k} {v:.3g}" for k, v in trainer.epoch_lrs.items())
        logger.info("epoch %d iter %d/%d step %d | %s | lr %s | eta %s", trainer.epoch, trainer.iter_in_epoch,
                    trainer.steps_per_epoch, trainer.global_step, losses, lrs, self._eta(trainer))

    def after_epoch(self, trainer: Trainer) -> None:
        if not self.active:
            return
        losses = " ".join(f"{k} {v:.4f}" for k, v in trainer.epoch_losses.items())
        logger.info("epoch %d done in %s | %s | eta %s", trainer.epoch, _fmt_duration(trainer.epoch_time),
                    losses, self._eta(trainer))
        if trainer.epoch_skipped_steps:
            logger.warning("epoch %d: %d of %d steps skipped by the AMP scaler (non-finite loss or gradient); "
                           "%d skipped in the run so far", trainer.epoch, trainer.epoch_skipped_steps,
                           trainer.iter_in_epoch, trainer.nonfinite_steps)
        if trainer.eval_results is not None:
            mean = trainer.eval_results["mean"]
            logger.info("eval epoch %d: %s (best mAP %.2f at epoch %s)", trainer.epoch,
                        " ".join(f"{k} {v:.2f}" for k, v in mean.items() if isinstance(v, (int, float))),
                        trainer.best_metric, trainer.best_epoch)

    def after_train(self, trainer: Trainer) -> None:
        if self.active:
            logger.info("training finished at epoch %d, step %d", trainer.max_epochs - 1, trainer.global_step)

    def teardown(self, trainer: Trainer) -> None:
        detach_log_file(self.handler)
        self.handler = None
        self.active = False
