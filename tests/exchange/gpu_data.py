"""Per-rank gradient lists and their float64 reference, for the GPU and staging tests."""

import numpy as np

SHAPES = [(17, 3), (0,), (5000,), (40000,)]


def rank_data(rank, seed=0):
    """Rank `rank`'s float32 gradients for `seed` (any rank can make any rank's)."""
    rng = np.random.default_rng(seed * 31 + rank)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def reference(size, seed=0):
    """The float64 average over `size` ranks, computed serially."""
    every = [rank_data(r, seed) for r in range(size)]
    return [sum(e[i].astype(np.float64) for e in every) / size for i in range(len(SHAPES))]


def rel_error(out, ref):
    """||out - ref|| / ||ref|| over the whole list."""
    num = sum(
        float(np.sum((np.asarray(o, np.float64) - r) ** 2)) for o, r in zip(out, ref, strict=True)
    )
    return (num / sum(float(np.sum(r**2)) for r in ref)) ** 0.5
