"""Per-rank gradient lists, their serial float64 reference, and the pretend-node layouts."""

import numpy as np

SHAPES = [(17, 3), (0,), (2000,), (4, 5, 6), (1,), (0, 3), (30000,)]

#: ranks_per_node for AllreduceExchange: None (the runtime's nodes: one, in-process),
#: nodes of 1 rank (every rank a leader) and of 2 ranks (at 3 ranks: nodes of 2 and 1).
LAYOUTS = [None, 1, 2]


def rank_data(rank: int, seed: int = 0, dtype=np.float32, shapes=SHAPES):
    """What rank `rank` contributes; every rank can compute every rank's data."""
    rng = np.random.default_rng(seed * 7919 + rank)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def reference(size: int, op: str, seed: int = 0, dtype=np.float32, shapes=SHAPES):
    """The sum or average over `size` ranks of rank_data, computed serially in float64."""
    every = [rank_data(r, seed, dtype, shapes) for r in range(size)]
    sums = [sum(e[i].astype(np.float64) for e in every) for i in range(len(shapes))]
    return [s / size for s in sums] if op == "average" else sums


def rel_error(out, ref) -> float:
    """||out - ref|| / ||ref|| over the whole list."""
    num = sum(
        float(np.sum((np.asarray(o, np.float64) - r) ** 2)) for o, r in zip(out, ref, strict=True)
    )
    return (num / max(sum(float(np.sum(r**2)) for r in ref), 1e-300)) ** 0.5


def node_of(rank: int, size: int, ranks_per_node):
    """(node size, number of nodes, is leader) of `rank` with pretend nodes on one machine."""
    if ranks_per_node is None:
        import hpcdist

        info = hpcdist.rank_info()
        return info.local_size, info.num_nodes, info.local_rank == 0
    k = ranks_per_node
    first = rank // k * k
    return min(k, size - first), -(-size // k), rank == first
