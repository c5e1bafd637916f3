"""What one training step hands over: the batch on its way to the device (:func:`move_batch`, checked on
the host first by :func:`check_batch_codes`), and the step's scalar outputs on their way back
(:class:`StepOutputs`), summed on the device between two reads (:class:`DeviceSums`).

Together they keep a step free of device-to-host synchronisation: labels are checked where reading them is
free, the modality codes travel with a host copy for the two-stream routing, and losses reach the host
once per log interval (docs/architecture.md, "A step without host reads").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import torch

from vireid.data.records import values_outside
from vireid.models.base import HOST_MODALITY_KEY


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with every tensor on ``device`` (other values unchanged). The modality codes also stay on
    the host under :data:`~vireid.models.base.HOST_MODALITY_KEY`, so that a two-stream model routes the
    batch without reading the device."""
    non_blocking = device.type == "cuda"
    moved = {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) and k != HOST_MODALITY_KEY
             else v for k, v in batch.items()}
    modality = batch.get("modality")
    if isinstance(modality, torch.Tensor) and modality.device.type == "cpu" and device.type != "cpu":
        moved.setdefault(HOST_MODALITY_KEY, modality)
    return moved


def check_batch_codes(batch: dict[str, Any], num_classes: int | None) -> None:
    """Check a batch's identity labels and modality codes while they are still on the host, where reading
    them is free: models and losses on an accelerator then need not read them back.

    Raises:
        ValueError: a label outside ``0..num_classes-1`` or a modality code outside 0, 1, 2.
    """
    for key, high in (("pids", num_classes), ("modality", 3)):
        value = batch.get(key)
        if high is None or not isinstance(value, torch.Tensor) or value.device.type != "cpu" or not value.numel():
            continue
        bad = values_outside(value.numpy(), high)
        if bad:
            raise ValueError(f"batch[{key!r}] has values outside 0..{high - 1}: {bad[:10]}")


class StepOutputs(MutableMapping):
    """The scalar outputs of one training step, as floats by name.

    The values the model computed stay on the device until the first read, which copies all of them in
    one transfer (``total_loss`` first, ``"skipped": 1.0`` when the AMP scaler skipped the update); the
    training loop itself never reads them (it sums them on the device, see
    :meth:`vireid.engine.trainer.Trainer.train_epoch`).
    Values set from the host (``outputs[k] = v`` in an overriding :meth:`Trainer.run_step`) are plain floats.
    Reading the outputs of a step whose objective was not finite, without a loss scaler to skip it, raises
    :class:`FloatingPointError`.
    """

    def __init__(self, names: list[str], values: torch.Tensor, skipped: torch.Tensor | None,
                 on_nonfinite: Callable[[dict[str, float]], None] | None = None):
        self.names = names
        self.tensor = values  # [len(names)] float32 on the device; values[0] is the objective
        self.skipped = skipped  # 0-dim float (1.0 skipped) on the device, None without a scaler
        self.host: dict[str, float] = {}  # values set on the host
        self._read: dict[str, float] | None = None
        self._on_nonfinite = on_nonfinite

    def device_values(self) -> dict[str, float]:
        """The device values as floats (one transfer, done once)."""
        if self._read is None:
            row = self.tensor if self.skipped is None else torch.cat([self.tensor, self.skipped.reshape(1)])
            floats = row.tolist()
            read = dict(zip(self.names, floats))
            if self.skipped is not None and floats[-1]:
                read["skipped"] = 1.0
            self._read = read
            if self._on_nonfinite is not None and not math.isfinite(read[self.names[0]]):
                self._on_nonfinite(read)
        return self._read

    @classmethod
    def from_floats(cls, floats: dict[str, float]) -> StepOutputs:
        """Outputs already on the host (``total_loss`` first when present)."""
        names = sorted(floats, key=lambda k: k != "total_loss")
        skipped = torch.tensor(float(floats["skipped"])) if "skipped" in floats else None
        names = [k for k in names if k != "skipped"]
        return cls(names, torch.tensor([float(floats[k]) for k in names]), skipped)

    def _all(self) -> dict[str, float]:
        return {**self.device_values(), **self.host}

    def __getitem__(self, key: str) -> float:
        if key in self.host:
            return self.host[key]
        return self.device_values()[key]

    def __setitem__(self, key: str, value: float) -> None:
        self.host[key] = float(value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("a step's outputs cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class DeviceSums:
    """Sums of the steps' outputs kept on the device between two reads: per output name, the sum over the
    steps that were not skipped and their count; the skipped steps; the first step whose objective was not
    finite (-1: none). Reading (:meth:`read`) is the one device-to-host transfer of a log interval."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, ...], list[torch.Tensor]] = {}
        self.host: dict[str, list[float]] = {}
        self.skipped: torch.Tensor | None = None
        self.first_bad: torch.Tensor | None = None
        self.steps = 0

    def add(self, out: StepOutputs, step: int) -> None:
        self.steps += 1
        kept = torch.ones((), device=out.tensor.device) if out.skipped is None else 1.0 - out.skipped
        values = torch.where(kept > 0, out.tensor, torch.zeros_like(out.tensor))
        key = tuple(out.names)
        if key in self.groups:
            acc = self.groups[key]
            acc[0] = acc[0] + values
            acc[1] = acc[1] + kept
        else:
            self.groups[key] = [values, kept]
        if out.skipped is not None:
            self.skipped = out.skipped if self.skipped is None else self.skipped + out.skipped
        bad = ~torch.isfinite(out.tensor[0])
        if out.skipped is None:
            mark = torch.where(bad, torch.full_like(out.tensor[0], float(step)), torch.full_like(out.tensor[0], -1.0))
            self.first_bad = mark if self.first_bad is None else torch.where(self.first_bad >= 0, self.first_bad, mark)
        for k, v in out.host.items():
            total = self.host.setdefault(k, [0.0, 0.0])
            total[0] += v
            total[1] += 1

    def read(self) -> tuple[dict[str, float], int, int]:
        """``(means, skipped steps, first non-finite step or -1)``, in one transfer."""
        parts, layout = [], []
        for names, (values, kept) in self.groups.items():
            parts += [values.float(), kept.float().reshape(1)]
            layout.append(names)
        device = parts[0].device if parts else torch.device("cpu")
        skipped = self.skipped if self.skipped is not None else torch.zeros((), device=device)
        first_bad = self.first_bad if self.first_bad is not None else torch.full((), -1.0, device=device)
        parts += [skipped.float().reshape(1), first_bad.float().reshape(1)]
        floats = torch.cat(parts).tolist()
        sums: dict[str, list[float]] = {}
        i = 0
        for names in layout:
            chunk, count = floats[i:i + len(names)], floats[i + len(names)]
            i += len(names) + 1
            for name, v in zip(names, chunk):
                total = sums.setdefault(name, [0.0, 0.0])
                total[0] += v
                total[1] += count
        skipped, first_bad = floats[-2], floats[-1]
        for k, (v, c) in self.host.items():
            sums[k] = [v, c]
        means = {k: v / c for k, (v, c) in sums.items() if c > 0}
        return means, int(skipped), int(first_bad)
