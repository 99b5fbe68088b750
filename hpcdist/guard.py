"""Guarded collectives: one deadline for every blocking collective; a timeout names who never came.

Every collective hpcdist calls while training, evaluating, checkpointing,
logging or checking for pre-emption goes through a `Guard`: the collective
is started non-blocking and tested until it completes or the deadline
passes. Past the deadline the ranks that did arrive meet in an arrival check
(point-to-point, to rank 0 of the communicator), which names the ranks that
never came and what the others were waiting for; then the job is aborted
(or, with on_timeout="raise", CollectiveTimeoutError is raised).

    guard = Guard(comm, timeout=None)          # None: default_timeout()
    total = guard.allreduce(np.array([loss, n]), what="epoch loss sums")
    flag = guard.allreduce(np.array([1]), op="max", what="pre-emption check")
    value = guard.bcast(obj, root=0, what="which checkpoint to load")
    rows = guard.gather(obj, root=0, what="checkpoint shards")   # list on root, None elsewhere
    rows = guard.allgather(obj, what="config digests")
    guard.barrier(what="run directory ready")

The deadline is one setting: `timeout=` where a caller has it (the
trainer's --timeout), else $HPCDIST_TIMEOUT, else $HPCDIST_EXCHANGE_TIMEOUT
(its older name), else 300 s.
"""

from __future__ import annotations

import math
import os
import pickle
import time
import zlib

import numpy as np
from mpi4py import MPI

from .errors import CollectiveTimeoutError, ExchangeError

#: Seconds any blocking collective may wait for the other ranks.
TIMEOUT_ENV = "HPCDIST_TIMEOUT"
#: The exchange's older name for the same setting, still honoured.
EXCHANGE_TIMEOUT_ENV = "HPCDIST_EXCHANGE_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
_TAG_REPORT, _TAG_VERDICT = 7101, 7102
_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


def default_timeout() -> float:
    """$HPCDIST_TIMEOUT, else $HPCDIST_EXCHANGE_TIMEOUT, else 300 (seconds)."""
    for name in (TIMEOUT_ENV, EXCHANGE_TIMEOUT_ENV):
        value = os.environ.get(name, "").strip()
        if value:
            return check_timeout(value, name)
    return DEFAULT_TIMEOUT_S


