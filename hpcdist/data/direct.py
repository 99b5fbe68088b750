"""DirectBatches: each row read once, by os.preadv, straight into its slot of a batch."""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import CancelledError, DataError, OutOfRangeError
from ..rng import set_state_words
from .batchpool import BatchPool, RowTable
from .plan import id_runs
from .producer import EpochWork, Producer, ReadPath
from .shuffle import PickFromOldest
from .shufflesim import ShuffleSim, SimAhead

SIM_TAKES = 32  # takes simulated between two publications
AHEAD = 1024  # batches being filled at most (slots of the row table)


class DirectBatches(Producer):
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
        self,
        *,
        source,
        plan,
        layouts: dict,
        starts: np.ndarray,
        lens: np.ndarray,
        restored: int,
        window: int,
        batch: int,
        budget: int,
        sim: ShuffleSim,
        stall_timeout: float,
        name: str,
        pool: BatchPool,
        num_threads: int = 1,
        stats=None,
    ):
        self.source, self.layouts, self.name, self.pool = source, layouts, name, pool
        self.window, self.batch, self.room = int(window), int(batch), int(budget) - window - batch
        self.starts, self.stall_timeout = starts, stall_timeout
        self.num_threads, self.stats = num_threads, stats
        self.P = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        self.M, self.nblocks = int(self.P[-1]), len(starts)
        self.files, self.rows = plan.locate(starts)
        self.T = -(-self.M // batch)
        self.remaining = np.asarray(lens, np.int64).copy()
        self.ylab = np.empty(self.M, source.label_dtype)
        self.shape, self.xdtype = tuple(source.feature_shape), np.dtype(source.feature_dtype)
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.xdtype.itemsize
        self.sim, self.ahead = sim, None  # ahead: the next epoch's ShuffleSim, played when idle
        self.n0 = int(restored)  # records restored into the window come first
        self.consumed = self.next_block = 0
        self.sim_done = self.finished = self.cancelled = False
        self.cond = threading.Condition(threading.Lock())
        self.turn = threading.Lock()
        self._tables()

    def _tables(self) -> None:
        """Where each record lands (take, slot), what each take picked, and the row table."""
        self.take_of = np.full(self.M, np.iinfo(np.int64).max, np.int64)
        self.slot_of = np.zeros(self.M, np.int64)
        self.filled = np.zeros(self.T + 1, np.int64)
        self.picks: list[np.ndarray] = []
        self.tops: list[int] = []
        self.wins: list[int] = []  # window size per take (to replay the RNG)
        self.out: dict[int, tuple] = {}
        self.table = RowTable(AHEAD * self.batch, self.row_bytes)  # take t's rows at t % AHEAD

    def functions(self) -> list:
        """The simulation and `num_threads` readers, for a QueueRunner."""
        return [self.simulate] + [self.read_block] * self.num_threads

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
                    self.table.place((t % AHEAD) * self.batch, self.out[t])
            bufs = self.table.destinations((takes % AHEAD) * self.batch + slots)
        self._read(k, p0, p1, bufs, slots, takes)
        with self.cond:
            self.filled += np.bincount(takes, minlength=len(self.filled))
            self.stats.records_read += p1 - p0
            self.cond.notify_all()

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
                self.table.read(rx.fd, bufs[r0 - lo : r1 - lo], rx.row_bytes, at)
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
                # hold the array before the pool may see it: once the lock is released a
                # reader's BatchPool.get counts its references, and an array held by the
                # pool's entry alone would be filled again while we hand it out
                x = entry[0]
                self.pool.handed_out(entry)
            self.consumed += 1
            self.cond.notify_all()
        if entry is None:  # a take with no rows cannot happen: takes pick at least one
            raise DataError(f"{self.name}: take {c} has no rows")
        return x, self.ylab[pos]

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
        words = PickFromOldest.replay(self.sim.words0, wins, self.batch)  # after take c - 1
        return self.starts[k] + (pos - self.P[k]), words


class DirectPath(ReadPath):
    """One copy per row, for sources whose every file of the epoch os.preadv can read.

    Keeps, across epochs, the files' raw layouts, the pool of batch arrays,
    and the next epoch's shuffle played ahead (`SimAhead`).
    """

    def __init__(self, source, plan, rank, shuffle_rng):
        super().__init__(source, plan, rank, shuffle_rng)
        self.layouts: dict = {}
        self.pool = BatchPool()
        self.ahead: SimAhead | None = None

    def readable(self, files) -> bool:
        """Whether every file in `files` can be read by os.preadv (layouts worked out once)."""
        if not hasattr(self.source, "raw_layout"):
            return False
        for f in files:
            if f not in self.layouts:
                self.layouts[f] = self.source.raw_layout(f)
            if self.layouts[f] is None:
                return False
        return True

    def records(self, epoch: int) -> int:
        """Records this rank reads in `epoch`."""
        a, b = self.plan.rank_ranges(epoch, self.rank)
        return int((b - a).sum())

    def producer(self, work: EpochWork) -> DirectBatches | None:
        runs = id_runs(work.restored, self.plan)  # the restored window is read first
        starts = np.concatenate([runs[0], work.starts])
        lens = np.concatenate([runs[1], work.stops - work.starts])
        if not self.readable(np.unique(self.plan.locate(starts)[0]).tolist()):
            return None
        if self.ahead is None:
            self.ahead = SimAhead(work.window, work.batch, self.records, self.shuffle_rng)
        sim = self.ahead.take(work.epoch) if work.rng_words is None else None
        if sim is None:
            rng = self.shuffle_rng(work.epoch)
            if work.rng_words is not None:
                set_state_words(rng, work.rng_words)
            sim = ShuffleSim(int(lens.sum()), work.window, work.batch, rng)
        batches = DirectBatches(
            source=self.source,
            plan=self.plan,
            layouts=self.layouts,
            starts=starts,
            lens=lens,
            restored=len(work.restored),
            window=work.window,
            batch=work.batch,
            budget=work.budget,
            sim=sim,
            stall_timeout=work.stall_timeout,
            name=f"direct[rank {self.rank}]",
            pool=self.pool,
            num_threads=work.num_threads,
            stats=work.stats,
        )
        batches.ahead = self.ahead.make(work.epoch + 1)
        return batches
