"""Thread-safe queues with TensorFlow 1 semantics, storing records in numpy blocks."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..errors import CancelledError, DeadlineExceededError, OutOfRangeError
from ..rng import set_state_words
from .elements import Components
from .shuffle import PickFromOldest
from .stores import ArrayStore, ListStore, SlotStore


class QueueBase:
    """Shared machinery: validation, blocking with deadlines, close and cancel.

    A queue of k components takes a tuple of k values (when k == 1, a bare
    value or, as in TF1, a list or tuple of one) and returns a tuple of k
    numpy arrays (a bare array when k == 1).
    `timeout` (seconds) is the default deadline of every blocking call, like
    TF1's `operation_timeout_in_ms`; a call's own `timeout` overrides it.
    Components of dtype str or bytes are stored whole, as Python objects
    (`elements.Components`).
    """

    def __init__(
        self, capacity: int, dtypes, shapes=None, *, timeout: float | None = None, name=None
    ):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.name = name or type(self).__name__
        self._elements = Components(dtypes, shapes, self.name)
        self._dtypes, self._shapes = self._elements.dtypes, self._elements.shapes
        self._capacity = int(capacity)
        self._timeout = timeout
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._room_cond = threading.Condition(lock)  # wait_until_free, woken only when it fits
        self._room_waiters = 0
        self._closed = False
        self._cancelled = False
        self._enqueuers: deque = deque()
        self._store = self._make_store()

    def _make_store(self):
        if self._shapes is not None and all(None not in s for s in self._shapes):
            return ArrayStore(self._capacity, self._dtypes, self._shapes)
        return ListStore(self._dtypes)

    # --- public API -----------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def dtypes(self) -> list:
        return list(self._dtypes)

    @property
    def shapes(self):
        return None if self._shapes is None else list(self._shapes)

    def size(self) -> int:
        """Elements in the queue now."""
        with self._cond:
            return self._store.count

    def is_closed(self) -> bool:
        with self._cond:
            return self._closed

    def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Refuse new enqueues; pending ones complete unless cancelled."""
        with self._cond:
            self._closed = True
            self._cancelled = self._cancelled or cancel_pending_enqueues
            self._cond.notify_all()
            self._room_cond.notify_all()

    def enqueue(self, values, timeout: float | None = None) -> None:
        """Add one element; blocks while the queue is full."""
        cols = self._check(values, many=False)
        self._put([c[None] for c in cols], timeout, "enqueue")

    def enqueue_many(self, values, timeout: float | None = None) -> None:
        """Add a batch (leading axis) element by element; blocks while full."""
        self._put(self._check(values, many=True), timeout, "enqueue_many")

    def dequeue(self, timeout: float | None = None):
        """Take one element; blocks while empty."""
        out = self._take(1, False, timeout, "dequeue")
        return self._bare(tuple(c[0, ...] for c in out))

    def dequeue_many(self, n: int, timeout: float | None = None):
        """Take exactly n elements; OutOfRangeError if closed with fewer left."""
        return self._bare(self._take(self._check_n(n), False, timeout, "dequeue_many"))

    def dequeue_up_to(self, n: int, timeout: float | None = None):
        """Like dequeue_many, but a closed queue hands over the k < n left."""
        return self._bare(self._take(self._check_n(n), True, timeout, "dequeue_up_to"))

    def wait_until_free(self, n: int, timeout: float | None = None) -> None:
        """Block until n elements fit (or the queue is closed); not in TF.

        A producer that waits here and then enqueues a whole block is woken
        once, instead of at every dequeue that frees a little room.
        """
        n = min(self._check_n(n), self._capacity)
        deadline = self._deadline(timeout)
        with self._cond:
            self._room_waiters += 1
            try:
                while not self._closed and self._capacity - self._store.count < n:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise DeadlineExceededError(f"{self.name}.wait_until_free timed out")
                    self._room_cond.wait(left)
            finally:
                self._room_waiters -= 1

    # --- validation -----------------------------------------------------
    def _check_n(self, n) -> int:
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        return int(n)

    def _bare(self, out: tuple):
        return out[0] if len(self._dtypes) == 1 else out

    def _check(self, values, many: bool) -> list:
        return self._elements.check(values, many)

    # --- blocking core --------------------------------------------------
    def _deadline(self, timeout):
        t = self._timeout if timeout is None else timeout
        return None if t is None else time.monotonic() + t

    def _wait(self, ready, deadline, what: str, why=None) -> None:
        """Wait until ready(); past the deadline raise, adding `why()` to the message if given."""
        while not ready():
            if deadline is None:
                self._cond.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(
                    f"{self.name}.{what} timed out (size {self._store.count}, "
                    f"capacity {self._capacity}){why() if why else ''}"
                )
            self._cond.wait(left)

    def _put(self, cols: list, timeout, what: str) -> None:
        m, deadline = len(cols[0]), self._deadline(timeout)
        with self._cond:
            if self._closed:
                raise CancelledError(f"{self.name}.{what}: the queue is closed")
            me = object()
            self._enqueuers.append(me)
            try:
                done = 0
                while done < m:
                    self._wait(lambda: self._cancelled or self._room(me), deadline, what)
                    if self._cancelled:
                        raise CancelledError(f"{self.name}.{what}: cancelled by close()")
                    k = min(m - done, self._capacity - self._store.count)
                    self._store.append(cols, done, done + k)
                    done += k
                    self._cond.notify_all()
            finally:
                self._enqueuers.remove(me)
                self._cond.notify_all()

    def _room(self, me) -> bool:
        return self._enqueuers[0] is me and self._store.count < self._capacity

    def _reserve(self) -> int:
        """Elements that must stay behind after an open-queue dequeue."""
        return 0

    def _blocked(self, n: int) -> str:
        """Why a dequeue of n still waits, for a timeout's message ("" when plain emptiness)."""
        return ""

    def _take(self, n: int, up_to: bool, timeout, what: str) -> tuple:
        deadline = self._deadline(timeout)
        with self._cond:
            self._wait(
                lambda: self._closed or self._store.count >= n + self._reserve(),
                deadline,
                what,
                why=lambda: self._blocked(n),
            )
            count = self._store.count
            if count < n:  # closed
                if not up_to or count == 0:
                    raise OutOfRangeError(
                        f"{self.name}.{what}({n}): the queue is closed and holds {count}"
                    )
                n = count
            out = self._remove(n)
            self._cond.notify_all()
            if (
                self._room_waiters
            ):  # each waiter re-checks its own n (one shared slot lost wake-ups)
                self._room_cond.notify_all()
            return out

    def _remove(self, n: int) -> tuple:
        return self._store.take_front(n)


