"""Enumerated configuration values, checked when a config is loaded.

Each key that takes one of a fixed set of values is listed here once, with its valid values, so that a
wrong value is a :class:`~vireid.errors.ConfigError` naming the key and the valid values as soon as the
config is read, before any run folder is created. Keys whose values depend on what is registered at
run time (``data.name``, ``model.name``, ``loss.metric``) are checked by their registries when built.
"""

from __future__ import annotations

from typing import Any

from vireid.errors import ConfigError

#: SYSU-MM01 search modes, gallery shots and gallery samplers; RegDB/LLCM query directions.
TEST_MODES = ("all", "indoor")
TEST_SHOTS = (1, 10)
TEST_SAMPLERS = ("community", "official")
TEST_DIRECTIONS = ("visible_to_infrared", "infrared_to_visible")

#: key -> valid values.
CHOICES: dict[str, tuple[Any, ...]] = {
    "test.mode": TEST_MODES,
    "test.shots": TEST_SHOTS,
    "test.sampler": TEST_SAMPLERS,
    "test.direction": TEST_DIRECTIONS,
    "data.resize": ("lanczos", "bilinear"),
    "loss.wrt_variant": ("reference", "softmax"),
    "loss.adaptive_mode": ("hinge", "softplus"),
    "optim.name": ("sgd", "adam"),
    "train.best_metric": ("mAP", "rank1"),
    "train.channels_last": ("auto", "true", "false"),
    "train.amp_dtype": ("auto", "bfloat16", "float16"),
    "model.pool": ("gem", "avg", "max"),
    "model.neck_feat": ("after", "before"),
    "model.test_feature": ("global", "local", "both"),
    "model.csa_combine": ("concat", "sum"),
}


def check_config(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first enumerated key (:data:`CHOICES`) whose value is not valid."""
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = cfg[section][name]
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; expected one of: {', '.join(map(str, choices))}")
