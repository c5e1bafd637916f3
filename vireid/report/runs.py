"""Runs as a paper's table needs them: read from run folders or result files, labelled with how they were
tested, grouped over seeds, and named by what differs between their configurations.

A **run** is a finished ``vireid train`` folder (its ``results.json`` beside its ``config.yaml``; a RegDB
``--all-trials`` folder counts as one run of 10 trials; a ``--seeds`` folder is the runs of its seeds) or a
result file of ``vireid test --json`` (its ``"config"``, or the ``config.yaml`` of its folder or the one
above).

Runs whose configurations are equal apart from the seed and the **run-local keys** (:data:`RUN_LOCAL_KEYS`:
where the data and outputs are, the device, speed options, logging), that test the same protocol setting
the same way, form one **group**, a row of the report: its figures are the mean over every trial of every
seed, with the standard deviation over trials (within a seed, averaged) and over seeds (of the seeds'
means, n - 1).

**How a number was tested** is part of the group and never merged silently (:func:`conventions`): the
flipped-image feature, re-ranking (and its variant), weights selected on the test set, an untrained model,
ONNX graphs, synthetic data.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid.engine.run import CONFIG_FILE, RESULTS_FILE
from vireid.errors import ConfigError
from vireid.visualization.curves import on_synthetic_data, recorded_config

#: The figures of a report row, in column order (percent).
REPORT_METRICS = ("rank1", "rank10", "rank20", "mAP", "mINP")
#: Column titles of :data:`REPORT_METRICS`.
METRIC_TITLES = {"rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "rank20": "Rank-20", "mAP": "mAP",
                 "mINP": "mINP"}

#: Keys that do not change what a run measures: where things are, the device, speed options, logging and
#: checkpoint cadence, and every ``test.*`` key (the protocol setting is read from the results instead).
#: ``train.seed`` is what groups runs; ``model.pretrained`` only counts as pretrained or not.
RUN_LOCAL_KEYS = (
    "output_dir", "data.root", "data.workers", "data.cache", "data.augment_on", "data.trial", "train.device",
    "train.seed", "train.amp", "train.amp_dtype", "train.channels_last", "train.compile", "train.compile_mode",
    "train.deterministic", "train.eval_every", "train.best_metric", "train.checkpoint_every", "train.log_every",
    "train.find_unused_parameters", "optim.fused", "test.",
)

#: Words for the ablations the papers run, by key and the value that switches the part off.
ABLATION_WORDS: dict[str, tuple[Any, str]] = {
    "model.mca_after": ([], "without MCA"),
    "model.pca_after": ([], "without PCA"),
    "model.local_parts": (0, "without the PCB local branch"),
    "model.csa": (False, "without CSA"),
    "model.non_local": (False, "without non-local blocks"),
    "data.trivial_augment": (False, "without TrivialAugment"),
    "data.channel_exchange": (False, "without channel exchange"),
    "data.random_erasing": (0.0, "without random erasing"),
    "loss.lambda3": (0.0, "without the hetero-center loss (eq 12)"),
    "loss.lambda2": (0.0, "without the hetero-center triplet (eq 11)"),
    "loss.mse_weight": (0.0, "without the feature MSE (eq 13)"),
    "loss.alpha": (0.0, "without L_local (eq 16)"),
}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config mapping -> ``{"a.b": value}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a flat config that decide what is measured (:data:`RUN_LOCAL_KEYS` removed)."""
    out = {}
    for key, value in config.items():
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in RUN_LOCAL_KEYS):
            continue
        if key == "model.pretrained":
            value = "none" if str(value) == "none" else "pretrained"
        out[key] = value
    return out


def conventions(results: Mapping[str, Any], config: Mapping[str, Any], *, synthetic: bool = False) -> dict[str, Any]:
    """How a result was tested: labels that must not be mixed silently (module docstring)."""
    out: dict[str, Any] = {}
    flip = results.get("flip", config.get("test.flip", False))
    if flip:
        out["flip"] = True
    if results.get("rerank"):
        out["rerank"] = (results.get("rerank_params") or {}).get("variant", "code")
    if results.get("selected_on_test_set"):
        out["selected_on_test_set"] = True
    if results.get("untrained"):
        out["untrained"] = True
    if results.get("onnx"):
        out["onnx"] = True
    if synthetic:
        out["synthetic"] = True
    return out


def convention_words(conv: Mapping[str, Any]) -> list[str]:
    words = []
    if conv.get("synthetic"):
        words.append("synthetic data")
    if conv.get("untrained"):
        words.append("UNTRAINED")
    if conv.get("selected_on_test_set"):
        words.append("weights selected on the test set")
    if conv.get("flip"):
        words.append("flip")
    if conv.get("rerank"):
        words.append(f"re-ranked ({conv['rerank']} variant)")
    if conv.get("onnx"):
        words.append("ONNX Runtime")
    return words


def setting_of(results: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol options of a result (``mode``, ``direction``, ``shots``, ``sampler``...)."""
    return {k: v for k, v in (results.get("protocol") or {}).items() if k not in ("dataset", "metric", "manifest")}


@dataclass
class Run:
    """One run's results: where it came from, its flat config, its trial rows and how it was tested."""

    source: Path
    dataset: str
    config: dict[str, Any]
    trials: list[dict[str, Any]]
    setting: dict[str, Any]
    conventions: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.config.get("train.seed", 0))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a JSON result file ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of results, got {type(data).__name__}")
    return data


