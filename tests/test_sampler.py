"""IdentitySampler: batch composition, determinism from (seed, epoch), rank shards."""

from __future__ import annotations

from collections import Counter

import pytest

from vireid.data.sampler import IdentitySampler

# 6 identities; pid 50 is visible-only and pid 60 infrared-only (never drawn)
VIS = [10, 10, 10, 20, 20, 30, 30, 30, 30, 40, 50, 50, 70, 70, 80]
IR = [20, 10, 30, 30, 40, 40, 10, 60, 70, 80, 80, 80]
BOTH = {10, 20, 30, 40, 70, 80}


def make(**kw) -> IdentitySampler:
    args = dict(ids_per_batch=3, images_per_id=2, num_batches=7, seed=5)
    args.update(kw)
    return IdentitySampler(VIS, IR, **args)


def test_every_batch_has_p_distinct_ids_k_each_and_paired_by_pid() -> None:
    sampler = make(ids_per_batch=4, images_per_id=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    drawn = Counter()
    for pairs in batches:
        assert len(pairs) == 4 * 3
        pids = [VIS[v] for v, _ in pairs]
        assert [IR[i] for _, i in pairs] == pids  # visible and infrared paired by position
        blocks = [pids[j : j + 3] for j in range(0, 12, 3)]  # identity-major
        assert all(len(set(b)) == 1 for b in blocks)
        ids = [b[0] for b in blocks]
        assert len(set(ids)) == 4 and set(ids) <= BOTH
        drawn.update(ids)
    assert set(drawn) <= BOTH


def test_all_eligible_ids_and_images_get_drawn_over_epochs() -> None:
    sampler = make(num_batches=30)
    ids, vis, ir = set(), set(), set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for pairs in sampler:
            ids.update(VIS[v] for v, _ in pairs)
            vis.update(v for v, _ in pairs)
            ir.update(i for _, i in pairs)
    assert ids == BOTH
    assert vis == {i for i, p in enumerate(VIS) if p in BOTH}
    assert ir == {i for i, p in enumerate(IR) if p in BOTH}


def test_deterministic_from_seed_and_epoch() -> None:
    a, b = make(), make()
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice gives the same epoch
    b.set_epoch(4)
    assert list(a) != list(b)
    c = make(seed=6)
    c.set_epoch(3)
    assert list(a) != list(c)


def test_state_dict_round_trip() -> None:
    a = make()
    a.set_epoch(9)
    state = a.state_dict()
    assert state == {"epoch": 9, "seed": 5}
    b = make(seed=0)
    b.load_state_dict(state)
    assert b.epoch == 9 and b.seed == 5
    assert list(a) == list(b)
    with pytest.raises(ValueError, match="lacks"):
        b.load_state_dict({"epoch": 1})


@pytest.mark.parametrize("num_batches, world_size", [(8, 2), (7, 3), (1, 4)])
def test_rank_shards_are_disjoint_equal_and_cover_the_epoch(num_batches, world_size) -> None:
    per_rank = -(-num_batches // world_size)
    shards = []
    for rank in range(world_size):
        s = make(num_batches=num_batches, rank=rank, world_size=world_size)
        s.set_epoch(2)
        assert len(s) == per_rank
        shards.append(list(s.indexed_batches()))
    numbers = [n for shard in shards for n, _ in shard]
    assert all(len(shard) == per_rank for shard in shards)
    assert sorted(numbers) == list(range(per_rank * world_size))  # disjoint and covering
    # each global batch is the one a single process draws for that number
    single = make(num_batches=per_rank * world_size)
    single.set_epoch(2)
    reference = dict(single.indexed_batches())
    for shard in shards:
        for n, pairs in shard:
            assert pairs == reference[n]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="only 6 identities"):
        make(ids_per_batch=7)
    with pytest.raises(ValueError, match="rank"):
        make(rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_batches"):
        make(num_batches=0)
    with pytest.raises(ValueError, match="images_per_id"):
        make(images_per_id=0)
