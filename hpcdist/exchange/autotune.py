"""Bucket-size autotuning: try a few sizes for a few calls each, keep the fastest."""

from __future__ import annotations

import numpy as np

from ..guard import Guard
from .buckets import BucketLayout

#: Bucket sizes autotune tries, a few steps each, before keeping the fastest.
AUTOTUNE_CANDIDATES = (1 << 20, 4 << 20, 16 << 20, 64 << 20)
AUTOTUNE_TRIALS = 3


class BucketAutotuner:
    """Tries each candidate bucket size for `trials` calls, then keeps the fastest.

    Feed it the same times on every rank (the slowest rank's) so that every
    rank picks the same size.
    """

    def __init__(self, candidates, trials: int):
        self.todo = list(candidates)
        self.trials = trials
        self.history: list[tuple[int, float]] = []

    @property
    def active(self) -> bool:
        return bool(self.todo)

    def record(self, size: int, seconds: float) -> int | None:
        """Note one call at `size`; return the size to cut next, or None to keep this one."""
        self.history.append((size, seconds))
        if sum(1 for s, _ in self.history if s == size) < self.trials or not self.todo:
            return None
        self.todo.pop(0)
        if self.todo:
            return self.todo[0]
        best: dict[int, float] = {}
        for s, t in self.history:
            best[s] = min(t, best.get(s, t))
        return min(best, key=best.get)


class Autotune:
    """Re-cuts an exchange's buckets while the tuner is active, the same way on every rank.

    `guard` spans the exchange's communicator (the slowest rank's time is
    agreed through it); `node_guard` the node, whose ranks must all have
    finished the old cut before the shared flags are reset for the new one.
    """

    def __init__(self, layout: BucketLayout, guard: Guard, node_guard: Guard, reset_flags):
        self.layout, self.guard, self.node_guard = layout, guard, node_guard
        self.reset_flags = reset_flags  # called on local rank 0 between the node barriers
        self.tuner = BucketAutotuner(AUTOTUNE_CANDIDATES, AUTOTUNE_TRIALS)

    @property
    def active(self) -> bool:
        return self.tuner.active

    @property
    def history(self) -> list[tuple[int, float]]:
        """The trials so far: (bucket_bytes, the slowest rank's seconds)."""
        return self.tuner.history

    def step(self, seconds: float) -> int:
        """Record one call's time; re-cut if the tuner says so; the bucket bytes now in use."""
        worst = self.guard.allreduce(np.array([seconds]), op="max", what="autotune: call times")
        nxt = self.tuner.record(self.layout.bucket_bytes, float(worst[0]))
        if nxt is None or nxt == self.layout.bucket_bytes:
            return self.layout.bucket_bytes
        self.node_guard.barrier("autotune: every bucket of the old cut to finish on this node")
        self.layout.cut(nxt)
        if self.node_guard.rank == 0:
            self.reset_flags()
        self.node_guard.barrier("autotune: the node's flags to be reset for the new cut")
        return nxt

    def free(self) -> None:
        self.guard.free()