class FIFOQueue(QueueBase):
    """First in, first out. `FIFOQueue(capacity, dtypes, shapes=None)`."""


class RandomShuffleQueue(QueueBase):
    """Dequeues a random element, keeping `min_after_dequeue` behind while open.

    Seeded queues are reproducible: the same enqueues and dequeues in the same
    order give the same elements. After close, min_after_dequeue is ignored.

    `pick_from_oldest=True` (not in TF) makes a dequeue of n pick among the
    oldest min_after_dequeue + n elements only, and keeps the rest in arrival
    order, so producers may run ahead (capacity beyond that window) without
    changing what comes out: the output depends only on the enqueue order.
    """

    def __init__(
        self,
        capacity,
        min_after_dequeue,
        dtypes,
        shapes=None,
        *,
        seed=None,
        timeout=None,
        name=None,
        pick_from_oldest: bool = False,
    ):
        if min_after_dequeue < 0 or min_after_dequeue >= capacity:
            raise ValueError(
                f"min_after_dequeue must be in [0, capacity={capacity}), got {min_after_dequeue}"
            )
        super().__init__(capacity, dtypes, shapes, timeout=timeout, name=name)
        self.min_after_dequeue = int(min_after_dequeue)
        self.pick_from_oldest = pick_from_oldest
        if isinstance(self._store, ArrayStore):
            self._store = SlotStore(self._capacity, self._dtypes, self._shapes)
        window = self.min_after_dequeue if pick_from_oldest else None  # None: all
        self._shuffle = PickFromOldest(window, np.random.Generator(np.random.PCG64(seed)))
        self._after_last_dequeue = 0

    def _reserve(self) -> int:
        return 0 if self._closed else self.min_after_dequeue

    def _blocked(self, n: int) -> str:
        if self._closed or self._store.count < n:
            return ""
        return (
            f": min_after_dequeue={self.min_after_dequeue} keeps that many behind while the "
            f"queue is open, so a dequeue of {n} needs {n + self.min_after_dequeue} elements "
            f"and the queue holds {self._store.count}"
        )

    def _remove(self, n: int) -> tuple:
        count = self._store.count
        pick = self._shuffle.choose(count, n)
        out = self._store.take_at(pick, keep_order=self.pick_from_oldest)
        self._after_last_dequeue = self._shuffle.span(count, n) - n
        return out

    # --- checkpoint support ----------------------------------------------
    def snapshot(self, component: int) -> tuple[np.ndarray, np.ndarray]:
        """(values of `component` right after the last dequeue, RNG state words).

        With pick_from_oldest, elements enqueued after the last dequeue's
        window are left out: they are the producers' run-ahead.
        """
        with self._cond:
            vals = self._store.column(component, self._after_last_dequeue)
            return vals, self._shuffle.words()

    def restore(self, values, rng_words: np.ndarray) -> None:
        """Fill an empty queue with `values` (storage order) and set the RNG."""
        with self._cond:
            if self._store.count:
                raise ValueError(f"{self.name}.restore needs an empty queue")
            cols = self._check(values, many=True)
            self._store.append(cols, 0, len(cols[0]))
            self._after_last_dequeue = self._store.count
            set_state_words(self._shuffle.rng, rng_words)
