"""Overlap: buckets start in order as their gradients become ready and advance without blocking."""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .mpi import Polling
from .safety import Deadline


class BucketRun:
    """The buckets of one exchange call.

    Each bucket's work is a generator that yields while it waits on other
    ranks (what it waits for) and returns True when its result is not
    finite. Buckets start strictly in bucket order, so every rank posts its
    collectives in the same order, and are advanced by progress().
    """

    def __init__(self, buckets: list, nparams: int, work: Callable[[object], Generator]):
        self.pending = list(buckets)
        self.work = work
        self.active: dict[int, Generator] = {}
        self.waits: dict[int, tuple] = {}
        self.ready = np.zeros(nparams, dtype=bool)
        self.nonfinite = False

    @property
    def done(self) -> bool:
        return not self.pending and not self.active

    def mark_ready(self, i: int) -> None:
        """Gradient i is final: start every bucket, in order, whose gradients all are."""
        self.ready[i] = True
        while self.pending and self.ready[self.pending[0].params].all():
            self._start(self.pending.pop(0))
        self.progress()

    def start_all(self) -> None:
        while self.pending:
            self._start(self.pending.pop(0))

    def _start(self, b) -> None:
        self.active[b.index] = self.work(b)
        self._step(b.index)

    def _step(self, index: int) -> bool:
        try:
            self.waits[index] = next(self.active[index])
            return False
        except StopIteration as stop:
            self.nonfinite |= bool(stop.value)
            del self.active[index]
            self.waits.pop(index, None)
            return True

    def progress(self) -> bool:
        """Advance every started bucket once; True when one of them finished."""
        return any([self._step(i) for i in list(self.active)])

    def drive(self, deadline: Deadline, expired: Callable[[], None]) -> None:
        """Start the rest and run everything to the end; call expired() past the deadline."""
        self.start_all()
        while self.active:
            if self.progress():
                deadline.reset_backoff()
            elif deadline.expired():
                expired()
            elif any(isinstance(w, Polling) for w in self.waits.values()):
                deadline.poll_pause()  # MPI moves only while polled: yield, do not sleep
            else:
                deadline.pause()
