"""Multi-seed runs (``vireid train CONFIG --seeds 0 1 2``): one configuration trained once per seed.

Seed ``s`` trains in ``output_dir/seed<s>`` with ``train.seed=s``: a complete run folder of its own
(config.yaml, checkpoints, log, results.json), or with ``all_trials`` a RegDB all-trials folder. Seeds run
one after another, or ``parallel`` at a time, each in its own process (the results equal a sequential
run's: every process keeps the parent's thread count, as ``--all-trials --parallel`` does).

``output_dir/results.json`` then holds each seed's 10-trial mean and their mean and standard deviation
over seeds (``"seeds"``, ``"runs"``: the folder of each seed, ``"trials"``: one row per seed, ``"mean"``,
``"std_over_seeds"``); ``vireid report`` reads the seed folders it names and aggregates over trials and
seeds. With ``resume``, seeds whose folder has its results are read back, an interrupted seed continues
from its ``last.pt`` and the others start; without it, a seed folder that holds a run is an error (as
for one run).
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vireid.engine.hooks import CHECKPOINT_DIR, LAST_CHECKPOINT
from vireid.engine.run import (
    CONFIG_FILE,
    RESULTS_FILE,
    _save_config,
    finished_results,
    run_all_trials,
    run_training,
    write_json,
)
from vireid.errors import ConfigError

logger = logging.getLogger(__name__)

#: Folder of seed ``s`` inside the multi-seed run's ``output_dir``.
SEED_FOLDER = "seed{seed}"


def seed_config(cfg: Any, base: Path, seed: int) -> Any:
    """``cfg`` with ``train.seed=seed`` and its own run folder ``base/seed<seed>``."""
    cfg_s = copy.deepcopy(cfg)
    cfg_s.train.seed = int(seed)
    cfg_s.output_dir = str(base / SEED_FOLDER.format(seed=int(seed)))
    return cfg_s


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--seeds lists seed(s) {repeated} more than once; each seed is one run")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds must be non-negative integers, got {seeds}")
    return seeds


def _train_seed(cfg_s: Any, resume: bool, all_trials: bool) -> dict[str, Any] | None:
    if all_trials:
        return run_all_trials(cfg_s, resume=resume)
    continues = resume and (Path(cfg_s.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT).exists()
    return run_training(cfg_s, resume=continues)


def _train_seed_in_worker(config_yaml: str, resume: bool, all_trials: bool, threads: int) -> dict[str, Any] | None:
    """One seed in a worker process of ``run_seeds(parallel=N)`` (the config travels as YAML)."""
    import torch

    from vireid.config import config_from_yaml

    torch.set_num_threads(threads)
    return _train_seed(config_from_yaml(config_yaml, "seed config"), resume, all_trials)


def run_seeds(cfg: Any, seeds: Sequence[int], *, resume: bool = False, parallel: int = 1,
              all_trials: bool = False) -> dict[str, Any] | None:
    """Train ``cfg`` once per seed (module docstring) and write the seeds' summary to
    ``output_dir/results.json``; returns it (None on ranks other than 0 under ``torchrun``)."""
    import os

    seeds = check_seeds(seeds)
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    if parallel > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--parallel trains seeds in separate processes on one machine; under torchrun the "
                          "seeds run one after another (drop --parallel)")
    base = Path(cfg.output_dir)
    main = os.environ.get("RANK", "0") == "0"
    if main:
        base.mkdir(parents=True, exist_ok=True)
        _save_config(cfg, base / CONFIG_FILE)
    results: dict[int, dict[str, Any] | None] = {}
    todo = []
    for seed in seeds:
        cfg_s = seed_config(cfg, base, seed)
        finished = finished_results(cfg_s, resume, f"seed {seed}")
        if finished is not None:
            results[seed] = finished
        else:
            todo.append((seed, cfg_s))
    logger.info("training %d seed(s) %s%s", len(todo), [s for s, _ in todo],
                f", {parallel} at a time" if parallel > 1 else "")
    if parallel > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import torch

        from vireid.config import config_to_yaml

        threads = torch.get_num_threads()
        with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {seed: pool.submit(_train_seed_in_worker, config_to_yaml(cfg_s), resume, all_trials, threads)
                       for seed, cfg_s in todo}
            for seed, future in futures.items():
                results[seed] = future.result()
    else:
        for seed, cfg_s in todo:
            results[seed] = _train_seed(cfg_s, resume, all_trials)
    if not main:
        return None
    summary = summarise_seeds({s: results[s] for s in seeds})
    write_json(summary, base / RESULTS_FILE)
    return summary


def summarise_seeds(results: dict[int, dict[str, Any] | None]) -> dict[str, Any]:
    """The multi-seed summary: each seed's mean, their mean and their standard deviation (n - 1)."""
    from vireid.evaluation.evaluator import METRIC_KEYS

    seeds = list(results)
    first = results[seeds[0]] or {}
    per_seed = [{"trial": f"seed {s}", "seed": s, **{k: float(results[s]["mean"][k]) for k in METRIC_KEYS}}
                for s in seeds]
    mean = {k: statistics.fmean(row[k] for row in per_seed) for k in METRIC_KEYS}
    std = {k: statistics.stdev(row[k] for row in per_seed) if len(per_seed) > 1 else 0.0 for k in METRIC_KEYS}
    return {"dataset": first.get("dataset"), "protocol": first.get("protocol", {}), "seeds": seeds,
            "runs": {str(s): SEED_FOLDER.format(seed=s) for s in seeds},
            "trials": per_seed, "mean": mean, "std_over_seeds": std,
            "note": "one run per seed (output_dir/seed<s>); trials: each seed's mean over its trials"}
