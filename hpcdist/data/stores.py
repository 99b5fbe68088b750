"""Element storage behind the queues: numpy ring buffers, or lists for ragged shapes."""

from __future__ import annotations

import numpy as np

from .shuffle import drop_picked


def _fill_plan(sel: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """After removing positions `sel` of [0, count): (holes below the new end, tail to move)."""
    keep = count - len(sel)
    holes = sel[sel < keep]
    tail_taken = np.zeros(len(sel), dtype=bool)
    tail_taken[sel[sel >= keep] - keep] = True
    tail = keep + np.flatnonzero(~tail_taken)
    return holes, tail


class ArrayStore:
    """A ring buffer per component: block copies in, block or gathered copies out."""

    def __init__(self, capacity: int, dtypes, shapes):
        self.capacity = capacity
        self.bufs = [np.empty((capacity, *s), dtype=d) for d, s in zip(dtypes, shapes, strict=True)]
        self.head = 0
        self.count = 0

    def _spans(self, start: int, m: int):
        """Buffer slices covering m slots from logical position start."""
        a = (self.head + start) % self.capacity
        first = min(m, self.capacity - a)
        yield slice(a, a + first), 0, first
        if first < m:
            yield slice(0, m - first), first, m

    def append(self, cols, a: int, b: int) -> None:
        for dst, lo, hi in self._spans(self.count, b - a):
            for buf, col in zip(self.bufs, cols, strict=True):
                buf[dst] = col[a + lo : a + hi]
        self.count += b - a

    def take_front(self, n: int) -> tuple:
        out = [np.empty((n, *buf.shape[1:]), dtype=buf.dtype) for buf in self.bufs]
        for src, lo, hi in self._spans(0, n):
            for buf, o in zip(self.bufs, out, strict=True):
                o[lo:hi] = buf[src]
        self.head = (self.head + n) % self.capacity
        self.count -= n
        if self.count == 0:
            self.head = 0
        return tuple(out)

    def take_at(self, sel: np.ndarray) -> tuple:
        """Gather logical positions `sel` (needs head == 0); the tail fills the holes."""
        if self.head:
            raise RuntimeError("take_at needs an unwrapped buffer")
        out = tuple(buf[sel] for buf in self.bufs)
        holes, tail = _fill_plan(sel, self.count)
        for buf in self.bufs:
            buf[holes] = buf[tail]
        self.count -= len(sel)
        return out

    def column(self, i: int, count: int) -> np.ndarray:
        buf = self.bufs[i]
        idx = (self.head + np.arange(count)) % self.capacity
        return buf[idx]


def _rows(a: np.ndarray) -> np.ndarray:
    """View each row of a C-contiguous array as one opaque item (fast take/put).

    Arrays of Python objects (text) cannot be viewed as bytes: they are used as they are.
    """
    if a.dtype.hasobject:
        return a
    n = len(a)
    width = a.itemsize * (a.size // n if n else 0)
    if width == 0:
        return a
    return np.ascontiguousarray(a).reshape(n, -1).view(np.dtype((np.void, width))).reshape(n)


class SlotStore:
    """Random-access storage for the shuffle queue: data rows never move.

    Logical position -> physical slot through `slot_of` (ints); a dequeue
    gathers rows with one take and returns their slots to a free stack; an
    enqueue writes rows into free slots (a plain copy while they are
    consecutive). Only integer bookkeeping is compacted, never the data.
    """

    def __init__(self, capacity: int, dtypes, shapes):
        self.capacity = capacity
        self.bufs = [np.empty((capacity, *s), dtype=d) for d, s in zip(dtypes, shapes, strict=True)]
        self.rows = [_rows(b) for b in self.bufs]
        self.slot_of = np.zeros(capacity, dtype=np.int64)
        self.free = np.arange(capacity - 1, -1, -1, dtype=np.int64)
        self.nfree = capacity
        self.count = 0

    def append(self, cols, a: int, b: int) -> None:
        m = b - a
        phys = self.free[self.nfree - m : self.nfree][::-1].copy()
        self.nfree -= m
        run = m > 0 and phys[-1] - phys[0] == m - 1 and bool(np.all(np.diff(phys) == 1))
        for buf, rows, col in zip(self.bufs, self.rows, cols, strict=True):
            if run:
                buf[phys[0] : phys[0] + m] = col[a:b]
            elif buf.dtype.hasobject:
                buf[phys] = col[a:b]
            else:
                np.put(rows, phys, _rows(np.asarray(col[a:b], dtype=buf.dtype)))
        self.slot_of[self.count : self.count + m] = phys
        self.count += m

    def take_at(self, sel: np.ndarray, keep_order: bool = False) -> tuple:
        phys = self.slot_of[sel]
        out = tuple(
            np.take(rows, phys, axis=0).view(buf.dtype).reshape(len(sel), *buf.shape[1:])
            for buf, rows in zip(self.bufs, self.rows, strict=True)
        )
        if keep_order:
            drop_picked(self.slot_of, self.count, sel)
        else:
            holes, tail = _fill_plan(sel, self.count)
            self.slot_of[holes] = self.slot_of[tail]
        self.count -= len(sel)
        self.free[self.nfree : self.nfree + len(sel)] = phys
        self.nfree += len(sel)
        return out

    def column(self, i: int, count: int) -> np.ndarray:
        return np.take(self.bufs[i], self.slot_of[:count], axis=0)


class ListStore:
    """One tuple of arrays per element, for shapes not fixed in advance."""

    def __init__(self, dtypes):
        self.dtypes = dtypes
        self.items: list = []

    @property
    def count(self) -> int:
        return len(self.items)

    def append(self, cols, a: int, b: int) -> None:
        for j in range(a, b):
            self.items.append(tuple(np.array(c[j], dtype=c.dtype) for c in cols))

    def _assemble(self, elems: list) -> tuple:
        out = []
        for i, d in enumerate(self.dtypes):
            parts = [e[i] for e in elems]
            if len({p.shape for p in parts}) > 1:
                shapes = sorted({p.shape for p in parts})
                raise ValueError(f"component {i}: elements of shapes {shapes} cannot be batched")
            shape = parts[0].shape if parts else ()
            out.append(np.stack(parts) if parts else np.zeros((0, *shape), dtype=d))
        return tuple(out)

    def take_front(self, n: int, assemble: bool = True):
        elems = self.items[:n]
        del self.items[:n]
        return self._assemble(elems) if assemble else elems

    def take_at(self, sel: np.ndarray, keep_order: bool = False) -> tuple:
        elems = [self.items[i] for i in sel]
        if keep_order:
            order = np.arange(self.count)
            left = drop_picked(order, self.count, np.asarray(sel, np.int64))
            self.items = [self.items[i] for i in order[:left].tolist()]
            return self._assemble(elems)
        holes, tail = _fill_plan(np.asarray(sel), self.count)
        for h, t in zip(holes, tail, strict=True):
            self.items[h] = self.items[t]
        del self.items[self.count - len(sel) :]
        return self._assemble(elems)

    def column(self, i: int, count: int) -> np.ndarray:
        return np.stack([e[i] for e in self.items[:count]]) if count else np.zeros(0)
