"""The identity sampler of visible-infrared training (AGW/CAJ recipe).

Each batch draws ``P`` identities without replacement (among the identities that have images in both
modalities), then ``K`` visible and ``K`` infrared images of each identity with replacement; the
``j``-th visible image of an identity is paired with its ``j``-th infrared image. A batch is a list of
``P * K`` ``(visible_index, infrared_index)`` pairs, identity-major (``K`` consecutive pairs per
identity).

Batch ``b`` of epoch ``e`` is drawn from its own NumPy generator seeded with ``(seed, e, b)``, so the
batches depend only on the seed and the epoch: a resumed run sees exactly the batches of an
uninterrupted one, and global batch ``b`` is the same whatever the number of processes. With
``world_size`` processes the epoch has ``ceil(num_batches / world_size) * world_size`` batches and rank
``r`` takes batches ``r, r + world_size, r + 2 world_size, ...``: every rank gets the same number, the
shares are disjoint and together cover the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

Pair = tuple[int, int]


def reference_batches_per_epoch(num_visible: int, num_infrared: int, ids_per_batch: int, images_per_id: int) -> int:
    """Batches per epoch of the AGW/CAJ reference code: ``floor(max(#visible, #infrared) / (P * K)) + 1``.

    The reference sampler draws index lists for ``int(N / (P * K)) + 1`` batches with
    ``N = max(#visible, #infrared)`` and the loader (``drop_last=True``) yields all of them: on
    SYSU-MM01 (22,258 visible training images) 696 batches for 8 x 4 and 1,392 for 4 x 4.
    """
    if ids_per_batch < 1 or images_per_id < 1:
        raise ValueError(f"ids_per_batch and images_per_id must be >= 1, got {ids_per_batch} and {images_per_id}")
    if num_visible < 0 or num_infrared < 0:
        raise ValueError(f"image counts must be >= 0, got {num_visible} and {num_infrared}")
    return max(num_visible, num_infrared) // (ids_per_batch * images_per_id) + 1


class IdentitySampler:
    """Batches of ``ids_per_batch`` identities x ``images_per_id`` (visible, infrared) index pairs.

    ``visible_pids[i]`` is the identity of visible image ``i`` (and likewise for infrared); indices
    yielded are positions in these sequences. Use it as a DataLoader ``batch_sampler``; call
    :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        visible_pids: Sequence[int],
        infrared_pids: Sequence[int],
        *,
        ids_per_batch: int,
        images_per_id: int,
        num_batches: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if ids_per_batch < 1 or images_per_id < 1:
            raise ValueError(
                f"ids_per_batch and images_per_id must be >= 1, got {ids_per_batch} and {images_per_id}"
            )
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.visible_index = _index_by_pid(visible_pids)
        self.infrared_index = _index_by_pid(infrared_pids)
        self.pids = np.array(sorted(set(self.visible_index) & set(self.infrared_index)), dtype=np.int64)
        if len(self.pids) < ids_per_batch:
            raise ValueError(
                f"ids_per_batch={ids_per_batch} identities per batch, but only {len(self.pids)} identities "
                "have both visible and infrared images"
            )
        self.ids_per_batch = ids_per_batch
        self.images_per_id = images_per_id
        self.num_batches = num_batches
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    # -- epoch state ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = {"epoch", "seed"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}; got keys {sorted(state)}")
        if int(state["seed"]) < 0:
            raise ValueError(f"seed must be >= 0, got {state['seed']}")
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))

    # -- batches ----------------------------------------------------------------------------------
    @property
    def batches_per_rank(self) -> int:
        return math.ceil(self.num_batches / self.world_size)

    def __len__(self) -> int:
        return self.batches_per_rank

    def batch(self, index: int) -> list[Pair]:
        """Global batch ``index`` of the current epoch (the same on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pids = rng.choice(self.pids, size=self.ids_per_batch, replace=False)
        pairs: list[Pair] = []
        for pid in pids.tolist():
            vis = rng.choice(self.visible_index[pid], size=self.images_per_id, replace=True)
            ir = rng.choice(self.infrared_index[pid], size=self.images_per_id, replace=True)
            pairs.extend(zip(vis.tolist(), ir.tolist()))
        return pairs

    def global_indices(self) -> range:
        """Global batch numbers this rank yields in the current epoch."""
        return range(self.rank, self.batches_per_rank * self.world_size, self.world_size)

    def indexed_batches(self) -> Iterator[tuple[int, list[Pair]]]:
        """``(global batch number, pairs)`` for this rank's batches of the current epoch."""
        for index in self.global_indices():
            yield index, self.batch(index)

    def __iter__(self) -> Iterator[list[Pair]]:
        for _, pairs in self.indexed_batches():
            yield pairs


def _index_by_pid(pids: Sequence[int]) -> dict[int, np.ndarray]:
    """pid -> array of the positions holding it, in position order."""
    groups: dict[int, list[int]] = {}
    for i, pid in enumerate(pids):
        groups.setdefault(int(pid), []).append(i)
    return {pid: np.array(idx, dtype=np.int64) for pid, idx in groups.items()}
