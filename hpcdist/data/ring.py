"""ShuffleRing: the pipeline's shuffle buffer; blocks are read into a ring, batches gathered out."""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import CancelledError, DataError
from ..rng import set_state_words
from .shuffle import PickFromOldest

FREE, LIVE, PENDING = 0, 1, 2


class ShuffleRing:
    """A seeded shuffle buffer whose rows are written once and read once.

    Producers reserve block i (strictly in plan order, i = 0, 1, ...), read
    the block's rows straight into the returned ring segments, and commit it;
    committed blocks become visible in plan order. `take(n)` applies the
    `shuffle.PickFromOldest` rule to the visible rows (waiting for `window +
    n` of them until the producers are done) and gathers the picked rows
    with one fancy index. The output is therefore a function of `rng` and
    the plan order only, never of thread timing.

    At most `budget` rows are visible or being read. The ring holds
    `budget + 2 (window + batch)` rows: rows picked out leave holes; when the
    head needs room, holes at the tail are reclaimed and the few rows still
    alive there are moved to the head (their logical order is kept).

    Consumer waits end after `stall_timeout` seconds without a batch with a
    DataError naming what was awaited; producer waits end on `close`.
    """

    def __init__(
        self,
        *,
        window: int,
        batch: int,
        budget: int,
        shape: tuple,
        dtypes: tuple,
        rng: np.random.Generator,
        stall_timeout: float,
        name: str,
        old: ShuffleRing | None = None,
    ):
        self.window, self.batch, self.budget = int(window), int(batch), int(budget)
        self.capacity = self.budget + 2 * (self.window + self.batch)
        self.stall_timeout, self.name = stall_timeout, name
        self._alloc(shape, dtypes, old)
        self.order = np.zeros(
            self.budget, np.int64
        )  # physical rows of visible records, oldest first
        self.count = 0
        self.head = self.tail = 0  # ring counters: rows [tail, head) are in use or holes
        self.pending: dict[int, np.ndarray] = {}
        self.done: set[int] = set()
        self.pending_rows = 0
        self.next_reserve = self.next_publish = 0
        self.finished = self.cancelled = False
        self.after_last = 0
        self.moved = 0  # rows moved to the head (reclaim cost)
        self.rule = PickFromOldest(self.window, rng)
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        self.room = threading.Condition(lock)  # woken only when room_need fits
        self.room_need = 0  # rows the turn holder waits room for (one waiter: the turn)

    def _alloc(self, shape, dtypes, old) -> None:
        xd, yd = dtypes
        c = self.capacity
        if (
            old is not None
            and old.x.shape == (c, *shape)
            and old.x.dtype == xd
            and old.y.dtype == yd
        ):
            self.x, self.y, self.ids, self.status = old.x, old.y, old.ids, old.status
            self.status[:] = FREE  # memory reused: fresh pages cost page faults
        else:
            self.x = np.empty((c, *shape), xd)
            self.y = np.empty(c, yd)
            self.ids = np.empty(c, np.int64)
            self.status = np.zeros(c, np.uint8)
        self.remap = np.arange(c, dtype=np.int64)
        width = self.x.itemsize * int(np.prod(shape, dtype=np.int64))
        self.xrows = (
            self.x.reshape(c, -1).view(np.dtype((np.void, width))).reshape(c) if width else self.x
        )

    # --- producers ------------------------------------------------------
    def reserve(self, i: int, m: int) -> list[tuple[int, int]]:
        """Wait for block i's turn and room for m rows; returns its ring segments [a, b)."""
        if m > self.budget - self.window - self.batch:
            raise ValueError(f"{self.name}: a block of {m} rows exceeds the prefetch room")
        with self.cond:
            self._wait_producer(lambda: self.next_reserve == i, f"the turn of block {i}")
            self.room_need = m
            try:
                self._wait_producer(self._fits, "room", cond=self.room)
            finally:
                self.room_need = 0
            while self.capacity - (self.head - self.tail) < m:
                if not self._reclaim(m):
                    self._wait_producer(lambda: False, "tail rows", poll=0.05)
            start = self.head % self.capacity
            rows = (self.head + np.arange(m)) % self.capacity
            self.status[rows] = PENDING
            self.head += m
            self.pending[i], self.pending_rows = rows, self.pending_rows + m
            self.next_reserve += 1
            self.cond.notify_all()
        first = min(m, self.capacity - start)
        return [(start, start + first)] + ([(0, m - first)] if first < m else [])

    def commit(self, i: int, first_id: int) -> None:
        """Block i's rows are written (global ids first_id, first_id+1, ...): publish in order."""
        with self.cond:
            rows = self.pending[i]
            self.ids[rows] = np.arange(first_id, first_id + len(rows))
            self.done.add(i)
            while self.next_publish in self.done:
                self.done.discard(self.next_publish)
                rows = self.pending.pop(self.next_publish)
                self.order[self.count : self.count + len(rows)] = rows
                self.status[rows] = LIVE
                self.count += len(rows)
                self.pending_rows -= len(rows)
                self.next_publish += 1
            self.cond.notify_all()

    def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Producers are done (the rest may be taken), or, with cancel, everything stops."""
        with self.cond:
            self.finished = True
            self.cancelled = self.cancelled or cancel_pending_enqueues
            self.cond.notify_all()
            self.room.notify_all()

    def _fits(self) -> bool:
        return self.count + self.pending_rows + self.room_need <= self.budget

    def _wait_producer(self, ready, what: str, poll: float | None = None, cond=None) -> None:
        while not ready():
            if self.cancelled:
                raise CancelledError(f"{self.name}: stopped while waiting for {what}")
            (cond or self.cond).wait(poll)
            if poll is not None:
                return

    def _reclaim(self, m: int) -> bool:
        """Free rows at the tail, moving live ones to the head; False if none could be freed."""
        need = max(2 * m, self.capacity // 4) - (self.capacity - (self.head - self.tail))
        used, look = self.head - self.tail, need + need // 4 + 256  # the tail is mostly holes
        while True:  # look further while live rows fill the tail (holes exist: room was checked)
            look = min(used, look)
            span = (self.tail + np.arange(look)) % self.capacity
            st = self.status[span]
            stuck = np.flatnonzero(st == PENDING)
            span = span[: stuck[0]] if len(stuck) else span
            holes = np.cumsum(st[: len(span)] == FREE)
            if len(stuck) or look == used or (len(holes) and holes[-1] >= need):
                break
            look *= 2
        k = min(len(span), int(np.searchsorted(holes, need)) + 1) if len(holes) else 0
        if k == 0 or holes[k - 1] == 0:
            return False
        chunk = span[:k]
        live = chunk[self.status[chunk] == LIVE]
        dest = (self.head + np.arange(len(live))) % self.capacity
        self.x[dest], self.y[dest], self.ids[dest] = self.x[live], self.y[live], self.ids[live]
        self.status[chunk] = FREE
        self.status[dest] = LIVE
        self.remap[live] = dest
        self.order[: self.count] = self.remap[self.order[: self.count]]
        self.remap[live] = live
        self.tail += k
        self.head += len(live)
        self.moved += len(live)
        return True

    # --- consumer -------------------------------------------------------
    def take(self, n: int):
        """n shuffled rows (fewer only at the end): (features, labels); None when none are left."""
        deadline = time.monotonic() + self.stall_timeout
        with self.cond:
            while not self.cancelled and self.count < n + self.window:
                if self.finished and not self.pending and self.next_publish == self.next_reserve:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DataError(self._stall_message(n))
                self.cond.wait(left)
            if self.cancelled:
                raise CancelledError(f"{self.name}: stopped")
            phys, span, self.count = self.rule.take(self.order, self.count, n)
            n = len(phys)
            if n == 0:
                return None
            self.after_last = span - n
            x = np.take(self.xrows, phys).view(self.x.dtype).reshape(n, *self.x.shape[1:])
            self.status[phys] = FREE  # gathered under the lock: no reader can overwrite them
            if self.room_need and self._fits():
                self.room.notify()
            return x, np.take(self.y, phys)

    def _stall_message(self, n: int) -> str:
        return (
            f"{self.name}: no batch for {self.stall_timeout:g} s: waited for {n + self.window} "
            f"buffered records, have {self.count}; blocks reserved {self.next_reserve}, "
            f"published {self.next_publish}, being read {sorted(self.pending)}; readers "
            f"{'done' if self.finished else 'running'}"
        )

    # --- checkpoint support ----------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(global ids left in the window after the last take, oldest first; RNG words)."""
        with self.cond:
            return self.ids[self.order[: self.after_last]].copy(), self.rule.words()

    def restore(self, x, y, ids, rng_words) -> None:
        """Fill an empty ring with records (oldest first) and set the RNG."""
        with self.cond:
            k = len(ids)
            if self.count or self.head or k > self.budget:
                raise ValueError(f"{self.name}.restore needs an empty ring with room for {k}")
            self.x[:k], self.y[:k], self.ids[:k] = x, y, ids
            self.status[:k] = LIVE
            self.order[:k] = np.arange(k)
            self.count = self.after_last = self.head = k
            set_state_words(self.rule.rng, rng_words)