def _recorded_config(path: Path, results: Mapping[str, Any]) -> dict[str, Any]:
    config = recorded_config(path, results)
    if config is None:
        raise ConfigError(f"{path}: no config to describe it: the file has no \"config\" and there is no {CONFIG_FILE} "
                          "in its folder or the one above (write it with 'vireid test --json' inside the run folder)")
    return config


def _run_from_results(source: Path, results: dict[str, Any]) -> Run:
    nested = _recorded_config(source, results)
    config = flatten(nested)
    trials = results.get("trials")
    if not isinstance(trials, list) or not trials or not all(isinstance(r, dict) for r in trials):
        raise ConfigError(f"{source}: no per-trial results (\"trials\": [...]) in it")
    missing = [k for k in ("rank1", "mAP") if any(k not in r for r in trials)]
    if missing:
        raise ConfigError(f"{source}: trial rows lack {', '.join(missing)}")
    return Run(source=source, dataset=str(results.get("dataset") or config.get("data.name", "?")), config=config,
               trials=trials, setting=setting_of(results),
               conventions=conventions(results, config, synthetic=on_synthetic_data(source, results, nested)))


def read_runs(path: str | Path) -> list[Run]:
    """The runs of a run folder (a ``--seeds`` folder gives one per seed) or of a result JSON file."""
    path = Path(path)
    if path.is_dir():
        results_file = path / RESULTS_FILE
        if not results_file.is_file():
            raise ConfigError(f"{path}: no {RESULTS_FILE} (the run has not finished its final test; pass a "
                              "finished run folder or a result file of 'vireid test --json')")
        results = _read_json(results_file)
        if "seeds" in results:  # a multi-seed folder: its seeds' runs
            return [run for folder in (results.get("runs") or {}).values() for run in read_runs(path / folder)]
        return [_run_from_results(results_file, results)]
    if path.is_file():
        return [_run_from_results(path, _read_json(path))]
    raise ConfigError(f"{path}: no such run folder or result file")


@dataclass
class Group:
    """Runs that differ only in their seed (and run-local keys): one row of a report."""

    runs: list[Run]
    name: str = ""
    published: dict[str, Any] | None = None
    published_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    @property
    def num_trials(self) -> int:
        return len(self.first.trials)

    def stats(self, metric: str) -> dict[str, float] | None:
        """``mean`` over every trial of every seed, ``std_trials`` (within a seed, averaged over seeds),
        ``std_seeds`` (of the seeds' means; 0 for one seed) and ``std``: over seeds when there are several,
        else over trials. None when a run lacks the metric."""
        if any(metric not in row for run in self.runs for row in run.trials):
            return None
        per_run = [[float(row[metric]) for row in run.trials] for run in self.runs]
        means = [statistics.fmean(v) for v in per_run]
        std_trials = statistics.fmean(statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_run)
        std_seeds = statistics.stdev(means) if len(means) > 1 else 0.0
        return {"mean": statistics.fmean(x for v in per_run for x in v), "std_trials": std_trials,
                "std_seeds": std_seeds, "std": std_seeds if len(means) > 1 else std_trials}


def group_key(run: Run) -> str:
    return json.dumps([run.dataset, run.setting, run.conventions, comparable(run.config)], sort_keys=True,
                      default=str)


def group_runs(runs: Iterable[Run]) -> list[Group]:
    """Runs grouped over seeds, in the order of their first appearance; each group named (:func:`name_groups`)."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = group_key(run)
        if key in groups and run.seed in groups[key].seeds:
            raise ConfigError(f"{run.source} and {groups[key].runs[0].source} are the same configuration with the "
                              f"same seed ({run.seed}): pass each run once")
        groups.setdefault(key, Group(runs=[])).runs.append(run)
    out = list(groups.values())
    name_groups(out)
    return out


def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def describe_difference(key: str, value: Any) -> str:
    """``key=value``, or the ablation in words (:data:`ABLATION_WORDS`) when ``value`` switches a part off."""
    words = ABLATION_WORDS.get(key)
    if words is not None and value == words[0]:
        return words[1]
    return f"{key}={_value_text(value)}"


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({_value_text(c.get(k)) for c in configs}) > 1]


#: At most this many differing keys name a row; more, and the row is named by its folder.
MAX_NAMED_KEYS = 4


def run_label(run: Run) -> str:
    """A run's folder name (a seed folder's parent; a result file's folder and stem)."""
    folder = run.source.parent
    if folder.name.startswith("seed") and folder.name[4:].isdigit():
        folder = folder.parent
    stem = run.source.stem
    return folder.name if stem == "results" else f"{folder.name}/{stem}"


def name_groups(groups: Sequence[Group]) -> None:
    """Name each group by what differs between the groups: config keys (in words for known ablations),
    then the protocol setting and, where it differs, how it was tested; by folder when nothing or too much
    differs. (How each row was tested is also a column of its own.)"""
    configs = [comparable(g.first.config) for g in groups]
    keys = differing_keys(configs)
    settings = [g.first.setting for g in groups]
    setting_keys = differing_keys(settings)
    labels = [convention_words(g.first.conventions) for g in groups]
    shared = set.intersection(*(set(words) for words in labels)) if labels else set()
    for group, config, setting, words in zip(groups, configs, settings, labels):
        parts = []
        if keys and len(keys) <= MAX_NAMED_KEYS:
            parts.extend(describe_difference(k, config.get(k)) for k in keys)
        else:
            parts.append(run_label(group.first))
        parts.extend(f"{setting.get(k)}" for k in setting_keys)
        parts.extend(w for w in words if w not in shared)  # how it was tested, where the rows differ
        group.name = ", ".join(parts)
