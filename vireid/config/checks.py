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
#: The other enumerated keys' values; the modules that act on them import these (one definition each).
RESIZES = ("lanczos", "bilinear")
WRT_VARIANTS = ("reference", "softmax")
TRIPLET_MODES = ("hinge", "softplus")
OPTIMIZERS = ("sgd", "adam")
BEST_METRICS = ("mAP", "rank1")
SPEED_SWITCHES = ("auto", "true", "false")
AMP_DTYPES = ("auto", "bfloat16", "float16")
AUGMENT_SITES = ("auto", "workers", "device")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
POOLS = ("gem", "avg", "max")
NECK_FEATS = ("after", "before")
TEST_FEATURES = ("global", "local", "both")
COMBINES = ("concat", "sum")

#: key -> valid values.
CHOICES: dict[str, tuple[Any, ...]] = {
    "test.mode": TEST_MODES,
    "test.shots": TEST_SHOTS,
    "test.sampler": TEST_SAMPLERS,
    "test.direction": TEST_DIRECTIONS,
    "data.resize": RESIZES,
    "data.augment_on": AUGMENT_SITES,
    "loss.wrt_variant": WRT_VARIANTS,
    "loss.adaptive_mode": TRIPLET_MODES,
    "optim.name": OPTIMIZERS,
    "train.best_metric": BEST_METRICS,
    "train.channels_last": SPEED_SWITCHES,
    "optim.fused": SPEED_SWITCHES,
    "train.amp_dtype": AMP_DTYPES,
    "train.compile_mode": COMPILE_MODES,
    "model.pool": POOLS,
    "model.neck_feat": NECK_FEATS,
    "model.test_feature": TEST_FEATURES,
    "model.csa_combine": COMBINES,
}


def check_config(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first enumerated key (:data:`CHOICES`) whose value is not valid.

    An auto/true/false switch written as a YAML boolean (``train.channels_last=false`` reaches the string
    field as ``"False"``) is normalised to its lower-case spelling in ``cfg``."""
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = cfg[section][name]
        if choices is SPEED_SWITCHES and value in ("True", "False"):
            value = cfg[section][name] = value.lower()
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; expected one of: {', '.join(map(str, choices))}")
