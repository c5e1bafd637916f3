"""Whole runs from a resolved config: what ``vireid train`` and ``vireid test`` call.

- :func:`run_training`: run folder ``output_dir`` with ``config.yaml``, ``checkpoints/last.pt`` and
  ``best.pt``, ``metrics.jsonl``, TensorBoard events and ``log.txt``; then a test of the **final**
  weights (no model selection on the test set) over ``test.trials`` trials, written to
  ``results.json``. Works under ``torchrun`` (rank 0 writes and evaluates).
- :func:`run_all_trials`: RegDB's protocol -- trial ``t`` trains its own model on its training split
  (``output_dir/trial<t>``) and is tested on its own test split; ``results.json`` holds one row per
  trial and their mean.
- :func:`run_test`: a checkpoint (or, explicitly, a freshly initialised model) under the configured
  protocol.

Datasets that train per trial (RegDB: ``train_records(trial)``) train on ``data.trial`` and are
evaluated on that trial only; the others are evaluated on the protocol's first trial during training
and on its first ``test.trials`` trials at the end.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vireid.engine.distributed import DistributedContext, barrier, cleanup, init_distributed, resolve_device
from vireid.engine.hooks import CHECKPOINT_DIR, LAST_CHECKPOINT, LOG_FILE, attach_log_file, detach_log_file
from vireid.engine.optim import build_optimizer, build_scheduler
from vireid.engine.settings import OptimSettings, TrainSettings
from vireid.engine.trainer import Trainer, configure_determinism, seed_everything
from vireid.errors import CheckpointError, ConfigError, VireidError
from vireid.models.checkpoint import load_model_checkpoint
from vireid.models.loading import checkpoint_model_config, load_trained_model

logger = logging.getLogger("vireid.engine")

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.yaml"
#: ``test.*`` keys passed to ``dataset.protocol(...)`` when its signature takes them.
PROTOCOL_KEYS = ("mode", "shots", "sampler", "direction")


# -- helpers -------------------------------------------------------------------------------------
def trains_per_trial(dataset: Any) -> bool:
    """Whether each trial has its own training split (RegDB), so a model is trained per trial."""
    return bool(getattr(dataset, "trains_per_trial", getattr(dataset, "name", None) == "regdb"))


def protocol_options(dataset: Any, cfg: Any) -> dict[str, Any]:
    """The ``test.*`` options (mode, shots, sampler, direction) that ``dataset.protocol`` accepts."""
    params = inspect.signature(dataset.protocol).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k: cfg.test[k] for k in PROTOCOL_KEYS if takes_any or k in params}


def build_protocol(dataset: Any, cfg: Any) -> Any:
    """The dataset's evaluation protocol with the ``test.*`` options it takes; an option it does not take,
    set to something other than its default, is logged as ignored (e.g. ``test.direction`` on SYSU-MM01,
    whose queries are always infrared)."""
    from vireid.config.defaults import TestConfig

    options = protocol_options(dataset, cfg)
    for key in PROTOCOL_KEYS:
        if key not in options and cfg.test[key] != getattr(TestConfig, key):
            logger.warning("test.%s=%r is ignored: the %s protocol has no such option", key, cfg.test[key],
                           getattr(dataset, "name", type(dataset).__name__))
    try:
        return dataset.protocol(**options)
    except ValueError as exc:  # an option value the protocol refuses (e.g. a sampler without its file)
        given = ", ".join(f"test.{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"{getattr(dataset, 'name', 'dataset')} protocol with {given}: {exc}") from None


def final_test_trials(dataset: Any, protocol: Any, cfg: Any, n: int | None = None) -> list[int]:
    """Trials of the final test: ``data.trial`` for per-trial datasets, else the protocol's first ``n``
    (default ``test.trials``)."""
    if trains_per_trial(dataset):
        trial = int(cfg.data.trial)
        if trial not in protocol.trials:
            raise ConfigError(f"data.trial={trial} is not a trial of {dataset.name}; expected one of "
                              f"{list(protocol.trials)}")
        return [trial]
    n = int(cfg.test.trials if n is None else n)
    if n < 1:
        raise ConfigError(f"number of test trials {n} (test.trials or --trials): expected at least 1")
    if n > len(protocol.trials):
        logger.warning("test.trials=%d but the %s protocol has %d trial(s): testing %d", n,
                       getattr(dataset, "name", "dataset's"), len(protocol.trials), len(protocol.trials))
        n = len(protocol.trials)
    return list(protocol.trials[:n])


def _train_records(dataset: Any, cfg: Any) -> list[Any]:
    return dataset.train_records(trial=int(cfg.data.trial)) if trains_per_trial(dataset) else dataset.train_records()


def _progress() -> bool:
    return sys.stderr.isatty()


def write_json(obj: Any, path: str | Path) -> Path:
    """Atomic JSON write (temporary file in the same folder, then ``os.replace``)."""
    from vireid.io import write_text_atomic

    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _save_config(cfg: Any, path: Path) -> None:
    from vireid.config import save_config

    save_config(cfg, path)


# -- training ------------------------------------------------------------------------------------
@dataclass
class TrainingParts:
    """What a training run is made of, built from the config in one place (:func:`build_training_parts`)
    before anything is written: :meth:`trainer` assembles the :class:`Trainer` from them without reading
    the config."""

    dataset: Any
    loader: Any
    model: Any
    evaluator: Any
    trials: list[int]  # the final test's trials; training evaluates the first
    settings: TrainSettings
    optim: OptimSettings
    dist: DistributedContext

    def trainer(self, hooks: Sequence[Any] = ()) -> Trainer:
        """The trainer of these parts (its default hooks open the run folder's files: call it after the
        folder exists). Its ``final_test_trials`` attribute lists the trials of the final test."""
        self.model.to(self.dist.device)  # before the optimiser, which picks its fused kernels by the parameters' device
        optimizer = build_optimizer(self.optim, self.model)
        trainer = Trainer(self.settings, self.model, self.loader, optimizer=optimizer,
                          scheduler=build_scheduler(self.optim, optimizer), evaluator=self.evaluator,
                          eval_trials=self.trials[:1], dist=self.dist, hooks=hooks)
        trainer.final_test_trials = self.trials
        return trainer


def build_training_parts(cfg: Any, *, dist: DistributedContext | None = None, dataset: Any = None) -> TrainingParts:
    """Every part of a training run, from the config, checking on the way what only the data and the
    registries can, cheapest first: the dataset reads (``data.name``, ``data.root``; RegDB's ``data.trial``
    split), its protocol takes the ``test.*`` options and the test trials exist, the model builds
    (``model.name``, ``model.arch``, ``loss.metric``, the attention placements: the constructors' messages),
    and every training image decodes (with ``data.cache`` by building the decoded-image cache, otherwise by a
    remembered check). Nothing is written but the image cache, so a config that cannot run fails before its
    run folder exists. Errors are :class:`ConfigError` / :class:`~vireid.errors.DatasetError` naming the key
    or file.

    The model is seeded with ``train.seed`` + the rank; ``dataset``: one already read, else it is read.
    """
    from vireid.data import build_dataset
    from vireid.data.training import build_train_loader, paired_identities, verify_images
    from vireid.evaluation.evaluator import Evaluator

    train = cfg.train
    configure_determinism(bool(train.deterministic))  # before CUDA starts (CUBLAS_WORKSPACE_CONFIG)
    ctx = dist if dist is not None else init_distributed(str(train.device))
    seed, init_checkpoint, verify = int(train.seed), str(train.init_checkpoint or ""), not cfg.data.cache
    dataset = build_dataset(cfg.data.name, cfg.data.root) if dataset is None else dataset
    protocol = build_protocol(dataset, cfg)
    trials = final_test_trials(dataset, protocol, cfg)
    records = _train_records(dataset, cfg)
    seed_everything(seed + ctx.rank)
    # the model before the loader: a bad model.* value fails before the images are decoded into the cache
    model = _training_model(cfg, len(paired_identities(records)), init_checkpoint)
    if verify:
        verify_images(records, progress=_progress())
    loader = build_train_loader(cfg, records, rank=ctx.rank, world_size=ctx.world_size, progress=_progress())
    evaluator = Evaluator.from_config(cfg, protocol, device=ctx.device, progress=ctx.is_main and _progress())
    settings, optim = TrainSettings.from_config(cfg), OptimSettings.from_config(cfg)
    return TrainingParts(dataset=dataset, loader=loader, model=model, evaluator=evaluator, trials=trials,
                         settings=settings, optim=optim, dist=ctx)


def _training_model(cfg: Any, num_classes: int, init_checkpoint: str) -> Any:
    """The model to train: from ``init_checkpoint``'s weights (``train.init_checkpoint``) when set, else as
    configured."""
    from vireid.models import build_model

    if not init_checkpoint:
        return build_model(cfg, num_classes)
    from vireid.models.checkpoint import initialise_from_checkpoint

    model_cfg = copy.deepcopy(cfg)
    model_cfg.model.pretrained = "none"  # the checkpoint replaces the ImageNet start
    model = build_model(model_cfg, num_classes)
    initialise_from_checkpoint(model, init_checkpoint)
    return model


def build_trainer(cfg: Any, *, dist: DistributedContext | None = None, hooks: Sequence[Any] = (),
                  dataset: Any = None) -> Trainer:
    """A :class:`Trainer` built from the config (:func:`build_training_parts`, then
    :meth:`TrainingParts.trainer`). ``dataset``: one already read, else it is read from the config."""
    return build_training_parts(cfg, dist=dist, dataset=dataset).trainer(hooks)


def run_training(cfg: Any, *, resume: bool = False, dist: DistributedContext | None = None) -> dict[str, Any] | None:
    """Train as configured, then test the final weights; returns the results on rank 0 (None on other
    ranks). ``resume`` continues from ``output_dir/checkpoints/last.pt`` (a :class:`CheckpointError`
    if it is missing); without it, an ``output_dir`` that already holds a checkpoint is an error."""
    output_dir, data_root = Path(cfg.output_dir), str(cfg.data.root)
    last = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not resume and last.exists():
        raise ConfigError(f"output_dir={str(output_dir)!r} already holds a run ({last}); pass --resume to "
                          "continue it, or choose another output_dir=")
    if resume and not last.is_file():
        raise CheckpointError(f"{last}: checkpoint file does not exist; nothing to resume in output_dir="
                              f"{str(output_dir)!r} (run without --resume to start it)")
    configure_determinism(bool(cfg.train.deterministic))  # before CUDA starts (CUBLAS_WORKSPACE_CONFIG)
    owns_group = dist is None
    ctx = dist if dist is not None else init_distributed(str(cfg.train.device))
    log_handler = None
    try:
        parts = build_training_parts(cfg, dist=ctx)  # a config that cannot run fails here, before the run folder
        if ctx.is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            log_handler = attach_log_file(output_dir / LOG_FILE)
            _save_config(cfg, output_dir / CONFIG_FILE)
            logger.info("run folder %s (config.yaml written)%s", output_dir, "; resuming" if resume else "")
        trainer = parts.trainer()
        if resume:
            trainer.resume(last)
        try:
            trainer.train()
        except VireidError as exc:
            logger.error("training stopped at epoch %d, step %d: %s", trainer.epoch, trainer.global_step, exc)
            raise
        results = None
        if ctx.is_main:
            final_trials = trainer.final_test_trials
            logger.info("final test of the last weights on trials %s", final_trials)
            results = trainer.evaluate(trainer.evaluator, final_trials)
            results["checkpoint"] = str(last) if last.exists() else None
            results["epoch"] = trainer.max_epochs - 1  # the final weights (== last.pt) are tested
            mark_synthetic(results, data_root)
            write_json(results, output_dir / RESULTS_FILE)
            from vireid.evaluation.evaluator import format_results_table

            # file_only: the command prints the table itself
            logger.info("final test (last weights):\n%s", format_results_table(results), extra={"file_only": True})
        barrier()
        return results
    finally:
        detach_log_file(log_handler)
        if owns_group:
            cleanup()


def _trial_config(cfg: Any, base: Path, trial: int) -> Any:
    cfg_t = copy.deepcopy(cfg)
    cfg_t.data.trial = int(trial)
    cfg_t.output_dir = str(base / f"trial{trial}")
    return cfg_t


def finished_results(cfg_x: Any, resume: bool, label: str) -> dict[str, Any] | None:
    """With ``resume``, the results of a run (a trial, a seed: ``label``) that already finished (its
    ``results.json``), else None."""
    done = Path(cfg_x.output_dir) / RESULTS_FILE
    if not (resume and done.is_file()):
        return None
    logger.info("%s already done: %s", label, done)
    return json.loads(done.read_text(encoding="utf-8"))


def _resume_trial(cfg_t: Any, resume: bool) -> bool:
    """Whether a trial continues from its ``last.pt`` (with ``resume``, when it has one)."""
    return resume and (Path(cfg_t.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT).exists()


def _train_one_trial(config_yaml: str, resume: bool, threads: int) -> dict[str, Any]:
    """One trial in a worker process of ``run_all_trials(parallel=N)`` (the config travels as YAML; the
    parent's thread count keeps CPU arithmetic, hence the weights, the same as in a sequential run)."""
    import torch

    from vireid.config import config_from_yaml

    torch.set_num_threads(threads)
    cfg = config_from_yaml(config_yaml, "trial config")
    return run_training(cfg, resume=_resume_trial(cfg, resume))


def run_all_trials(cfg: Any, *, resume: bool = False, parallel: int = 1) -> dict[str, Any] | None:
    """RegDB: train and test every trial ``t`` in ``output_dir/trial<t>`` (trial ``t``'s model on
    trial ``t``'s test split) and write the per-trial rows and their mean to ``output_dir/results.json``.

    With ``resume``, finished trials (``results.json`` present) are read back, an interrupted one
    resumes from its ``last.pt`` and the rest start fresh. ``parallel``: trials trained at once, each in
    its own process with its own model and seed (several small trainings fill one GPU better than one);
    every trial's training is the same as alone, so the results equal a sequential run's (tested on the
    CPU). Returns the results on rank 0.
    """
    from vireid.config import config_to_yaml
    from vireid.data import build_dataset

    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    dataset = build_dataset(cfg.data.name, cfg.data.root)
    if not trains_per_trial(dataset):
        raise ConfigError(f"--all-trials trains one model per trial, which only datasets with per-trial "
                          f"training splits (regdb) have; data.name={cfg.data.name!r} is tested on "
                          "test.trials trials of one model instead")
    protocol = build_protocol(dataset, cfg)
    base = Path(cfg.output_dir)
    if parallel > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        base.mkdir(parents=True, exist_ok=True)
        _save_config(cfg, base / CONFIG_FILE)
        results_by_trial: dict[int, dict[str, Any]] = {}
        todo = []
        for trial in protocol.trials:
            cfg_t = _trial_config(cfg, base, trial)
            finished = finished_results(cfg_t, resume, f"trial {trial}")
            if finished is not None:
                results_by_trial[trial] = finished
            else:
                todo.append((trial, config_to_yaml(cfg_t)))
        logger.info("training %d trials, %d at a time", len(todo), parallel)
        with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            import torch

            threads = torch.get_num_threads()
            futures = {trial: pool.submit(_train_one_trial, text, resume, threads) for trial, text in todo}
            for trial, future in futures.items():
                results_by_trial[trial] = future.result()
        rows = [row for trial in protocol.trials for row in results_by_trial[trial]["trials"]]
        return _write_all_trials(dataset, protocol, rows, base)
    ctx = init_distributed(str(cfg.train.device))
    rows = []
    try:
        if ctx.is_main:
            base.mkdir(parents=True, exist_ok=True)
            _save_config(cfg, base / CONFIG_FILE)
        for trial in protocol.trials:
            cfg_t = _trial_config(cfg, base, trial)
            result = finished_results(cfg_t, resume, f"trial {trial}")
            if result is None:
                result = run_training(cfg_t, resume=_resume_trial(cfg_t, resume), dist=ctx)
            if ctx.is_main:
                rows.extend(result["trials"])
        if not ctx.is_main:
            return None
        return _write_all_trials(dataset, protocol, rows, base)
    finally:
        cleanup()


def _write_all_trials(dataset: Any, protocol: Any, rows: list[dict[str, Any]], base: Path) -> dict[str, Any]:
    from vireid.evaluation.evaluator import mean_of_trials

    results = {"dataset": dataset.name, "protocol": protocol.describe(), "trials": rows,
               "mean": mean_of_trials(rows), "note": "trial t: a model trained on trial t's training split"}
    write_json(results, base / RESULTS_FILE)
    return results


# -- testing -------------------------------------------------------------------------------------
def convert_checkpoint(cfg: Any, source: str | Path, out: str | Path) -> tuple[Path, dict[str, Any]]:
    """Write the weights of ``source`` (a reference-code checkpoint, or a vireid one) as a vireid
    checkpoint ``out`` with the config that builds them recorded, so that every command takes it without
    a config. Returns ``(out, checkpoint dict read from source)``; the write is atomic."""
    from vireid.config import config_to_yaml
    from vireid.models.checkpoint import save_checkpoint

    ckpt = load_model_checkpoint(source)
    model_cfg = checkpoint_model_config(cfg, ckpt, source)  # the weights' geometry, warned about once
    model, _ = load_trained_model(model_cfg, source, ckpt=ckpt)
    extra = {"converted_from": str(source), "source_format": ckpt.get("source_format") or "vireid"}
    if ckpt.get("reference") is not None:
        extra["reference"] = ckpt["reference"].summary()
    epoch = ckpt.get("epoch")
    path = save_checkpoint(out, model=model, epoch=int(epoch) if isinstance(epoch, int) else 0,
                           num_classes=int(ckpt["num_classes"]), config_yaml=config_to_yaml(model_cfg), extra=extra)
    return path, ckpt


def run_test(
    cfg: Any,
    *,
    checkpoint: str | Path | None = None,
    untrained: bool = False,
    onnx: str | Path | list[str | Path] | None = None,
    trials: int | None = None,
    progress: bool | None = None,
    rerank: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the weights of a vireid ``checkpoint`` (or, with ``untrained=True``, a freshly
    initialised model seeded with ``train.seed``) under the configured protocol.

    ``trials``: the protocol's first N trials (default ``test.trials``); per-trial datasets (RegDB)
    test ``data.trial``. A missing, unreadable or mismatching checkpoint raises
    :class:`~vireid.errors.CheckpointError`; the results say which weights were tested
    (``"checkpoint"``, ``"untrained"``, ``"onnx"``). ``onnx``: graphs written by ``vireid export``,
    run with ONNX Runtime instead of a checkpoint. ``rerank``: k-reciprocal re-ranking with these keyword
    arguments of :func:`vireid.evaluation.rerank.k_reciprocal_rerank` (``{}`` for its defaults); the
    results then carry ``"rerank": true`` and the parameters.
    """
    from vireid.data import build_dataset
    from vireid.evaluation.evaluator import Evaluator
    from vireid.models import build_model

    if sum([checkpoint is not None, bool(untrained), onnx is not None]) != 1:
        raise ValueError("give exactly one of checkpoint=PATH, untrained=True or onnx=GRAPHS")
    device = resolve_device(str(cfg.train.device))
    ckpt = None
    if checkpoint is not None:
        ckpt = load_model_checkpoint(checkpoint)  # fails before anything else is read
    dataset = build_dataset(cfg.data.name, cfg.data.root)
    protocol = build_protocol(dataset, cfg)
    trial_list = final_test_trials(dataset, protocol, cfg, trials)
    if trains_per_trial(dataset) and trials not in (None, 1):
        logger.warning("%s trains one model per trial: testing trial %s only (data.trial); use "
                       "'vireid train --all-trials' for the 10-trial protocol", dataset.name, trial_list[0])
    seed_everything(int(cfg.train.seed))
    if checkpoint is not None:
        model, _ = load_trained_model(cfg, checkpoint, ckpt=ckpt)
    elif onnx is not None:
        from vireid.models.onnx_model import OnnxReIDModel

        model = OnnxReIDModel.from_paths(onnx if isinstance(onnx, list) else [onnx], device=str(device))
        device = resolve_device("cpu")  # ONNX Runtime takes host arrays
    else:
        pids = {r.pid for r in _train_records(dataset, cfg)}
        model = build_model(cfg, max(len(pids), 1))
    model.to(device)
    evaluator = Evaluator.from_config(cfg, protocol, device=device,
                                      progress=_progress() if progress is None else progress)
    distance = None
    if rerank is not None:
        from vireid.evaluation.rerank import k_reciprocal_rerank, rerank_params

        def distance(q, g):
            return k_reciprocal_rerank(q.cpu().numpy(), g.cpu().numpy(), **rerank)

    results = evaluator.evaluate(model, trial_list, distance=distance, verification=True)
    if rerank is not None:
        results["rerank"] = True
        results["rerank_params"] = rerank_params(**rerank)
    results["checkpoint"] = None if checkpoint is None else str(checkpoint)
    if ckpt is not None and ckpt.get("source_format"):
        results["checkpoint_format"] = ckpt["source_format"]
    if ckpt is not None and (ckpt.get("extra") or {}).get("selected_on_test_set"):
        results["selected_on_test_set"] = ckpt["extra"].get("selected_by", True)
        logger.warning("%s was selected on the test set (%s): label the numbers as such", checkpoint,
                       ckpt["extra"].get("selected_by"))
    results["untrained"] = bool(untrained)
    if onnx is not None:
        results["onnx"] = [str(p) for p in (onnx if isinstance(onnx, list) else [onnx])]
    if ckpt is not None:
        results["epoch"] = ckpt.get("epoch")
    results["config"] = tested_config(cfg, ckpt)
    mark_synthetic(results, str(cfg.data.root))
    return results


def mark_synthetic(results: dict[str, Any], data_root: str) -> None:
    """``results["synthetic_data"] = True`` when the data at ``data_root`` are the generator's (pictures and
    reports say so)."""
    from vireid.data.synthetic import is_synthetic

    if is_synthetic(data_root):
        results["synthetic_data"] = True


def tested_config(cfg: Any, ckpt: dict[str, Any] | None) -> dict[str, Any]:
    """What a test result describes, for ``vireid report``: the training config the checkpoint recorded
    (the model as trained), with this test's ``test.*`` keys and ``data`` location; ``cfg`` itself when the
    weights carry no config (untrained, ONNX, reference-code files)."""
    import yaml
    from omegaconf import OmegaConf

    tested = OmegaConf.to_container(cfg, resolve=True)
    recorded = (ckpt or {}).get("config")
    trained = yaml.safe_load(recorded) if isinstance(recorded, str) else None
    if not isinstance(trained, dict):
        return tested
    trained["test"] = tested["test"]
    trained.setdefault("data", {})["root"] = tested["data"]["root"]
    return trained
