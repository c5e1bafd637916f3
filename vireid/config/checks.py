"""Enumerated configuration values and numeric ranges, checked when a config is loaded.

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


#: Numeric keys and their ranges: ``(lowest, highest, what is allowed)``; ``None`` leaves a side open. A
#: list-valued key's range holds for every element. The loader checks them all, so a run never starts (and
#: writes no run folder) with a value that would fail, or silently misbehave, later.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "data.trial": (1, 10, "a RegDB trial 1..10"),
    "data.height": (16, None, "an image height in pixels >= 16"),
    "data.width": (8, None, "an image width in pixels >= 8"),
    "data.pad": (0, None, "padding in pixels >= 0"),
    "data.random_erasing": (0, 1, "a probability in [0, 1]"),
    "data.erasing_fill": (None, None, "fill values (any real numbers)"),
    "data.channel_erasing": (0, 1, "a probability in [0, 1]"),
    "data.infrared_channel_gray": (0, 1, "a probability in [0, 1]"),
    "data.workers": (-1, None, "a worker count >= 0, or -1 for the CPU count minus one"),
    "data.ids_per_batch": (1, None, "identities per batch >= 1"),
    "data.images_per_id": (1, None, "images per identity >= 1"),
    "model.specific_stages": (0, 3, "0..3 modality-specific stages after the stem"),
    "model.last_stride": (1, 2, "1 or 2"),
    "model.gem_p": (1e-6, None, "a GeM exponent > 0"),
    "model.mca_after": (1, 4, "ResNet stages 1..4"),
    "model.mca_reduction": (1, None, "a channel reduction >= 1"),
    "model.mca_pool_sizes": (1, None, "pooling kernels >= 1"),
    "model.mca_dilations": (1, None, "dilation rates >= 1"),
    "model.pca_after": (1, 4, "ResNet stages 1..4"),
    "model.pca_parts": (1, None, "parts >= 1"),
    "model.local_parts": (0, None, "stripes >= 0 (0 disables the local branch)"),
    "model.local_dim": (1, None, "a stripe dimension >= 1"),
    "model.crossvit_patch_size": (1, None, "patch sizes >= 1"),
    "model.crossvit_coarse_scale": (1e-6, 1, "a scale in (0, 1]"),
    "model.drop_path_rate": (0, 0.999999, "a rate in [0, 1)"),
    "model.csa_reduction": (1, None, "a channel reduction >= 1"),
    "model.csa_kernel": (1, None, "an odd kernel size >= 1"),
    "loss.id_smoothing": (0, 0.999999, "a label-smoothing factor in [0, 1)"),
    "loss.margin": (0, None, "a margin >= 0"),
    "loss.mse_weight": (0, None, "a weight >= 0"),
    "loss.alpha": (0, None, "a weight >= 0"),
    "loss.lambda1": (0, None, "a weight >= 0"),
    "loss.lambda2": (0, None, "a weight >= 0"),
    "loss.lambda3": (0, None, "a weight >= 0"),
    "loss.center_weight": (0, None, "a weight >= 0"),
    "optim.lr": (1e-12, None, "a learning rate > 0"),
    "optim.backbone_lr": (0, None, "a learning rate >= 0 (0 freezes the backbone)"),
    "optim.momentum": (0, 0.999999, "a momentum in [0, 1)"),
    "optim.weight_decay": (0, None, "a weight decay >= 0"),
    "optim.warmup_epochs": (0, None, "epochs >= 0"),
    "optim.milestones": (1, None, "epochs >= 1, ascending"),
    "optim.gamma": (1e-12, 1, "a factor in (0, 1]"),
    "optim.clip_grad_norm": (0, None, "a norm >= 0 (0 disables clipping)"),
    "train.epochs": (0, None, "epochs >= 0"),
    "train.iters_per_epoch": (0, None, "steps >= 0 (0: the reference code's count)"),
    "train.seed": (0, 2**63 - 1, "a seed >= 0"),
    "train.eval_every": (0, None, "epochs >= 0 (0 disables evaluation during training)"),
    "train.checkpoint_every": (1, None, "epochs >= 1"),
    "train.log_every": (1, None, "steps >= 1"),
    "test.trials": (1, None, "trials >= 1"),
    "test.batch_size": (1, None, "a batch size >= 1"),
}


def _range_error(key: str, value: Any, what: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is out of range; expected {what}")


def check_ranges(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first key of :data:`RANGES` whose value (or list element) lies
    outside its range, naming the key, the value and what is allowed; and for the rules that span
    values (ascending milestones, an odd CSA kernel, three erasing fill values, at most one derived view)."""
    for key, (lo, hi, what) in RANGES.items():
        section, name = key.split(".")
        value = cfg[section][name]
        values = list(value) if not isinstance(value, (int, float, str, bool)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # NaN is never in range
                raise _range_error(key, value, what)
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise _range_error(key, value, what)
    milestones = list(cfg.optim.milestones)
    if milestones != sorted(set(milestones)):
        raise _range_error("optim.milestones", milestones, RANGES["optim.milestones"][2])
    if int(cfg.model.csa_kernel) % 2 == 0:
        raise _range_error("model.csa_kernel", cfg.model.csa_kernel, RANGES["model.csa_kernel"][2])
    if len(cfg.data.erasing_fill) != 3:
        raise ConfigError(f"data.erasing_fill={list(cfg.data.erasing_fill)!r}: expected 3 values (R, G, B, in "
                          "normalised units)")
    if cfg.data.channel_exchange and cfg.data.grayscale_view:
        raise ConfigError("data.channel_exchange (CAJ) and data.grayscale_view (FAFE) both add the derived view "
                          "(modality code 2); enable at most one of them")


def check_config(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first enumerated key (:data:`CHOICES`) whose value is not valid,
    then for the first numeric key out of its range (:func:`check_ranges`).

    An auto/true/false switch written as a YAML boolean (``train.channels_last=false`` reaches the string
    field as ``"False"``) is normalised to its lower-case spelling in ``cfg``."""
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = cfg[section][name]
        if choices is SPEED_SWITCHES and value in ("True", "False"):
            value = cfg[section][name] = value.lower()
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; expected one of: {', '.join(map(str, choices))}")
    check_ranges(cfg)
