"""Curves from ``vireid test --json`` results: CMC curves and per-trial metrics, runs side by side."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vireid.errors import ConfigError, VireidError
from vireid.visualization.figures import save_png

TRIAL_METRICS = ("rank1", "mAP", "mINP")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results JSON written by ``vireid test --json`` / ``vireid train`` (``results.json``)."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise VireidError(f"{path}: results file not found") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise VireidError(f"{path}: not a readable JSON results file ({exc})") from exc
    if not isinstance(results, dict) or not isinstance(results.get("trials"), list) or "mean" not in results:
        raise VireidError(f"{path}: expected a vireid results object with 'trials' and 'mean'")
    return results


def _label(path: Path, results: dict[str, Any]) -> str:
    """The run's folder name (or the file's stem when the folder is ``.``), with "re-ranked" and
    "untrained" added when the results say so and the name does not already."""
    name = path.parent.name or path.stem
    tags = [name]
    for flag, word in (("rerank", "re-ranked"), ("untrained", "untrained")):
        if results.get(flag) and word not in name:
            tags.append(word)
    return " ".join(tags)


def recorded_config(path: Path, results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The configuration a result file was measured with: its ``"config"`` (``vireid test`` records it),
    else the run folder's ``config.yaml`` (the file's folder or the one above: RegDB trial folders), else
    None. An unreadable ``config.yaml`` is a :class:`~vireid.errors.ConfigError` naming it."""
    import yaml

    if isinstance(results.get("config"), Mapping):
        return dict(results["config"])
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            try:
                return yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{candidate}: not a readable config ({exc})") from None
    return None


def on_synthetic_data(path: Path, results: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> bool:
    """Whether a result was measured on synthetic data: its ``"synthetic_data"`` flag, else whether the data
    root of its config (``config``, default :func:`recorded_config`) carries the generator's marker."""
    from vireid.data.synthetic import is_synthetic

    if "synthetic_data" in results:
        return bool(results["synthetic_data"])
    config = recorded_config(path, results) if config is None else config
    root = (config or {}).get("data", {}).get("root") if isinstance((config or {}).get("data"), Mapping) else None
    return bool(root) and is_synthetic(str(root))


def axis_top(value: float) -> float:
    """The top of a percentage axis for data up to ``value``: the next multiple of 10 with some room, at most
    100 (lines below 25 get a 0-30 axis, not 0-100)."""
    return float(min(100, 10 * (int(value * 1.08) // 10 + 1)))


def plot_curves(results_files: Sequence[str | Path], out: str | Path, *, labels: Sequence[str] | None = None) -> Path:
    """One PNG with two panels: the mean CMC curve of each run (rank 1..20) and its per-trial Rank-1,
    mAP and mINP, so runs can be compared side by side. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [Path(p) for p in results_files]
    if not paths:
        raise ValueError("give at least one results file")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} results files")
    runs = [load_results(p) for p in paths]
    names = list(labels) if labels is not None else [_label(p, r) for p, r in zip(paths, runs)]
    from matplotlib.ticker import MaxNLocator

    from vireid.data.protocols import protocol_title

    fig, (ax_cmc, ax_trials) = plt.subplots(1, 2, figsize=(13, 5))
    for name, path, res in zip(names, paths, runs):
        cmc = res["mean"].get("cmc")
        if cmc is None:
            raise VireidError(f"{path}: has no CMC curve ('mean.cmc'); re-run vireid test with this version")
        line = ax_cmc.plot(range(1, len(cmc) + 1), cmc, marker="o", markersize=3, label=name)[0]
        trials = [row["trial"] for row in res["trials"]]
        for metric, style in zip(TRIAL_METRICS, ("-", "--", ":")):
            ax_trials.plot(trials, [row[metric] for row in res["trials"]], style, marker=".",
                           color=line.get_color(), label=f"{name} {metric}")
    protocols = {protocol_title(r["protocol"], synthetic=on_synthetic_data(p, r))
                 for p, r in zip(paths, runs) if isinstance(r.get("protocol"), dict)}
    cmc_top = max(max(r["mean"]["cmc"]) for r in runs)
    trial_top = max(row[m] for r in runs for row in r["trials"] for m in TRIAL_METRICS)
    ax_cmc.set(xlabel="rank", ylabel="matching rate (%)", title="CMC (mean over trials)",
               ylim=(0, axis_top(cmc_top)))
    ax_trials.set(xlabel="trial", ylabel="%", title="per trial: Rank-1 (solid), mAP (dashed), mINP (dotted)",
                  ylim=(0, axis_top(trial_top)))
    longest = max(len(r["mean"]["cmc"]) for r in runs)
    ax_cmc.set_xticks([1, *range(5, longest + 1, 5)])  # rank 1 is the figure everyone reads
    ax_trials.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    for ax in (ax_cmc, ax_trials):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(13)
        ax.xaxis.label.set_fontsize(12)
        ax.yaxis.label.set_fontsize(12)
        ax.tick_params(labelsize=11)
    ax_cmc.legend(fontsize=10)
    ax_trials.legend(fontsize=9, ncol=2)
    if protocols:
        fig.suptitle(" / ".join(sorted(protocols)), fontsize=14)
    fig.tight_layout()
    return save_png(fig, out, dpi=150)
