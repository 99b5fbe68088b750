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

import pickle

import numpy as np
from mpi4py import MPI

from .arrival import WaitCheck
from .deadline import (  # noqa: F401  (the timeout setting is re-exported from here)
    DEFAULT_TIMEOUT_S,
    EXCHANGE_TIMEOUT_ENV,
    TIMEOUT_ENV,
    Deadline,
    check_timeout,
    default_timeout,
)
from .errors import CollectiveTimeoutError, ExchangeError

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


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
        self.arrival = WaitCheck(self.comm)
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
