"""Thread-safe queues with TensorFlow 1 semantics, storing records in numpy blocks."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..errors import CancelledError, DeadlineExceededError, OutOfRangeError
from .stores import ArrayStore, ListStore, SlotStore, pad_elements


def _as_list(x, k: int | None = None) -> list:
    if isinstance(x, (list, tuple)) and (k is None or len(x) == k):
        return list(x)
    return [x]


class QueueBase:
    """Shared machinery: validation, blocking with deadlines, close and cancel.

    A queue of k components takes a tuple of k values (a bare value when
    k == 1) and returns a tuple of k numpy arrays (a bare array when k == 1).
    `timeout` (seconds) is the default deadline of every blocking call, like
    TF1's `operation_timeout_in_ms`; a call's own `timeout` overrides it.
    """

    def __init__(self, capacity: int, dtypes, shapes=None, timeout: float | None = None, name=None):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self._dtypes = [np.dtype(d) for d in _as_list(dtypes)]
        k = len(self._dtypes)
        if shapes is not None:
            listed = (
                isinstance(shapes, (list, tuple))
                and len(shapes) == k
                and all(isinstance(s, (list, tuple)) for s in shapes)
            )
            shapes = [tuple(s) for s in shapes] if listed else [tuple(shapes)] * (k == 1)
            if len(shapes) != k:
                raise ValueError(f"{k} dtypes but {len(shapes)} shapes")
        self._shapes = shapes
        self._capacity = int(capacity)
        self._timeout = timeout
        self.name = name or type(self).__name__
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
        k = len(self._dtypes)
        vals = [values] if k == 1 else list(values) if isinstance(values, (list, tuple)) else None
        if vals is None or len(vals) != k:
            got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise ValueError(f"{self.name}: expected a tuple of {k} components, got {got}")
        cols = [self._convert(v, i) for i, v in enumerate(vals)]
        for i, c in enumerate(cols):
            shape = c.shape[1:] if many else c.shape
            if many and c.ndim == 0:
                raise ValueError(f"{self.name}: enqueue_many component {i} needs a batch axis")
            if self._shapes is not None and not _shape_ok(shape, self._shapes[i]):
                raise ValueError(
                    f"{self.name}: component {i} expected shape {self._shapes[i]}, got {shape}"
                )
        if many and len({len(c) for c in cols}) > 1:
            raise ValueError(f"{self.name}: batch sizes differ: {[len(c) for c in cols]}")
        return cols

    def _convert(self, v, i: int) -> np.ndarray:
        want = self._dtypes[i]
        a = np.asarray(v)
        if a.dtype == want:
            return a
        rule = "safe" if isinstance(v, (np.ndarray, np.generic)) else "same_kind"
        if not np.can_cast(a.dtype, want, rule):
            raise ValueError(f"{self.name}: component {i} expected dtype {want}, got {a.dtype}")
        return a.astype(want)

    # --- blocking core --------------------------------------------------
    def _deadline(self, timeout):
        t = self._timeout if timeout is None else timeout
        return None if t is None else time.monotonic() + t

    def _wait(self, ready, deadline, what: str) -> None:
        while not ready():
            if deadline is None:
                self._cond.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(
                    f"{self.name}.{what} timed out (size {self._store.count}, "
                    f"capacity {self._capacity})"
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

    def _take(self, n: int, up_to: bool, timeout, what: str) -> tuple:
        deadline = self._deadline(timeout)
        with self._cond:
            self._wait(
                lambda: self._closed or self._store.count >= n + self._reserve(), deadline, what
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


def _shape_ok(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(
        w is None or g == w for g, w in zip(got, want, strict=False)
    )


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
        seed=None,
        timeout=None,
        name=None,
        pick_from_oldest: bool = False,
    ):
        if min_after_dequeue < 0 or min_after_dequeue >= capacity:
            raise ValueError(
                f"min_after_dequeue must be in [0, capacity={capacity}), got {min_after_dequeue}"
            )
        super().__init__(capacity, dtypes, shapes, timeout, name)
        self.min_after_dequeue = int(min_after_dequeue)
        self.pick_from_oldest = pick_from_oldest
        if isinstance(self._store, ArrayStore):
            self._store = SlotStore(self._capacity, self._dtypes, self._shapes)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._after_last_dequeue = 0

    def _reserve(self) -> int:
        return 0 if self._closed else self.min_after_dequeue

    def _remove(self, n: int) -> tuple:
        count = self._store.count
        if self.pick_from_oldest:
            count = min(count, self.min_after_dequeue + n)
        pick = self._rng.choice(count, size=n, replace=False) if n else np.zeros(0, np.int64)
        out = self._store.take_at(pick, keep_order=self.pick_from_oldest)
        self._after_last_dequeue = count - n
        return out

    def recycle_storage(self, old: RandomShuffleQueue) -> None:
        """Take over the row buffers of a finished queue of the same layout (empty queue only)."""
        with self._cond:
            same = type(old._store) is type(self._store) is SlotStore and all(
                a.shape == b.shape and a.dtype == b.dtype
                for a, b in zip(old._store.bufs, self._store.bufs, strict=True)
            )
            if same and self._store.count == 0:
                self._store.bufs, self._store.rows = old._store.bufs, old._store.rows

    # --- checkpoint support (used by InputPipeline) ----------------------
    def snapshot(self, component: int) -> tuple[np.ndarray, np.ndarray]:
        """(values of `component` right after the last dequeue, RNG state words).

        With pick_from_oldest, elements enqueued after the last dequeue's
        window are left out: they are the producers' run-ahead.
        """
        with self._cond:
            vals = self._store.column(component, self._after_last_dequeue)
            return vals, rng_state_words(self._rng)

    def restore(self, values, rng_words: np.ndarray) -> None:
        """Fill an empty queue with `values` (storage order) and set the RNG."""
        with self._cond:
            if self._store.count:
                raise ValueError(f"{self.name}.restore needs an empty queue")
            cols = self._check(values, many=True)
            self._store.append(cols, 0, len(cols[0]))
            self._after_last_dequeue = self._store.count
            set_rng_state_words(self._rng, rng_words)


def rng_state_words(rng: np.random.Generator) -> np.ndarray:
    """A PCG64 generator's state as 6 uint64 words (storable in HDF5)."""
    st = rng.bit_generator.state
    mask = (1 << 64) - 1
    s, inc = st["state"]["state"], st["state"]["inc"]
    words = [s >> 64, s & mask, inc >> 64, inc & mask, st["has_uint32"], st["uinteger"]]
    return np.array(words, dtype=np.uint64)


