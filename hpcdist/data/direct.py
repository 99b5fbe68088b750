"""DirectBatches: each row read once, by os.preadv, straight into its slot of a batch."""

from __future__ import annotations

import collections
import sys
import threading
import time
from operator import itemgetter

import numpy as np

from ..errors import CancelledError, DataError, OutOfRangeError
from .queues import rng_state_words, set_rng_state_words
from .rawh5 import _PREADV, preadv_full, preadv_rows

SIM_TAKES = 32  # takes simulated between two publications
AHEAD = 1024  # batches being filled at most (slots of the row table)


class BatchPool:
    """Batch arrays handed out, reused only once nothing but the pool refers to them.

    Fresh pages cost page faults (as much as the copy itself here), so the
    arrays of batches the consumer has dropped are filled again; an array
    still referenced anywhere (a variable, a list, a view or memoryview of
    it) is never reused, so a batch stays valid for as long as it is kept.
    Each array comes with byte memoryviews of its rows (made once).
    """

    def __init__(self, keep: int = 1024):
        self.keep, self.handed, self.free = keep, collections.deque(), []
        probe = collections.deque([self._new((1, 1), np.dtype("u1"))])
        self.alone = sys.getrefcount(probe[0][0])  # an array only the pool holds

    @staticmethod
    def _new(shape, dtype) -> tuple:
        a = np.empty(shape, dtype)
        if _PREADV is not None:  # rows are read by address: no per-row objects needed
            return a, None
        flat, rb = memoryview(a).cast("B"), a[:1].nbytes
        return a, [flat[o : o + rb] for o in range(0, a.nbytes, rb)] if rb else []

    def get(self, shape: tuple, dtype) -> tuple:
        """(array of this shape and dtype, its rows as byte memoryviews), reused where free."""
        if not self.free:
            self._collect()
        for i in range(len(self.free) - 1, -1, -1):
            a = self.free[i][0]
            if a.shape == shape and a.dtype == dtype:
                return self.free.pop(i)
        return self._new(shape, dtype)

    def handed_out(self, entry: tuple) -> None:
        self.handed.append(entry)
        if len(self.handed) > self.keep:
            self.handed.popleft()

    def _collect(self) -> None:
        kept = collections.deque()
        while self.handed:
            if sys.getrefcount(self.handed[0][0]) <= self.alone:
                self.free.append(self.handed.popleft())
            else:
                kept.append(self.handed.popleft())
        self.handed = kept


