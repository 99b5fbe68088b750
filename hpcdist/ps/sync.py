"""ps-sync: each step averages the first `replicas_to_aggregate` gradients of the current step.

The rule on one ps task (TF1's SyncReplicasOptimizer, without its hangs):

- a gradient computed on version v arrives while the global step is g:
  v < g is stale: dropped, counted with its samples (per epoch), answered at
  once with the current version; v == g joins the step's accumulator.
- the step is applied when K distinct workers have joined, or when every
  worker that has not joined is parked (pushed its last step of the epoch)
  or gone; the mean is summed in worker-rank order, so with K equal to the
  workers the update is deterministic and equals allreduce's average.
- a worker's last push of an epoch is answered only when every worker is
  parked and nothing is pending: all workers end an epoch on one version, and
  no worker waits on gradients that will never come (tensorflow #20342).
- a step pending longer than the deadline ends the job naming the workers
  whose gradients it waited for.
"""

from __future__ import annotations

import time

from ..errors import ExchangeError


class SyncRule:
    """When a ps task applies, drops and answers, in ps-sync."""

    flags = 0  # header flags of the versions the ps packs (none in ps-sync)

    def __init__(self, replicas_to_aggregate: int | None = None, *, record: bool = False):
        self.k = replicas_to_aggregate
        self.record = record

    def bind(self, server) -> None:
        self.s = server
        n = len(server.workers)
        self.k = n if self.k is None else self.k
        if not 1 <= self.k <= n:
            raise ValueError(f"replicas_to_aggregate must be in 1..{n} (the workers), got {self.k}")
        self.parked = [False] * n
        self.joined: list[int] = []
        self.held: list[int] = []  # parked workers waiting for the epoch's last version
        self.since: float | None = None  # when the oldest unanswered worker pushed
        if self.record:
            server.stats.events = []

    def on_setup(self, request: dict) -> None:
        return None

    def on_push(self, w: int, frame) -> None:
        s = self.s
        version, remaining = frame.get("version"), frame.get("remaining")
        s.stats.pushes += 1
        self.parked[w] = remaining == 0
        stale = version < s.step
        if s.stats.events is not None:
            s.stats.events.append((w, version, s.step, not stale))
        if stale:
            s.stats.drop(frame.get("samples"), frame.get("epoch"))
            self._answer(w)
        elif version > s.step or w in self.joined:
            raise ExchangeError(
                f"ps task {s.index}: {s.worker_name(w)} pushed for step {version} while the "
                f"global step is {s.step}{' (twice)' if w in self.joined else ''}"
            )
        else:
            self.joined.append(w)
            self.since = self.since or time.monotonic()
        self.advance()

    def on_reply(self, w: int) -> None:
        return None

    def on_done(self, w: int) -> None:
        self.advance()

    def _answer(self, w: int) -> None:
        if self.parked[w]:
            self.held.append(w)
            self.since = self.since or time.monotonic()
        else:
            self.s.reply(w)

    def _settled(self, w: int) -> bool:
        return self.parked[w] or self.s.done[w]

    def advance(self) -> None:
        """Apply the step if it is complete; release the parked workers at the epoch's end."""
        s, joined = self.s, self.joined
        quiet = all(self._settled(w) for w in range(len(s.workers)) if w not in joined)
        if joined and (len(joined) >= self.k or quiet):
            s.mean_of(joined)
            s.stats.staleness[0] += len(joined)  # in sync every applied gradient is fresh
            s.apply()
            self.joined = []
            for w in joined:
                self._answer(w)
        if not self.joined and self.held and all(map(self._settled, range(len(s.workers)))):
            for w in self.held:  # every worker ends the epoch on this version
                s.reply(w)
            self.held = []
            self.parked = [False] * len(s.workers)  # released into the next epoch
        self.since = self.since if (self.joined or self.held) else None

    def check_liveness(self) -> None:
        """Past the deadline with a worker unanswered: end the job naming who never pushed."""
        if self.since is None or time.monotonic() - self.since <= self.s.timeout:
            return
        s = self.s
        missing = [
            s.worker_name(w)
            for w in range(len(s.workers))
            if w not in self.joined and not self._settled(w)
        ]
        s.abort(
            f"step {s.step} ({len(self.joined)} of {self.k} gradients): no gradient from "
            f"{', '.join(missing) or 'any worker'}"
        )
