"""ps-async: every gradient applied as it comes, one consistent version, bounded staleness.

Consistency across shards: ps task 0 takes a worker's gradient first and its
answer's version tells the worker its sequence number n; the worker then
pushes the rest of its gradient to the other tasks with n, and each task
applies sequence numbers strictly in order (holding early ones). So every
task applies the same gradients in the same order, and the parameters a
worker gets back are version n + 1 on every shard (MXNet's dist_async mixed
versions per key, apache/mxnet #2825).

Each update is one worker's gradient: with W workers it takes lr(step // W) / W
of the schedule made for the global batch (W updates stand for one step).

Staleness of a gradient = n - (the version it was computed on), measured on
every task alike. Policies: "none" (apply as is), "lr" (lr / staleness,
Zhang et al. 2016), "drop" (drop when staleness > the bound, counted with its
samples), "dc" (DC-ASGD, Zheng et al. 2017: g + lambda * g * g * (w_now -
w_then), lambda 0.04; each task keeps the version it last sent each worker).

Warm-up (Dean et al. 2012's "warmstarting": one replica first, then the
rest): the first `warmup` updates come from worker 0 alone. The other
workers keep stepping through their data (so every collective of theirs
still meets worker 0's), but task 0 drops their gradients, counted with
their samples like any drop, until worker 0 has made those updates or has
left. Task 0 decides and marks the version it answers (header flag
WARMUP_DROPPED); the worker forwards the mark to the other tasks with the
sequence number, so every task drops the same gradients.

The bound (SSP, Ho et al. 2013): task 0 counts each worker's pushes (its
clock) and lets a worker go on only while it is at most `staleness` clocks
ahead of the slowest worker still training; a worker that finishes (DONE)
leaves the count. A worker's last push of an epoch waits until every worker
has parked, then pulls the epoch's last version, so an epoch ends on one
version everywhere.
"""

from __future__ import annotations

import time

import numpy as np

from . import transport as tp

POLICIES = ("none", "lr", "drop", "dc")
DC_LAMBDA = 0.04
#: Header flag: ps task 0 dropped this gradient in the warm-up (so must every task).
WARMUP_DROPPED = 1


