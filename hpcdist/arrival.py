"""The arrival check: ranks report to rank 0, which names who never came or who differs."""

from __future__ import annotations

import zlib

import numpy as np
from mpi4py import MPI

from .deadline import Deadline, wait_requests
from .errors import CollectiveTimeoutError, ExchangeError

_TAG_REPORT, _TAG_VERDICT = 7101, 7102


def fingerprint(key) -> int:
    """A 62-bit, order-sensitive digest of any repr-able value (a tensor list's signature)."""
    blob = repr(key).encode()
    return (zlib.crc32(blob) << 30) ^ zlib.adler32(blob)


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


class WaitCheck(ArrivalCheck):
    """The arrival check of a Guard: what is compared is the collective each rank waits in."""

    def _mismatch(self, lines: list[str]) -> str:
        every = self.comm.allgather(lines)
        where = "; ".join(f"rank {r} in {w[0]!r}" for r, w in enumerate(every))
        return f"ranks are waiting in different collectives: {where}"
