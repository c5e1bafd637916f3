"""The training run's settings as plain values, read from the configuration in one place.

:class:`TrainSettings` (``train.*``, ``optim.clip_grad_norm``, ``output_dir`` and the config's YAML, which
checkpoints record) and :class:`OptimSettings` (``optim.*``) are built by their ``from_config`` once, by
:func:`vireid.engine.run.build_training_parts`; the trainer, the optimiser and the schedule take them and never read
the config. A library user can build them by hand (frozen dataclasses whose defaults are the defaults file's,
:mod:`vireid.config.defaults`: one definition of each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vireid.config import config_to_yaml
from vireid.config.checks import AMP_DTYPES, BEST_METRICS, COMPILE_MODES, SPEED_SWITCHES
from vireid.config.defaults import OptimConfig, TrainConfig
from vireid.errors import ConfigError, check_choice

#: The defaults file's values: a setting left out when building the settings by hand takes the config's default.
_TRAIN, _OPTIM = TrainConfig(), OptimConfig()


@dataclass(frozen=True)
class TrainSettings:
    """What the :class:`~vireid.engine.trainer.Trainer` needs to know about a run (``train.*`` keys)."""

    output_dir: str
    epochs: int
    device: str = _TRAIN.device
    eval_every: int = _TRAIN.eval_every
    checkpoint_every: int = _TRAIN.checkpoint_every
    log_every: int = _TRAIN.log_every
    best_metric: str = _TRAIN.best_metric
    deterministic: bool = _TRAIN.deterministic
    amp: bool = _TRAIN.amp
    amp_dtype: str = _TRAIN.amp_dtype
    channels_last: str = _TRAIN.channels_last
    compile: bool = _TRAIN.compile
    compile_mode: str = _TRAIN.compile_mode
    clip_grad_norm: float = _OPTIM.clip_grad_norm
    find_unused_parameters: bool = _TRAIN.find_unused_parameters
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
                   find_unused_parameters=bool(t.find_unused_parameters), config_yaml=config_to_yaml(cfg))


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser and its schedule (``optim.*`` keys; :mod:`vireid.engine.optim`)."""

    name: str = _OPTIM.name
    lr: float = _OPTIM.lr
    backbone_lr: float = _OPTIM.backbone_lr
    momentum: float = _OPTIM.momentum
    nesterov: bool = _OPTIM.nesterov
    weight_decay: float = _OPTIM.weight_decay
    warmup_epochs: int = _OPTIM.warmup_epochs
    milestones: tuple[int, ...] = tuple(_OPTIM.milestones)
    gamma: float = _OPTIM.gamma
    fused: str = _OPTIM.fused

    @classmethod
    def from_config(cls, cfg: Any) -> OptimSettings:
        o = cfg.optim
        return cls(name=str(o.name), lr=float(o.lr), backbone_lr=float(o.backbone_lr), momentum=float(o.momentum),
                   nesterov=bool(o.nesterov), weight_decay=float(o.weight_decay), warmup_epochs=int(o.warmup_epochs),
                   milestones=tuple(int(m) for m in o.milestones), gamma=float(o.gamma), fused=str(o.fused))


def optim_settings(source: Any) -> OptimSettings:
    """``source`` itself when it is :class:`OptimSettings`, else those of a config."""
    return source if isinstance(source, OptimSettings) else OptimSettings.from_config(source)