class DirectBatches:
    """The shuffle ring's batches (`ring.ShuffleRing.take`), with one copy per row.

    The pick-from-oldest shuffle depends only on the record order and the
    seed, so `simulate` plays it on stream positions alone, with the ring's
    exact RNG calls, and records where each record lands (take t, slot j).
    Readers take blocks (runs of one file's rows, `starts`/`lens` in stream
    order) in turn; a block is read once every record of it is placed and it
    ends within `budget` rows of the consumer's window, by one os.preadv per
    chunk segment whose buffers are the rows' slots in fresh batch arrays.
    take() hands out take t once all its rows have arrived.

    The consumer's wait ends after `stall_timeout` seconds with a DataError
    naming what was awaited; reader waits end on `close`.
    """

    def __init__(
        self, source, plan, layouts, blocks, window, batch, budget, sim, stall, name, pool
    ):
        starts, lens, n0 = blocks  # n0: records restored into the window come first
        self.source, self.layouts, self.name = source, layouts, name
        self.window, self.batch, self.room = int(window), int(batch), int(budget) - window - batch
        self.starts, self.stall_timeout = starts, stall
        self.P = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        self.M, self.nblocks = int(self.P[-1]), len(starts)
        self.files, self.rows = plan.locate(starts)
        self.T = -(-self.M // batch)
        self.take_of = np.full(self.M, np.iinfo(np.int64).max, np.int64)
        self.slot_of = np.zeros(self.M, np.int64)
        self.remaining = np.asarray(lens, np.int64).copy()
        self.filled = np.zeros(self.T + 1, np.int64)
        self.ylab = np.empty(self.M, source.label_dtype)
        self.shape, self.xdtype = tuple(source.feature_shape), np.dtype(source.feature_dtype)
        self.picks: list[np.ndarray] = []
        self.tops: list[int] = []
        self.wins: list[int] = []  # window size per take (to replay the RNG)
        self.out: dict[int, np.ndarray] = {}
        # Where each row of take t goes, at (t % AHEAD) * batch + slot: byte addresses (or,
        # without libc's preadv, memoryviews of the rows).
        self.table: list = [None] * (AHEAD * self.batch) if _PREADV is None else []
        self.addr = np.zeros(AHEAD * self.batch if _PREADV is not None else 0, np.uint64)
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.xdtype.itemsize
        self.sim, self.ahead = sim, None  # ahead: the next epoch's ShuffleSim, played when idle
        self.n0 = int(n0)
        self.consumed = self.next_block = 0
        self.sim_done = self.finished = self.cancelled = False
        self.stats, self.pool = None, pool
        self.cond = threading.Condition(threading.Lock())
        self.turn = threading.Lock()

    def functions(self, num_threads: int, stats) -> list:
        """The simulation and `num_threads` readers, for a QueueRunner."""
        self.stats = stats
        return [self.simulate] + [self.read_block] * num_threads

    # --- the shuffle, on positions ----------------------------------------
    def simulate(self) -> None:
        """Publish the next SIM_TAKES takes; OutOfRangeError once every record is placed."""
        if self.sim_done:
            if self.ahead is None or self.ahead.done:
                raise OutOfRangeError("shuffle simulated")
            self.ahead.results.extend(self.ahead.advance(16, gentle=True))  # the next epoch's
            return
        sim = self.sim
        if sim.results:  # played ahead during the last epoch
            new, sim.results = sim.results, []
        else:
            new = sim.advance(SIM_TAKES)
        if new:
            got = np.concatenate([g for g, _, _ in new])
            blk = np.bincount(np.searchsorted(self.P, got, "right") - 1, minlength=self.nblocks)
            at = np.repeat(
                np.arange(len(self.picks), len(self.picks) + len(new)), [len(g) for g, _, _ in new]
            )
            slots = np.concatenate([np.arange(len(g)) for g, _, _ in new])
        with self.cond:
            if new:
                self.take_of[got], self.slot_of[got] = at, slots
                self.remaining -= blk
            for g, top, win in new:
                self.picks.append(g)
                self.tops.append(top)
                self.wins.append(win)
            self.sim_done = sim.done and not sim.results
            self.cond.notify_all()

    # --- readers ----------------------------------------------------------
    def read_block(self) -> None:
        """Read the next block straight into its batches' slots."""
        with self.turn:
            k, self.next_block = self.next_block, self.next_block + 1
        if k >= self.nblocks:
            raise OutOfRangeError("no more blocks")
        p0, p1 = int(self.P[k]), int(self.P[k + 1])
        with self.cond:
            while not (self.remaining[k] == 0 and self._fits(p1, k)):
                if self.cancelled:
                    raise CancelledError(f"{self.name}: stopped while block {k} waited")
                self.cond.wait()
            takes, slots = self.take_of[p0:p1], self.slot_of[p0:p1]
            for t in np.unique(takes).tolist():
                if t not in self.out:
                    self.out[t] = self.pool.get((len(self.picks[t]), *self.shape), self.xdtype)
                    self._place(t)
            idx = (takes % AHEAD) * self.batch + slots
            if _PREADV is not None:
                bufs = self.addr[idx]
            else:
                idx = idx.tolist()
                bufs = (
                    [self.table[i] for i in idx] if len(idx) < 2 else itemgetter(*idx)(self.table)
                )
        self._read(k, p0, p1, bufs, slots, takes)
        with self.cond:
            self.filled += np.bincount(takes, minlength=len(self.filled))
            self.stats.records_read += p1 - p0
            self.cond.notify_all()

    def _place(self, t: int) -> None:
        """Enter the destinations of take t's rows in the table."""
        a, views = self.out[t]
        at = (t % AHEAD) * self.batch
        if _PREADV is not None:
            rows = np.arange(len(a), dtype=np.uint64) * np.uint64(self.row_bytes)
            self.addr[at : at + len(a)] = np.uint64(a.ctypes.data) + rows
        else:
            self.table[at : at + len(views)] = views

    def _fits(self, p1: int, k: int) -> bool:
        c = self.consumed
        if c + AHEAD <= self.take_of[self.P[k] : p1].max(initial=0):
            return False
        return c >= self.T or (c < len(self.tops) and p1 <= self.tops[c] + self.room)

    def _read(self, k, p0, p1, bufs, slots, takes) -> None:
        f, lo = int(self.files[k]), int(self.rows[k])
        rx, ry = self.layouts[f]
        hi = lo + p1 - p0
        segs = rx.segments(lo, hi)
        try:
            if segs is None or not ry.read_into(lo, hi, self.ylab[p0:p1]):
                x, self.ylab[p0:p1] = self.source.read(f, lo, hi)  # chunks HDF5 never wrote
                for i, (t, j) in enumerate(zip(takes.tolist(), slots.tolist(), strict=True)):
                    self.out[t][0][j] = x[i]
                return
            for r0, r1, at in segs:
                if _PREADV is not None:
                    preadv_rows(rx.fd, bufs[r0 - lo : r1 - lo], rx.row_bytes, at)
                else:
                    preadv_full(rx.fd, bufs[r0 - lo : r1 - lo], at)
        except OSError as ex:
            raise DataError(
                f"{self.source.paths[f]}: reading records {lo}..{hi} failed ({ex}) [{self.name}]"
            ) from ex

    def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Readers are done, or, with cancel, everything stops."""
        with self.cond:
            self.finished = True
            self.cancelled = self.cancelled or cancel_pending_enqueues
            self.cond.notify_all()

    # --- consumer ---------------------------------------------------------
    def take(self, n: int):
        """The next batch, (features, labels); None when none is left."""
        deadline = time.monotonic() + self.stall_timeout
        with self.cond:
            c = self.consumed
            while not self.cancelled and not self._ready(c):
                if self.finished or (self.sim_done and c >= len(self.picks)):
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DataError(self._stall_message(c))
                self.cond.wait(left)
            if self.cancelled:
                raise CancelledError(f"{self.name}: stopped")
            entry, pos = self.out.pop(c, None), self.picks[c]
            if entry is not None:
                self.pool.handed_out(entry)
            self.consumed += 1
            self.cond.notify_all()
        if entry is None:  # a take with no rows cannot happen: takes pick at least one
            raise DataError(f"{self.name}: take {c} has no rows")
        return entry[0], self.ylab[pos]

    def _ready(self, c: int) -> bool:
        return c < len(self.picks) and self.filled[c] == len(self.picks[c])

    def _stall_message(self, c: int) -> str:
        have = int(self.filled[c]) if c < len(self.filled) else 0
        need = len(self.picks[c]) if c < len(self.picks) else "?"
        return (
            f"{self.name}: no batch for {self.stall_timeout:g} s: batch {c} has {have} of "
            f"{need} rows; shuffle simulated for {len(self.picks)} batches; blocks handed to "
            f"readers {min(self.next_block, self.nblocks)} of {self.nblocks}; readers "
            f"{'done' if self.finished else 'running'}"
        )

    # --- checkpoint support ---------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(global ids left in the window after the last take, oldest first; RNG words)."""
        with self.cond:
            c = self.consumed
            if c == 0:
                pos = np.arange(self.n0)
            else:
                top = self.tops[c - 1]
                pos = np.flatnonzero(self.take_of[:top] >= c)
            k = np.searchsorted(self.P, pos, "right") - 1
            wins = self.wins[:c]
        rng = np.random.Generator(np.random.PCG64())
        set_rng_state_words(rng, self.sim.words0)
        for w in wins:  # replay the takes' RNG calls: the state after take c - 1
            rng.choice(w, size=min(self.batch, w), replace=False)
        return self.starts[k] + (pos - self.P[k]), rng_state_words(rng)
