"""Optimiser and learning-rate schedule of the CNN baselines (AGW, CAJ, DAM).

Two parameter groups: the pretrained ``backbone`` at ``optim.backbone_lr`` and the new layers
(``head``: BNNeck, classifiers, attention modules) at ``optim.lr``.

Schedule (epochs are **0-based**, as in the AGW reference code's ``adjust_learning_rate(optimizer,
epoch)`` with ``for epoch in range(start_epoch, ...)``)::

    factor(e) = warmup(e) * gamma ** #{m in milestones : e >= m}
    warmup(e) = (e + 1) / warmup_epochs   if e < warmup_epochs   else 1

and the learning rate of each group in epoch ``e`` is ``base_lr * factor(e)``. With the defaults
(``lr 0.1``, ``warmup_epochs 10``, ``milestones [20, 50]``, ``gamma 0.1``) the head LR is 0.01 in
epoch 0, 0.1 in epochs 9-19, 0.01 in epochs 20-49 and 0.001 from epoch 50 on; in 1-based words:
warm-up over epochs 1-10, x0.1 from epoch 21, x0.01 from epoch 51 (FAFE's "0.1 for epochs 1-20,
0.01 for 21-50, 0.001 for 51-100" is ``warmup_epochs=0`` with the same milestones).

The scheduler is stepped once at the end of every epoch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vireid.config.checks import OPTIMIZERS, SPEED_SWITCHES
from vireid.engine.settings import OptimSettings, optim_settings
from vireid.errors import ConfigError, check_choice


class WarmupMultiStepFactor:
    """``factor(epoch)`` of the schedule in the module docstring (a picklable callable, so the
    scheduler's ``state_dict`` records its settings)."""

    def __init__(self, *, warmup_epochs: int, milestones: Sequence[int], gamma: float):
        if warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {warmup_epochs}")
        if list(milestones) != sorted(milestones) or any(m < 0 for m in milestones):
            raise ConfigError(f"optim.milestones must be non-negative and increasing, got {list(milestones)}")
        if gamma <= 0:
            raise ConfigError(f"optim.gamma must be > 0, got {gamma}")
        self.warmup_epochs = int(warmup_epochs)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, epoch: int) -> float:
        warmup = (epoch + 1) / self.warmup_epochs if epoch < self.warmup_epochs else 1.0
        decays = bisect.bisect_right(self.milestones, epoch)  # milestones m with m <= epoch
        return warmup * self.gamma**decays


def _parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    if hasattr(model, "parameter_groups"):
        groups = model.parameter_groups()
    else:
        groups = {"backbone": [], "head": [p for p in model.parameters() if p.requires_grad]}
    unknown = set(groups) - {"backbone", "head"}
    if unknown:
        raise ValueError(f"parameter_groups() must return 'backbone' and 'head', got extra {sorted(unknown)}")
    return groups


def build_optimizer(settings: OptimSettings | Any, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ``settings`` (:class:`~vireid.engine.settings.OptimSettings`, or a config's
    ``optim.*``) over ``model.parameter_groups()``.

    ``sgd``: momentum ``optim.momentum``, Nesterov ``optim.nesterov``, weight decay
    ``optim.weight_decay``. ``adam``: betas ``(optim.momentum, 0.999)`` and the same weight decay (L2,
    as ``torch.optim.Adam``). Each param group carries ``name`` (``"backbone"`` or ``"head"``); empty
    groups are left out. ``optim.fused`` (``auto``: when every parameter is on a CUDA device) uses the
    fused implementation: the same update in one kernel per step, and under float16 AMP the scaler's
    skip decision stays on the device.
    """
    o = optim_settings(settings)
    lrs = {"backbone": float(o.backbone_lr), "head": float(o.lr)}
    for name, lr in lrs.items():
        if lr < 0:
            key = "optim.backbone_lr" if name == "backbone" else "optim.lr"
            raise ConfigError(f"{key} must be >= 0, got {lr}")
    groups = [
        {"params": params, "lr": lrs[name], "name": name}
        for name, params in _parameter_groups(model).items()
        if params
    ]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    check_choice("optim.fused", o.fused, SPEED_SWITCHES)
    params = [p for g in groups for p in g["params"]]
    fused = o.fused == "true" or (o.fused == "auto" and all(p.device.type == "cuda" for p in params))
    name = str(o.name).lower()
    if name == "sgd":
        if o.nesterov and o.momentum <= 0:
            raise ConfigError(f"optim.nesterov needs optim.momentum > 0, got {o.momentum}")
        return torch.optim.SGD(
            groups, lr=float(o.lr), momentum=float(o.momentum), nesterov=bool(o.nesterov),
            weight_decay=float(o.weight_decay), fused=fused or None,
        )
    if name == "adam":
        if not 0 <= o.momentum < 1:
            raise ConfigError(f"optim.momentum is Adam's beta1 and must be in [0, 1), got {o.momentum}")
        return torch.optim.Adam(
            groups, lr=float(o.lr), betas=(float(o.momentum), 0.999), weight_decay=float(o.weight_decay),
            fused=fused or None,
        )
    raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {o.name!r}")


def build_scheduler(settings: OptimSettings | Any, optimizer: torch.optim.Optimizer) -> LambdaLR:
    """Per-epoch warm-up + multi-step schedule (module docstring) applied to every group's base LR.

    Right after construction each group's ``lr`` is the epoch-0 value; call ``scheduler.step()`` once
    after each epoch.
    """
    o = optim_settings(settings)
    factor = WarmupMultiStepFactor(warmup_epochs=int(o.warmup_epochs), milestones=list(o.milestones),
                                   gamma=float(o.gamma))
    return LambdaLR(optimizer, lr_lambda=factor)


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{group name: lr}`` of the optimiser's param groups (unnamed groups are ``group<i>``)."""
    return {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
