"""The training run's settings as plain values, read from the configuration in one place.

:class:`TrainSettings` (``train.*``, ``optim.clip_grad_norm``, ``output_dir`` and the config's YAML, which
checkpoints record) and :class:`OptimSettings` (``optim.*``) are built by their ``from_config`` once, by
:func:`vireid.engine.run.build_trainer`; the trainer, the optimiser and the schedule take them and never read
the config. A library user can build them by hand (they are frozen dataclasses with defaults of their own
only where the config has one for every run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vireid.config.checks import AMP_DTYPES, BEST_METRICS, COMPILE_MODES, SPEED_SWITCHES
from vireid.errors import ConfigError, check_choice


def _config_yaml(cfg: Any) -> str:
    try:
        from vireid.config import config_to_yaml
    except ImportError:  # the config loader is optional for library users
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(cfg)
    return config_to_yaml(cfg)


@dataclass(frozen=True)
class TrainSettings:
    """What the :class:`~vireid.engine.trainer.Trainer` needs to know about a run (``train.*`` keys)."""

    output_dir: str
    epochs: int
    device: str = "auto"
    eval_every: int = 10
    checkpoint_every: int = 1
    log_every: int = 20
    best_metric: str = "mAP"
    deterministic: bool = False
    amp: bool = True
    amp_dtype: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    clip_grad_norm: float = 0.0
    find_unused_parameters: bool = False
    config_yaml: str = ""  # the resolved config, recorded in checkpoints and compared on resume

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"train.epochs must be >= 0, got {self.epochs}")
        for key in ("eval_every", "checkpoint_every", "log_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        check_choice("train.channels_last", self.channels_last, SPEED_SWITCHES)
        check_choice("train.amp_dtype", self.amp_dtype, AMP_DTYPES)
        check_choice("train.compile_mode", self.compile_mode, COMPILE_MODES)
        check_choice("train.best_metric", self.best_metric, BEST_METRICS)

    @classmethod
    def from_config(cls, cfg: Any) -> TrainSettings:
        t = cfg.train
        return cls(output_dir=str(cfg.output_dir), epochs=int(t.epochs), device=str(t.device),
                   eval_every=int(t.eval_every), checkpoint_every=int(t.checkpoint_every), log_every=int(t.log_every),
                   best_metric=str(t.best_metric), deterministic=bool(t.deterministic), amp=bool(t.amp),
                   amp_dtype=str(t.amp_dtype), channels_last=str(t.channels_last), compile=bool(t.compile),
                   compile_mode=str(t.compile_mode), clip_grad_norm=float(cfg.optim.clip_grad_norm),
                   find_unused_parameters=bool(t.find_unused_parameters), config_yaml=_config_yaml(cfg))


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser and its schedule (``optim.*`` keys; :mod:`vireid.engine.optim`)."""

    name: str = "sgd"
    lr: float = 0.1
    backbone_lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    milestones: tuple[int, ...] = (20, 50)
    gamma: float = 0.1
    fused: str = "auto"

    @classmethod
    def from_config(cls, cfg: Any) -> OptimSettings:
        o = cfg.optim
        return cls(name=str(o.name), lr=float(o.lr), backbone_lr=float(o.backbone_lr), momentum=float(o.momentum),
                   nesterov=bool(o.nesterov), weight_decay=float(o.weight_decay), warmup_epochs=int(o.warmup_epochs),
                   milestones=tuple(int(m) for m in o.milestones), gamma=float(o.gamma), fused=str(o.fused))


def optim_settings(source: Any) -> OptimSettings:
    """``source`` itself when it is :class:`OptimSettings`, else those of a config."""
    return source if isinstance(source, OptimSettings) else OptimSettings.from_config(source)