def set_rng_state_words(rng: np.random.Generator, words) -> None:
    w = [int(x) for x in np.asarray(words, dtype=np.uint64)]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }


class PaddingFIFOQueue(QueueBase):
    """FIFO whose batches pad None dimensions with zeros to the batch maximum.

    With `return_lengths=True`, dequeue_many/dequeue_up_to also return, after
    the k components, one int64 array (n, ndim) per component holding each
    element's true shape; a mask is `arange(L) < lengths[:, j]`.
    """

    def __init__(
        self, capacity, dtypes, shapes, timeout=None, name=None, return_lengths: bool = False
    ):
        if shapes is None:
            raise ValueError("PaddingFIFOQueue needs shapes (None marks a padded dimension)")
        super().__init__(capacity, dtypes, shapes, timeout, name)
        self.return_lengths = return_lengths

    def _make_store(self):
        return ListStore(self._dtypes)

    def dequeue_many(self, n, timeout=None):
        return self._padded(self._take(self._check_n(n), False, timeout, "dequeue_many"))

    def dequeue_up_to(self, n, timeout=None):
        return self._padded(self._take(self._check_n(n), True, timeout, "dequeue_up_to"))

    def _remove(self, n: int) -> tuple:
        return self._store.take_front(n, assemble=False)

    def dequeue(self, timeout=None):
        elems = self._take(1, False, timeout, "dequeue")
        return self._bare(elems[0])

    def _padded(self, elems: list):
        arrays, lengths = pad_elements(elems, self._dtypes, self._shapes)
        out = tuple(arrays) + (tuple(lengths) if self.return_lengths else ())
        return out[0] if len(out) == 1 else out
