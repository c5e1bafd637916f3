"""Multi-process data-parallel training with ``torchrun``.

``torchrun --nproc_per_node N -m vireid train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:func:`init_distributed` reads them and joins the process group (NCCL on CUDA, Gloo on CPU); a plain
``python -m vireid train`` is world size 1 and initialises nothing. Each rank draws its own batches
(the training loader is built with ``rank`` and ``world_size``), gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel`, and only rank 0 writes logs and checkpoints and
evaluates while the others wait at a barrier.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vireid.errors import ConfigError

#: Collective-operation timeout: rank 0 may evaluate for a long time while the others wait.
DEFAULT_TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, its device and backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, checkpoints and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(spec: str, *, local_rank: int = 0) -> torch.device:
    """``train.device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Under ``torchrun``, ``auto`` and ``cuda`` pick ``cuda:LOCAL_RANK``.
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={spec!r} but CUDA is not available; use train.device=cpu or auto")
        if spec == "cuda":
            return torch.device("cuda", local_rank)
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"train.device={spec!r}: expected auto, cpu, cuda or cuda:N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ConfigError(
                f"train.device={spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return torch.device("cuda", index)
    raise ConfigError(f"train.device={spec!r}: expected auto, cpu, cuda or cuda:N")


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not started by ``torchrun``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init_distributed(device: str = "auto", *, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> DistributedContext:
    """Join the process group described by the ``torchrun`` environment variables.

    World size 1 (no ``torchrun``): returns a context for the resolved device, initialising nothing.
    Otherwise the backend is NCCL when the device is CUDA and Gloo on CPU; each rank uses
    ``cuda:LOCAL_RANK``. Calling it again in an initialised process returns the current context.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistributedContext(device=resolve_device(device))
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start multi-process training with "
            "'torchrun --nproc_per_node N -m vireid train CONFIG'"
        )
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device, local_rank=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timeout)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev,
                              backend=dist.get_backend())


def wrap_model(model: nn.Module, ctx: DistributedContext, *, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` moved to ``ctx.device`` and, when distributed, wrapped in ``DistributedDataParallel``
    (parameters and buffers are broadcast from rank 0, so every replica starts identical).

    ``find_unused_parameters`` (``train.find_unused_parameters``) is needed when some parameters get
    no gradient in a step; DDP raises an error naming it otherwise.
    """
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    if not dist.is_initialized():
        raise RuntimeError("wrap_model: the process group is not initialised; call init_distributed first")
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` without a process group). Collective."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a process group). Collective."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group (no-op when none was initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
