"""Identity (classification) loss: cross-entropy with label smoothing, FAFE eq 13 (DAM eq 9 at xi = 0).

FAFE eq 13, for one image of true class y over N training identities with predicted probabilities p_i::

    L_id = sum_i -q_i log p_i,   q_y = 1 - (N - 1)/N * xi,   q_i = xi / N  (i != y)

which is ``(1 - xi) * CE + xi * mean_i(-log p_i)``. With ``xi = 0`` it is the plain cross-entropy of
DAM eq 9. The loss is averaged over the batch (DAM eq 9 writes a sum over the batch; every reference
implementation averages, which only rescales the learning rate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vireid.errors import ConfigError
from vireid.losses.distance import check_labels


class CrossEntropyLabelSmooth(nn.Module):
    """Label-smoothing cross-entropy (FAFE eq 13); ``epsilon`` is the paper's xi."""

    def __init__(self, *, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"CrossEntropyLabelSmooth: epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    @classmethod
    def from_config(cls, cfg) -> CrossEntropyLabelSmooth:
        """Reads ``loss.id_smoothing``."""
        return cls.checked(cfg.loss.id_smoothing)

    @classmethod
    def checked(cls, epsilon: float) -> CrossEntropyLabelSmooth:
        """The loss with smoothing ``epsilon`` from the config: a bad value is a :class:`ConfigError`
        naming ``loss.id_smoothing``."""
        try:
            return cls(epsilon=epsilon)
        except ValueError as err:
            raise ConfigError(f"loss.id_smoothing: expected a value in [0, 1], got {epsilon!r}") from err

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits`` ``[N, C]``, ``targets`` long ``[N]`` in ``0..C-1``; returns the batch mean."""
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"CrossEntropyLabelSmooth: logits must be a floating tensor [N, C], got {shape}")
        num_classes = logits.shape[1]
        check_labels(targets, logits.shape[0], name="targets", loss="CrossEntropyLabelSmooth")
        # read on the host only where that is free (CPU); the training loop checks a batch's labels on the host
        # before they move to an accelerator (vireid.engine.step.check_batch_codes)
        if targets.numel() and targets.device.type == "cpu":
            values = targets.detach().numpy()
            if values.min() < 0 or values.max() >= num_classes:
                raise ValueError(
                    f"CrossEntropyLabelSmooth: targets must lie in 0..{num_classes - 1} (C = {num_classes} logits), "
                    f"got values in {values.min()}..{values.max()}"
                )
        log_p = F.log_softmax(logits.float(), dim=1)
        q = torch.full_like(log_p, self.epsilon / num_classes)
        q.scatter_(1, targets.long().unsqueeze(1), 1.0 - (num_classes - 1) / num_classes * self.epsilon)
        return -(q * log_p).sum(1).mean()

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