class AsyncRule:
    """When a ps task applies, drops and lets workers go on, in ps-async."""

    def __init__(
        self, staleness: int = 4, policy: str = "none", *, warmup: int = 0, record: bool = False
    ):
        if policy not in POLICIES:
            raise ValueError(f"staleness policy must be one of {POLICIES}, got {policy!r}")
        if staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {staleness}")
        if warmup < 0:
            raise ValueError(f"the async warm-up must be >= 0 updates, got {warmup}")
        self.bound, self.policy, self.record = int(staleness), policy, record
        self.warmup = int(warmup)
        self.flags = 0  # the header flags of the version task 0 is about to pack

    def bind(self, server) -> None:
        self.s = server
        n = len(server.workers)
        self.clocks = [0] * n
        self.parked = [False] * n
        self.waiting: list[int] = []  # workers (task 0) waiting for permission to go on
        self.pending: dict[int, int] = {}  # worker -> sequence number held (tasks > 0)
        self.go_frames = [tp.Frame(0, np.uint8) for _ in range(n)]
        self.backups = None
        self.since: float | None = None
        if self.record:
            server.stats.events = []

    def on_setup(self, request: dict) -> None:
        if self.policy == "dc":
            self.backups = [self.s.shard.data.copy() for _ in self.s.workers]

    # --- gradients -----------------------------------------------------------------------
    def on_push(self, w: int, frame) -> None:
        s = self.s
        s.stats.pushes += 1
        if s.index > 0 and frame.get("seq") != s.version:
            self.pending[w] = frame.get("seq")  # its slot holds it until its turn
            self.since = self.since or time.monotonic()
            return
        self._take(w, frame, s.version)
        while s.index > 0 and s.version in self.pending.values():
            nxt = next(u for u, q in self.pending.items() if q == s.version)
            del self.pending[nxt]
            self._take(nxt, s.slots[nxt], s.version)
        self.since = time.monotonic() if (self.pending or self.waiting) else None

    def _warming(self, w: int, frame) -> bool:
        """Whether w's gradient is dropped in the warm-up (task 0 decides, the others follow
        the flag the worker forwards)."""
        if self.s.index > 0:
            return bool(frame.get("flags") & WARMUP_DROPPED)
        return w != 0 and self.s.step < self.warmup and not self.s.done[0]

    def _take(self, w: int, frame, seq: int) -> None:
        s = self.s
        staleness = seq - frame.get("version")
        warming = self._warming(w, frame)
        drop = warming or (self.policy == "drop" and staleness > self.bound)
        if s.stats.events is not None:
            s.stats.events.append((w, frame.get("version"), seq, not drop))
        if drop:
            s.stats.drop(frame.get("samples"), frame.get("epoch"), warmup=warming)
            self.flags = WARMUP_DROPPED if warming else 0
            s.skip()
            self.flags = 0
        else:
            grad = s.mean_of([w])
            if self.policy == "dc" and self.backups is not None:
                grad += DC_LAMBDA * grad * grad * (s.shard.data - self.backups[w])
            s.stats.staleness[staleness] += 1
            n = len(s.workers)  # W one-worker updates stand for one step of the global batch
            scale = 1.0 / max(1, staleness) if self.policy == "lr" else 1.0
            s.apply(scale / n, at=s.step // n)
        s.reply(w)
        if s.index == 0:
            self.clocks[w] += 1
            self.parked[w] = frame.get("remaining") == 0
            self.waiting.append(w)
            self._let_go()

    def on_reply(self, w: int) -> None:
        """Worker w is sent the current version (DC-ASGD keeps it as w's w_then)."""
        if self.backups is not None:
            self.backups[w][...] = self.s.shard.data

    def on_done(self, w: int) -> None:
        if self.s.index == 0:
            self._let_go()

    # --- the bound (task 0) --------------------------------------------------------------
    def _settled(self, w: int) -> bool:
        return self.parked[w] or self.s.done[w]

    def _let_go(self) -> None:
        s = self.s
        active = [self.clocks[u] for u in range(len(s.workers)) if not s.done[u]]
        slowest = min(active, default=0)
        everyone = all(map(self._settled, range(len(s.workers))))
        still = []
        for w in self.waiting:
            if self.parked[w] and everyone:  # the epoch's end: pull its last version
                self._go(w, pull=s.version)
            elif not self.parked[w] and self.clocks[w] - slowest <= self.bound:
                s.stats.max_lead = max(s.stats.max_lead, self.clocks[w] - slowest)
                self._go(w, pull=-1)  # w computes its step clocks[w]
            else:
                still.append(w)
        self.waiting = still
        if everyone and not still:
            self.parked = [False] * len(s.workers)

    def _go(self, w: int, pull: int) -> None:
        frame = self.go_frames[w].set(kind=tp.PARAMS, worker=w, version=pull)
        req = self.s.port.isend_frame(frame, self.s.workers[w], tp.TAG_GO, header_only=True)
        self.s.other_reqs.append((req, frame))

    def check_liveness(self) -> None:
        """Past the deadline with a worker held: end the job naming whom it waits for."""
        if self.since is None or time.monotonic() - self.since <= self.s.timeout:
            return
        s = self.s
        if self.pending:
            s.abort(f"sequence number {s.version} (held: {sorted(self.pending.values())})")
        active = [u for u in range(len(s.workers)) if not s.done[u]]
        slowest = min(self.clocks[u] for u in active)
        behind = [s.worker_name(u) for u in active if self.clocks[u] == slowest]
        s.abort(f"{', '.join(behind)} at clock {slowest} (the slowest; others are held)")
