"""EpochPlan: the block order is a function of (seed, epoch), a permutation, new every epoch."""

import numpy as np

from hpcdist.data import EpochPlan


def block_starts(counts, block):
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return sorted(
        int(o + r) for o, n in zip(offsets, counts, strict=False) for r in range(0, n, block)
    )


def test_block_order_is_reshuffled_every_epoch():
    """Planted bug it catches: an EpochPlan whose block order ignores the epoch (one
    permutation for all).

    The pipeline's "reshuffled" check passed with that bug, because the shuffle
    window's RNG and the rolled-over remainder change every epoch anyway; here
    the plan's own block order is compared, with remainder="pad" (nothing is
    carried over, so the order is the permutation alone).
    """
    counts, block = [64, 40, 9], 8
    plan = EpochPlan(counts, seed=3, world_size=1, batch_size=8, remainder="pad", block_size=block)
    orders = []
    for epoch in range(4):
        a, b = plan.order(epoch)
        assert sorted(a.tolist()) == block_starts(counts, block)  # every block once
        assert int((b - a).sum()) == sum(counts)
        orders.append(tuple(a.tolist()))
    assert len(set(orders)) == len(orders), "some epochs share a block order"
    again = EpochPlan(counts, seed=3, world_size=1, batch_size=8, remainder="pad", block_size=block)
    assert tuple(again.order(2)[0].tolist()) == orders[2]  # a function of (seed, epoch)
    other = EpochPlan(counts, seed=4, world_size=1, batch_size=8, remainder="pad", block_size=block)
    assert tuple(other.order(2)[0].tolist()) != orders[2]
