"""The ring read path: reader threads read ranges into a ShuffleRing; batches are gathered out.

Two copies per row (source -> ring -> batch), but any RecordSource works:
ArraySource, filtered or compressed HDF5, anything with `read_into`.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import OutOfRangeError
from .plan import id_runs
from .producer import EpochWork, Producer, ReadPath
from .ring import ShuffleRing


class FedRing(Producer):
    """A ShuffleRing and the feeder whose thread bodies fill it: one epoch's Producer."""

    def __init__(self, ring: ShuffleRing, feeder):
        self.ring, self.feeder, self.name = ring, feeder, ring.name

    def functions(self) -> list:
        return self.feeder.functions()

    def take(self, n: int):
        return self.ring.take(n)

    def close(self, cancel_pending_enqueues: bool = False) -> None:
        self.ring.close(cancel_pending_enqueues)

    def snapshot(self):
        return self.ring.snapshot()


class RingFeeder:
    """Reads this rank's ranges in threads straight into the shuffle ring, in plan order."""

    def __init__(self, source, plan, ring: ShuffleRing, work: EpochWork):
        self.source, self.plan, self.ring = source, plan, ring
        self.a, self.b, self.stats = work.starts, work.stops, work.stats
        self.num_threads = work.num_threads
        self.lock = threading.Lock()
        self.blocks = iter(range(len(self.a)))

    def functions(self) -> list:
        return [self._piece] * self.num_threads

    def _piece(self) -> None:
        with self.lock:
            i = next(self.blocks, None)
        if i is None:
            raise OutOfRangeError("no more ranges for this reader")
        a, b = int(self.a[i]), int(self.b[i])
        f, row = self.plan.locate(np.array([a]))
        f, lo = int(f[0]), int(row[0])
        for s0, s1 in self.ring.reserve(i, b - a):
            self.source.read_into(f, lo, lo + s1 - s0, self.ring.x[s0:s1], self.ring.y[s0:s1])
            lo += s1 - s0
        self.ring.commit(i, a)
        with self.lock:
            self.stats.records_read += b - a


class RingPath(ReadPath):
    """ShuffleRing fed by reader threads; the ring's memory is reused from epoch to epoch."""

    def __init__(self, source, plan, rank, shuffle_rng):
        super().__init__(source, plan, rank, shuffle_rng)
        self.last: ShuffleRing | None = None

    def new_ring(self, work: EpochWork) -> ShuffleRing:
        """This epoch's ring (the last one's memory: fresh pages cost page faults), restored."""
        src = self.source
        ring = ShuffleRing(
            window=work.window,
            batch=work.batch,
            budget=work.budget,
            shape=tuple(src.feature_shape),
            dtypes=(np.dtype(src.feature_dtype), np.dtype(src.label_dtype)),
            rng=self.shuffle_rng(work.epoch),
            stall_timeout=work.stall_timeout,
            name=f"shuffle[rank {self.rank}]",
            old=self.last,
        )
        self.last = ring
        if work.rng_words is not None:
            ring.restore(
                *read_ids(self.source, self.plan, work.restored), work.restored, work.rng_words
            )
        return ring

    def producer(self, work: EpochWork) -> Producer:
        ring = self.new_ring(work)
        return FedRing(ring, RingFeeder(self.source, self.plan, ring, work))


def read_ids(source, plan, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of global ids (in the order given), read in contiguous runs."""
    x = np.empty((len(ids), *source.feature_shape), source.feature_dtype)
    y = np.empty(len(ids), source.label_dtype)
    order = np.argsort(ids, kind="stable")
    starts, lens = id_runs(ids[order], plan)
    files, rows = plan.locate(starts)
    at = 0
    for f, r, m in zip(files.tolist(), rows.tolist(), lens.tolist(), strict=True):
        x[order[at : at + m]], y[order[at : at + m]] = source.read(f, r, r + m)
        at += m
    return x, y
