"""What a command pays before its work starts: loading a config and loading a trained model.

Each figure is a ratio of two ways timed in the same run (the machine may be shared):

1. ``load_config``'s merging: the files and overrides merged into a copy of the defaults in one OmegaConf
   merge (what the loader does), against one merge per file and per override (what it falls back to, to name
   a bad value's source), and against the defaults rebuilt from their dataclasses and copied by every merge
   (the loader before 2026-12-07), for a shipped config with no overrides and with eight;
2. building a model whose weights are loaded next: inside ``initialisation_skipped`` (what
   ``load_trained_model`` does) against drawing the random start first, for a tiny and a full-size config;
   ``load_trained_model`` itself (file read included) is timed beside them.

Usage::

    python bench/startup_speed.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Eight overrides, as a test or a script passes them.
OVERRIDES = ["train.epochs=1", "data.root=/data", "train.iters_per_epoch=2", "test.trials=2", "data.ids_per_batch=4",
             "data.height=256", "data.width=128", "model.arch=resnet18"]
CONFIGS = ("sysu/dam_tiny", "sysu/agw")


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm: imports, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def row(what: str, figures: dict[str, float]) -> None:
    """``what``, then each way's median and its ratio to the first way's."""
    first = next(iter(figures.values()))
    print(f"{what:44s} " + "   ".join(f"{name} {ms:6.1f} ms (x{ms / first:4.1f})" for name, ms in figures.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per figure (the median is printed)")
    repeat = parser.parse_args().repeat

    import torch
    from omegaconf import OmegaConf

    from vireid.config import config_to_yaml, load_config
    from vireid.config.defaults import VireidConfig
    from vireid.config.loader import _layers, _merge_layers
    from vireid.models import build_model
    from vireid.models.checkpoint import save_checkpoint
    from vireid.models.loading import load_trained_model
    from vireid.models.weights import initialisation_skipped

    torch.set_num_threads(1)
    print("load_config (merging only; reading the YAML and the checks are the same either way)")
    for overrides in ([], OVERRIDES):
        layers = _layers(REPO / "configs" / "sysu" / "dam_tiny.yaml", overrides)

        def rebuilt_and_copied(layers=layers):
            cfg = OmegaConf.structured(VireidConfig)
            OmegaConf.set_struct(cfg, True)
            for _, data in layers:
                cfg = OmegaConf.merge(cfg, OmegaConf.create(data))
            return cfg

        row(f"  sysu/dam_tiny.yaml, {len(overrides)} overrides, {len(layers)} layers", {
            "at once": median_ms(lambda layers=layers: _merge_layers(layers, at_once=True), repeat),
            "one by one": median_ms(lambda layers=layers: _merge_layers(layers, at_once=False), repeat),
            "rebuilt, copied": median_ms(rebuilt_and_copied, repeat)})
    print("a model whose weights are loaded next (one torch thread)")
    with tempfile.TemporaryDirectory(prefix="vireid-startup-") as folder:
        for name in CONFIGS:
            cfg = load_config(REPO / "configs" / f"{name}.yaml", ["model.pretrained=none"])

            def skipped(cfg=cfg):
                with initialisation_skipped():
                    return build_model(cfg, 100)

            row(f"  build {name}", {"start skipped": median_ms(skipped, repeat),
                                    "random start": median_ms(lambda cfg=cfg: build_model(cfg, 100), repeat)})
            path = save_checkpoint(Path(folder) / f"{name.replace('/', '_')}.pt", model=build_model(cfg, 100), epoch=1,
                                   num_classes=100, config_yaml=config_to_yaml(cfg))
            print(f"  load_trained_model {name} (file read included): "
                  f"{median_ms(lambda cfg=cfg, path=path: load_trained_model(cfg, path), max(3, repeat // 4)):.1f} ms")


if __name__ == "__main__":
    main()
