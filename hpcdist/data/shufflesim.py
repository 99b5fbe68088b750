"""ShuffleSim: the shuffle ring's picks played on record positions alone (no feature data)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .shuffle import PickFromOldest


class ShuffleSim:
    """Which records each take of `ring.ShuffleRing` picks, from the seed and the order.

    Records are stream positions 0 .. m-1 in plan order (records restored
    into the window first). Each take tops the window up to `window + batch`
    records (fewer at the end) and applies the `PickFromOldest` rule, as the
    ring does. `advance` returns, per take, (positions picked in slot order,
    stream position read so far, window size).
    """

    def __init__(self, m: int, window: int, batch: int, rng: np.random.Generator):
        self.m, self.window, self.batch = int(m), int(window), int(batch)
        self.rule = PickFromOldest(self.window, rng)
        self.words0 = self.rule.words()
        self.q = np.empty(self.window + self.batch, np.int64)
        self.cnt = self.pos = 0
        self.done = False
        self.results: list = []

    def advance(self, takes: int, gentle: bool = False) -> list:
        """Play up to `takes` takes; `gentle` hands the GIL over after each one."""
        new, full = [], self.window + self.batch
        for _ in range(takes):
            add = min(full - self.cnt, self.m - self.pos)
            self.q[self.cnt : self.cnt + add] = np.arange(self.pos, self.pos + add)
            self.cnt, self.pos = self.cnt + add, self.pos + add
            if self.cnt == 0:
                self.done = True
                break
            got, span, self.cnt = self.rule.take(self.q, self.cnt, self.batch)
            new.append((got, self.pos, span))
            if gentle:
                time.sleep(0)
        return new


class SimAhead:
    """The next epoch's shuffle, played by this epoch's simulation thread once it is idle.

    `records(epoch)` is how many records this rank reads in `epoch`;
    `rng(epoch)` the generator of its shuffle.
    """

    def __init__(
        self,
        window: int,
        batch: int,
        records: Callable[[int], int],
        rng: Callable[[int], np.random.Generator],
    ):
        self.window, self.batch, self.records, self.rng = window, batch, records, rng
        self.epoch, self.sim = None, None

    def make(self, epoch: int) -> ShuffleSim:
        """A fresh simulation of `epoch`, kept for `take`."""
        m = self.records(epoch)
        self.epoch, self.sim = epoch, ShuffleSim(m, self.window, self.batch, self.rng(epoch))
        return self.sim

    def take(self, epoch: int) -> ShuffleSim | None:
        """The shuffle of `epoch` from its start, played in part or whole, or None."""
        sim, self.sim = self.sim, None
        return sim if self.epoch == epoch else None
