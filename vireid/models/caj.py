"""CAJ (Ye et al., "Channel Augmented Joint Learning for Visible-Infrared Recognition", ICCV 2021).

CAJ keeps AGW's network (the authors' code builds AGW's ``embed_net``: modality-specific stems,
non-local blocks, GeM, BNNeck) and changes the data and the objective:

- data (done by the training pipeline, ``data.channel_exchange`` ...): each visible image also gives a
  channel-exchanged view (one of its R, G, B channels replicated to three channels, then channel-level
  random erasing); the model sees it as modality code 2 through the *visible* stem;
- objective ("enhanced channel-mixed learning"): ID loss + a metric loss over the *mixed* batch of all
  three views (visible, exchanged, infrared), so positives and negatives are mined within and across
  modalities at once. The authors' main setting is the enhanced squared difference loss
  (``loss.metric=esd``, :mod:`vireid.losses.esd`); ``loss.metric=wrt`` gives their AGW-style variant.

See docs/paper-notes.md, "Models".
"""

from __future__ import annotations

from vireid.models.agw import AGW
from vireid.models.registry import register_model


@register_model("caj")
class CAJ(AGW):
    """CAJ: AGW's network trained on the three-view channel-mixed batch with ID + ESD (or WRT)."""

    def __init__(self, *, num_classes: int, metric: str = "esd", **kwargs) -> None:
        super().__init__(num_classes=num_classes, metric=metric, **kwargs)
