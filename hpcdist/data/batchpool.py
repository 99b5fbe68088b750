"""Batch memory of the one-copy path: the pool of batch arrays and the table of row destinations."""

from __future__ import annotations

import collections
import sys
from operator import itemgetter

import numpy as np

from .rawh5 import LIBC_PREADV, preadv_full, preadv_rows


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
        if LIBC_PREADV:  # rows are read by address: no per-row objects needed
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


class RowTable:
    """Where each row of the batches being filled goes, by slot.

    With libc's preadv a slot holds the row's byte address (no Python
    object per row); without it, a byte memoryview of the row (BatchPool
    makes them once per array).
    """

    def __init__(self, slots: int, row_bytes: int):
        self.row_bytes = row_bytes
        self.addr = np.zeros(slots, np.uint64) if LIBC_PREADV else None
        self.views: list = [] if LIBC_PREADV else [None] * slots

    def place(self, at: int, entry: tuple) -> None:
        """Slots at, at + 1, ... are the rows of `entry` (a BatchPool array and its views)."""
        a, views = entry
        if self.addr is not None:
            rows = np.arange(len(a), dtype=np.uint64) * np.uint64(self.row_bytes)
            self.addr[at : at + len(a)] = np.uint64(a.ctypes.data) + rows
        else:
            self.views[at : at + len(views)] = views

    def destinations(self, idx: np.ndarray):
        """The destinations of slots `idx`, for `read`."""
        if self.addr is not None:
            return self.addr[idx]
        idx = idx.tolist()
        return [self.views[i] for i in idx] if len(idx) < 2 else itemgetter(*idx)(self.views)

    def read(self, fd: int, dest, row_bytes: int, offset: int) -> None:
        """Consecutive rows of the file at `offset` into `dest` (from destinations)."""
        if self.addr is not None:
            preadv_rows(fd, dest, row_bytes, offset)
        else:
            preadv_full(fd, dest, offset)
