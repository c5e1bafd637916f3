"""A trained model from its checkpoint: a vireid checkpoint or one of the AGW/CAJ reference code, built
from a config and loaded strictly. Used by every command that takes a checkpoint (test, convert, embed,
export, index, search, serve, visualize), so it sits on the models floor that the engine and retrieval
both build on (docs/architecture.md, "Layers")."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from vireid.errors import CheckpointError, ConfigError
from vireid.models.checkpoint import apply_model_state, load_model_checkpoint
from vireid.models.weights import initialisation_skipped

logger = logging.getLogger("vireid.models")


def _warn_model_config_changes(path: str | Path, saved_yaml: str | None, cfg: Any) -> None:
    """Warn when the checkpoint's ``model.*`` settings differ from the config's (the weights may still
    fit, e.g. AGW and DAM without attention share their keys)."""
    if not saved_yaml:
        return
    import yaml
    from omegaconf import OmegaConf

    try:
        saved = (yaml.safe_load(saved_yaml) or {}).get("model", {})
    except yaml.YAMLError:
        return
    current = OmegaConf.to_container(cfg.model, resolve=True)
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k != "pretrained")
    if changed:
        logger.warning("%s was trained with %s; the config says %s", path,
                       ", ".join(f"model.{k}={saved.get(k)!r}" for k in changed),
                       ", ".join(f"model.{k}={current.get(k)!r}" for k in changed))


def checkpoint_model_config(cfg: Any, ckpt: dict[str, Any], source: str | Path) -> Any:
    """A copy of ``cfg`` that builds the network of ``ckpt``: ``model.pretrained=none`` (every weight comes
    from the checkpoint) and, for a reference-code checkpoint, the geometry read from its weights
    (ResNet-50, stem-only modality streams, non-local blocks and their ``inter_channels``); a setting of
    the config that the file contradicts is logged. A reference file needs ``model.name`` agw or caj."""
    from vireid.models.reference import REFERENCE_FORMAT, REFERENCE_GEOMETRY_KEYS, REFERENCE_MODELS

    model_cfg = copy.deepcopy(cfg)
    model_cfg.model.pretrained = "none"
    if ckpt.get("source_format") == REFERENCE_FORMAT:
        overrides = ckpt["reference"].model_overrides()
    elif (ckpt.get("extra") or {}).get("source_format") == REFERENCE_FORMAT and ckpt.get("config"):
        import yaml  # written by `vireid convert`: the recorded config holds the weights' geometry

        saved = (yaml.safe_load(ckpt["config"]) or {}).get("model", {})
        overrides = {k: saved[k] for k in REFERENCE_GEOMETRY_KEYS if k in saved}
    else:
        return model_cfg
    if cfg.model.name not in REFERENCE_MODELS:
        raise ConfigError(f"{source} holds the network of the AGW/CAJ reference code (embed_net); it fits "
                          f"model.name agw or caj, not {cfg.model.name!r} (give an AGW or CAJ config)")
    for key, value in overrides.items():
        if model_cfg.model[key] != value:
            logger.warning("%s: the weights say model.%s=%r (the config said %r); using the weights' value",
                           source, key, value, model_cfg.model[key])
            model_cfg.model[key] = value
    return model_cfg


def load_trained_model(
    cfg: Any, checkpoint: str | Path, *, ckpt: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """``(model, checkpoint_dict)``: the model of ``cfg`` holding the weights of a vireid checkpoint or of
    a reference-code checkpoint (:func:`vireid.models.checkpoint.load_model_checkpoint`), strictly (a
    missing, unreadable or non-fitting file is a :class:`~vireid.errors.CheckpointError`; nothing is
    silently left at its initial value). ``ckpt``: the file's contents when the caller has already read
    them."""
    from vireid.models import build_model

    ckpt = load_model_checkpoint(checkpoint) if ckpt is None else ckpt
    num_classes = ckpt.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise CheckpointError(f"{checkpoint}: checkpoint does not record num_classes")
    _warn_model_config_changes(checkpoint, ckpt.get("config"), cfg)
    with initialisation_skipped():  # every weight comes from the file: no random start drawn first
        model = build_model(checkpoint_model_config(cfg, ckpt, checkpoint), num_classes)
    apply_model_state(model, ckpt["model"], source=str(checkpoint), strict=True)
    return model, ckpt