def check_timeout(value, name: str = "timeout") -> float:
    """`value` as a positive, finite number of seconds, or ValueError naming `name`."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return seconds


def fingerprint(key) -> int:
    """A 62-bit, order-sensitive digest of any repr-able value (a tensor list's signature)."""
    blob = repr(key).encode()
    return (zlib.crc32(blob) << 30) ^ zlib.adler32(blob)


class Deadline:
    """A point in time after which a wait gives up; polls with a growing back-off."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._spins = 0

    def expired(self) -> bool:
        return time.monotonic() > self.end

    def pause(self) -> None:
        """Give the CPU away: yield first, then sleep a little longer each time (up to 1 ms)."""
        self._spins += 1
        if self._spins < 50:
            os.sched_yield()
        else:
            time.sleep(min(1e-3, 1e-5 * (self._spins - 49)))

    def reset_backoff(self) -> None:
        self._spins = 0


def wait_requests(reqs: list, deadline: Deadline, what: str) -> None:
    """Test `reqs` until all complete; past the deadline raise CollectiveTimeoutError (`what`)."""
    while not MPI.Request.Testall(reqs):
        if deadline.expired():
            raise CollectiveTimeoutError(
                f"timed out after {deadline.seconds:g} s waiting for {what}"
            )
        deadline.pause()


class ArrivalCheck:
    """Ranks report (call number, fingerprint) to rank 0, which answers with everyone's.

    Point-to-point and non-blocking, so rank 0 knows which ranks never came by
    the deadline, and every rank can name a mismatch (shape, dtype, order,
    count, or which collective it is in) and the ranks involved instead of
    hanging in a collective.
    """

    def __init__(self, comm: MPI.Comm):
        self.comm = comm.Dup()
        self.grace = 2.0

    def check(self, call: int, lines, timeout: float, key=None, answer_wait=None) -> None:
        """Raise unless every rank is at `call` with the same list, within `timeout` s.

        `lines` (a list of strings, or a function returning it) names what is
        compared in an error; `key` is the cheap thing digested, `lines`
        itself when not given. Ranks other than 0 wait `answer_wait` seconds
        (default `timeout`) plus a grace for rank 0's verdict.
        """
        comm = self.comm
        if comm.size == 1:
            return
        fp = fingerprint(lines if key is None else key)
        if comm.rank == 0:
            table = self._gather_root(call, fp, timeout)
        else:
            table = self._ask_root(call, fp, timeout if answer_wait is None else answer_wait)
        missing = [r for r in range(comm.size) if table[r, 0] < 0]
        if missing:
            came = [r for r in range(comm.size) if r not in missing]
            raise CollectiveTimeoutError(
                f"rank(s) {missing} of {comm.size} never arrived within {timeout:g} s "
                f"(ranks {came} did)"
            )
        if len(set(table[:, 0].tolist())) > 1:
            calls = {r: int(table[r, 0]) for r in range(comm.size)}
            raise ExchangeError(f"ranks are at different calls (rank: call) {calls}")
        if len(set(table[:, 1].tolist())) > 1:
            raise ExchangeError(self._mismatch(lines() if callable(lines) else lines))

    def _ask_root(self, call: int, fp: int, wait: float) -> np.ndarray:
        report = np.array([call, fp], dtype=np.int64)
        table = np.empty((self.comm.size, 2), dtype=np.int64)
        reqs = [self.comm.Isend(report, 0, _TAG_REPORT), self.comm.Irecv(table, 0, _TAG_VERDICT)]
        try:
            wait_requests(reqs, Deadline(wait + self.grace), "rank 0")
        except CollectiveTimeoutError:
            raise CollectiveTimeoutError(
                f"rank 0, which collects the arrival check, never answered within "
                f"{wait + self.grace:g} s (it is missing or stuck)"
            ) from None
        return table

    def _gather_root(self, call: int, fp: int, timeout: float) -> np.ndarray:
        comm = self.comm
        table = np.full((comm.size, 2), -1, dtype=np.int64)
        table[0] = (call, fp)
        reqs = [comm.Irecv(table[r], r, _TAG_REPORT) for r in range(1, comm.size)]
        deadline = Deadline(timeout)
        while not MPI.Request.Testall(reqs) and not deadline.expired():
            deadline.pause()
        for r, req in enumerate(reqs, start=1):
            if not req.Test():
                req.Cancel()
                table[r] = -1
        verdict = [
            comm.Isend(table, r, _TAG_VERDICT) for r in range(1, comm.size) if table[r, 0] >= 0
        ]
        wait_requests(verdict, Deadline(self.grace + 1), "the arrival verdict to be delivered")
        return table

    def _mismatch(self, lines: list[str]) -> str:
        """Everyone is here but disagrees: gather the descriptions and name the difference."""
        every = self.comm.allgather(lines)  # every rank has just answered: this cannot hang
        ref = every[0]
        parts = []
        for r, mine in enumerate(every[1:], start=1):
            if mine == ref:
                continue
            if not mine or not ref or mine[0] != ref[0] or len(mine) != len(ref):
                parts.append(f"rank {r} has {mine[:1]}, rank 0 has {ref[:1]}")
                continue
            k = next(k for k in range(1, len(mine)) if mine[k] != ref[k])
            parts.append(f"tensor {k - 1}: rank {r} has {mine[k]}, rank 0 has {ref[k]}")
        return "ranks submitted different tensor lists: " + "; ".join(parts)

    def free(self) -> None:
        if self.comm != MPI.COMM_NULL:
            self.comm.Free()


class _WaitCheck(ArrivalCheck):
    """The arrival check of a Guard: what is compared is the collective each rank waits in."""

    def _mismatch(self, lines: list[str]) -> str:
        every = self.comm.allgather(lines)
        where = "; ".join(f"rank {r} in {w[0]!r}" for r, w in enumerate(every))
        return f"ranks are waiting in different collectives: {where}"


class Guard:
    """Blocking collectives over `comm` with one deadline; a missed deadline names the absent.

    `name` says whose collectives these are in messages ("trainer",
    "checkpoint"). The guard works on its own duplicate of `comm`, so its
    collectives never match a caller's. on_timeout="abort" (default) prints
    the diagnosis and aborts the job; "raise" raises CollectiveTimeoutError.
    """

    def __init__(
        self,
        comm: MPI.Comm | None = None,
        timeout: float | None = None,
        *,
        name: str = "hpcdist",
        on_timeout: str = "abort",
    ):
        if on_timeout not in ("abort", "raise"):
            raise ValueError(f"on_timeout must be 'abort' or 'raise', got {on_timeout!r}")
        if comm is None:
            from . import runtime

            comm = runtime.world_comm()
        self.timeout = default_timeout() if timeout is None else check_timeout(timeout)
        self.name, self.on_timeout = name, on_timeout
        self.comm = comm.Dup()
        self.arrival = _WaitCheck(self.comm)
        self.calls = 0

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    # --- the collectives ----------------------------------------------------
    def barrier(self, what: str = "a barrier") -> None:
        """Every rank of comm has reached this point."""
        self.wait([self.comm.Ibarrier()], what)

    def allreduce(self, array, op: str = "sum", what: str = "an allreduce") -> np.ndarray:
        """A new array: `array` reduced elementwise over comm (op: sum, max or min)."""
        if op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {op!r}")
        send = np.ascontiguousarray(array)
        out = np.empty_like(send)
        self.wait([self.comm.Iallreduce(send, out, _OPS[op])], what)
        return out

    def bcast(self, obj, root: int = 0, what: str = "a broadcast"):
        """Root's `obj` (any picklable value) on every rank."""
        if self.size == 1:
            return obj
        n = np.zeros(1, np.int64)
        data = pickle.dumps(obj, protocol=5) if self.rank == root else b""
        n[0] = len(data)
        self.wait([self.comm.Ibcast(n, root=root)], what)
        buf = bytearray(data) if self.rank == root else bytearray(int(n[0]))
        self.wait([self.comm.Ibcast(buf, root=root)], what)
        return obj if self.rank == root else pickle.loads(buf)

    def gather(self, obj, root: int = 0, what: str = "a gather"):
        """Every rank's `obj` as a list on root (rank order); None on the others."""
        data = pickle.dumps(obj, protocol=5)
        counts = np.zeros(self.size, np.int64) if self.rank == root else None
        mine = np.array([len(data)], np.int64)
        self.wait([self.comm.Igather(mine, counts, root=root)], what)
        if self.rank != root:
            self.wait([self.comm.Igatherv(data, None, root=root)], what)
            return None
        buf = bytearray(int(counts.sum()))
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.wait([self.comm.Igatherv(data, [buf, (counts, displs), MPI.BYTE], root=root)], what)
        return _split(buf, counts)

    def allgather(self, obj, what: str = "an allgather") -> list:
        """Every rank's `obj`, as a list in rank order, on every rank."""
        data = pickle.dumps(obj, protocol=5)
        counts = np.zeros(self.size, np.int64)
        self.wait([self.comm.Iallgather(np.array([len(data)], np.int64), counts)], what)
        buf = bytearray(int(counts.sum()))
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.wait([self.comm.Iallgatherv(data, [buf, (counts, displs), MPI.BYTE])], what)
        return _split(buf, counts)

    # --- the deadline -------------------------------------------------------
    def wait(self, reqs: list, what: str) -> None:
        """Test `reqs` (collectives started on self.comm) until done or the deadline passes."""
        self.calls += 1
        deadline = Deadline(self.timeout)
        while not MPI.Request.Testall(reqs):
            if deadline.expired():
                self._timed_out(what)
            deadline.pause()

    def diagnose(self, what: str) -> str:
        """Meet the other ranks that timed out and return who never came (a sentence)."""
        try:
            # Every rank that entered this collective times out within one timeout of rank 0;
            # rank 0 waits that long for their reports, the others twice that for its verdict.
            self.arrival.check(self.calls, [what], self.timeout, answer_wait=2 * self.timeout)
        except (CollectiveTimeoutError, ExchangeError) as diag:
            return str(diag)
        return "every rank reached the diagnosis, so the stall is inside MPI"

    def _timed_out(self, what: str) -> None:
        text = (
            f"{self.name}: timed out after {self.timeout:g} s waiting for {what} "
            f"(collective {self.calls} of this guard): {self.diagnose(what)}"
        )
        if self.on_timeout == "abort":
            from . import runtime

            runtime.abort(f"CollectiveTimeoutError: {text}", exitcode=1, grace_s=1.0)
        raise CollectiveTimeoutError(text)

    def free(self) -> None:
        """Free the guard's communicators (collective)."""
        self.arrival.free()
        if self.comm != MPI.COMM_NULL:
            self.comm.Free()


def _split(buf: bytearray, counts: np.ndarray) -> list:
    out, pos = [], 0
    view = memoryview(buf)
    for n in counts.tolist():
        out.append(pickle.loads(view[pos : pos + n]))
        pos += n
    return out
