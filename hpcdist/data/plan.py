"""EpochPlan: every rank computes the same global record order from (seed, epoch)."""

from __future__ import annotations

import numpy as np

REMAINDERS = ("drop", "pad")


def _subtract(starts, stops, cuts):
    """Ranges [starts, stops) with the ranges in `cuts` removed (order kept)."""
    out_a, out_b = [], []
    cuts = sorted(cuts)
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        for ca, cb in cuts:
            if cb <= a or ca >= b:
                continue
            if ca > a:
                out_a.append(a)
                out_b.append(ca)
            a = max(a, cb)
            if a >= b:
                break
        if a < b:
            out_a.append(a)
            out_b.append(b)
    return np.array(out_a, dtype=np.int64), np.array(out_b, dtype=np.int64)


def _take(starts, stops, lo: int, hi: int):
    """The records at positions [lo, hi) of the concatenated ranges, as ranges."""
    lens = stops - starts
    ends = np.cumsum(lens)
    begins = ends - lens
    keep = (ends > lo) & (begins < hi)
    a = starts[keep] + np.maximum(0, lo - begins[keep])
    b = stops[keep] - np.maximum(0, ends[keep] - hi)
    return a, b


class EpochPlan:
    """The global order of one epoch and each rank's share, without communication.

    Records get global ids: file i's rows are offsets[i] .. offsets[i+1].
    Records are grouped in blocks of `block_size` consecutive rows of one
    file (contiguous reads); the blocks are permuted from (seed, epoch), and
    rank r takes a contiguous range of *records* of that order (so fewer files
    than ranks works).

    remainder="drop": every rank takes steps * batch_size records, steps =
    N // (world * batch). The L = N - world*steps*batch records left at the
    end of epoch e are rolled to the front of epoch e+1 (that epoch permutes
    the other N - L records after them): no record is lost over a run, none
    is seen twice in one epoch. remainder="pad": ranks take near-equal shares
    covering every record once; steps = ceil(max share / batch) and the
    pipeline pads short batches with a mask.
    """

    def __init__(
        self,
        counts,
        seed: int,
        world_size: int,
        batch_size: int,
        *,
        remainder: str = "drop",
        block_size: int = 1024,
    ):
        counts = np.asarray(counts, dtype=np.int64)
        if remainder not in REMAINDERS:
            raise ValueError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
        if batch_size < 1 or world_size < 1 or block_size < 1:
            raise ValueError(
                f"batch_size, world_size and block_size must be >= 1, got "
                f"{batch_size}, {world_size}, {block_size}"
            )
        self.counts, self.seed, self.world_size = counts, int(seed), int(world_size)
        self.batch_size, self.remainder, self.block_size = batch_size, remainder, block_size
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        per_step = world_size * batch_size
        if remainder == "drop":
            self.steps = self.total // per_step
            if self.steps == 0:
                raise ValueError(
                    f"{self.total} records cannot give {world_size} ranks one batch of "
                    f"{batch_size} each (remainder='drop'); use remainder='pad'"
                )
        else:
            share = -(-self.total // world_size)
            self.steps = -(-share // batch_size)
        self.leftover_count = self.total - world_size * self.steps * batch_size
        starts, stops = [], []
        for f, n in enumerate(counts.tolist()):
            s = np.arange(0, n, block_size, dtype=np.int64) + self.offsets[f]
            starts.append(s)
            stops.append(np.minimum(s + block_size, self.offsets[f + 1]))
        self._block_a = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self._block_b = np.concatenate(stops) if stops else np.zeros(0, np.int64)
        self._leftovers: dict[int, list] = {-1: []}

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), 0x0E90C4])

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's global order as ranges [a, b) of global record ids."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        carried = self._leftover(epoch - 1) if self.remainder == "drop" else []
        a, b = _subtract(self._block_a, self._block_b, carried)
        perm = self._rng(epoch).permutation(len(a))
        head_a = np.array([c[0] for c in carried], dtype=np.int64)
        head_b = np.array([c[1] for c in carried], dtype=np.int64)
        return np.concatenate([head_a, a[perm]]), np.concatenate([head_b, b[perm]])

    def _leftover(self, epoch: int) -> list:
        """Ranges left over at the end of `epoch` (drop mode), computed epoch by epoch."""
        if epoch not in self._leftovers:
            done = max(e for e in self._leftovers if e < epoch)
            for e in range(done + 1, epoch + 1):
                a, b = self.order(e)
                la, lb = _take(a, b, self.total - self.leftover_count, self.total)
                self._leftovers[e] = list(zip(la.tolist(), lb.tolist(), strict=True))
        return self._leftovers[epoch]

    def share_bounds(self, rank: int) -> tuple[int, int]:
        """Positions [lo, hi) of the epoch order that `rank` takes."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {rank}")
        if self.remainder == "drop":
            per = self.steps * self.batch_size
            return rank * per, (rank + 1) * per
        w = self.world_size
        return self.total * rank // w, self.total * (rank + 1) // w

    def rank_ranges(self, epoch: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's records in order, as global-id ranges [a, b) (each within one block)."""
        lo, hi = self.share_bounds(rank)
        a, b = self.order(epoch)
        return _take(a, b, lo, hi)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file index, row in file) of global ids."""
        ids = np.asarray(ids, dtype=np.int64)
        f = np.searchsorted(self.offsets, ids, side="right") - 1
        return f, ids - self.offsets[f]


def id_runs(ids: np.ndarray, plan) -> tuple[np.ndarray, np.ndarray]:
    """Global ids (in order) as runs of consecutive rows of one file: (starts, lengths)."""
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    files = plan.locate(ids)[0]
    cut = np.flatnonzero((np.diff(ids) != 1) | (np.diff(files) != 0)) + 1
    first = np.r_[0, cut]
    return ids[first], np.diff(np.r_[first, len(ids)])


def skip_records(a: np.ndarray, b: np.ndarray, n: int):
    """Ranges after the first n records."""
    ends = np.cumsum(b - a)
    k = int(np.searchsorted(ends, n, side="right"))
    a, b = a[k:].copy(), b[k:].copy()
    if len(a):
        a[0] = b[0] - (ends[k] - n)
    return a, b
