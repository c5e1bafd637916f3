"""Model registry: ``@register_model("name")`` on a :class:`ReIDModel` subclass, ``build_model(cfg, n)``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from vireid.config import config_keys
from vireid.errors import ConfigError
from vireid.models.base import ReIDModel, source_keys

#: Registered models by name (the built-in ones register when :mod:`vireid.models` is imported).
MODELS: dict[str, type[ReIDModel]] = {}


def register_model(name: str) -> Callable[[type[ReIDModel]], type[ReIDModel]]:
    """Class decorator adding a model under ``name`` (also sets ``cls.name``). The class declares its
    constructor's config keys (``CONFIG_KEYS``) or overrides ``from_config(cfg, num_classes)``."""

    def deco(cls: type[ReIDModel]) -> type[ReIDModel]:
        if not (isinstance(cls, type) and issubclass(cls, ReIDModel)):
            raise ValueError(f"register_model({name!r}) expects a ReIDModel subclass, got {cls!r}")
        known = set(config_keys())
        unknown = [key for source in cls.CONFIG_KEYS.values() for key in source_keys(source) if key not in known]
        if unknown:
            raise ValueError(f"register_model({name!r}): {cls.__qualname__}.CONFIG_KEYS names {unknown}, which are not "
                             "keys of the configuration (vireid/config/defaults.py)")
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name].__qualname__}")
        cls.name = name
        MODELS[name] = cls
        return cls

    return deco


def model_names() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(MODELS)


def build_model(cfg: Any, num_classes: int) -> ReIDModel:
    """Build ``cfg.model.name`` from the resolved config for ``num_classes`` training identities.

    An unknown name raises :class:`~vireid.errors.ConfigError` listing the valid names (and the nearest one).
    """
    name = cfg.model.name
    if name not in MODELS:
        near = difflib.get_close_matches(str(name), MODELS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"model.name: unknown model {name!r}; valid names: {', '.join(model_names())}.{hint}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"build_model: num_classes must be a positive integer (training identities), got {num_classes!r}")
    return MODELS[name].from_config(cfg, num_classes)
