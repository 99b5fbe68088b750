"""ShuffleSim: the shuffle ring's picks played on record positions alone (no feature data)."""

from __future__ import annotations

import time

import numpy as np

from .queues import rng_state_words


class ShuffleSim:
    """Which records each take of `ring.ShuffleRing` picks, from the seed and the order.

    Records are stream positions 0 .. m-1 in plan order (records restored
    into the window first). Each take tops the window up to `window + batch`
    records (fewer at the end), picks min(batch, window) of them with the
    ring's exact RNG call, and keeps the rest in arrival order. `advance`
    returns, per take, (positions picked in slot order, stream position
    read so far, window size).
    """

    def __init__(self, m: int, window: int, batch: int, rng: np.random.Generator):
        self.m, self.window, self.batch, self.rng = int(m), int(window), int(batch), rng
        self.words0 = rng_state_words(rng)
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
            k = min(self.batch, self.cnt)
            if k == 0:
                self.done = True
                break
            pick = self.rng.choice(self.cnt, size=k, replace=False)
            new.append((self.q[pick], self.pos, self.cnt))
            keep = np.ones(self.cnt, bool)
            keep[pick] = False
            self.q[: self.cnt - k] = self.q[: self.cnt][keep]
            self.cnt -= k
            if gentle:
                time.sleep(0)
        return new


class SimAhead:
    """The next epoch's shuffle, played by this epoch's simulation thread once it is idle."""

    def __init__(self, pipe):
        self.pipe, self.epoch, self.sim = pipe, None, None

    def make(self, epoch: int) -> ShuffleSim:
        p = self.pipe
        a, b = p.plan.rank_ranges(epoch, p.rank)
        m = int((b - a).sum())
        self.epoch, self.sim = epoch, ShuffleSim(m, p.shuffle_buffer, p.batch_size, p._rng(epoch))
        return self.sim

    def take(self, epoch: int) -> ShuffleSim | None:
        """The shuffle of `epoch` from its start, played in part or whole, or None."""
        sim, self.sim = self.sim, None
        return sim if self.epoch == epoch else None
