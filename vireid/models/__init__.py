"""Models: the two-stream CNN backbone, AGW, CAJ and DAM, built by name from the config.

``build_model(cfg, num_classes)`` builds ``cfg.model.name`` from :data:`MODELS`; a new model
registers itself with ``@register_model("name")`` on a :class:`ReIDModel` subclass that declares the config
keys of its constructor's arguments (``CONFIG_KEYS``, read by the default ``from_config(cfg, num_classes)``)
or overrides ``from_config``.
"""

from vireid.models.base import ReIDModel
from vireid.models.registry import MODELS, build_model, model_names, register_model

# Importing the built-in models registers them.
from vireid.models.agw import AGW  # noqa: E402  isort: skip
from vireid.models.caj import CAJ  # noqa: E402  isort: skip
from vireid.models.dam import DAM  # noqa: E402  isort: skip
from vireid.models.fafe import FAFE  # noqa: E402  isort: skip
from vireid.models.backbones import TwoStreamResNet  # noqa: E402  isort: skip
from vireid.models.mca import MultiScaleCrossAttention  # noqa: E402  isort: skip
from vireid.models.pca import PartChannelAttention  # noqa: E402  isort: skip
from vireid.models.pcb import PCBHead  # noqa: E402  isort: skip

__all__ = [
    "AGW",
    "CAJ",
    "DAM",
    "FAFE",
    "MODELS",
    "MultiScaleCrossAttention",
    "PCBHead",
    "PartChannelAttention",
    "ReIDModel",
    "TwoStreamResNet",
    "build_model",
    "model_names",
    "register_model",
]
