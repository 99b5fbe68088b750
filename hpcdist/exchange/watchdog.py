"""An exchange's watchdog: the list check every few calls, and what a missed deadline says."""

from __future__ import annotations

from mpi4py import MPI

from .. import runtime
from ..errors import CollectiveTimeoutError, ExchangeError, ExchangeTimeoutError
from .safety import ArrivalCheck, describe, fingerprint


class Watchdog:
    """Checks that every rank submits the same list, and turns a timeout into a diagnosis.

    `lines` describe the list (safety.describe); they are digested once, so a
    check sends one number. on_timeout="abort" aborts the job through
    hpcdist.runtime.abort; "raise" raises ExchangeTimeoutError.
    """

    def __init__(self, comm: MPI.Comm, timeout: float, on_timeout: str = "abort"):
        if on_timeout not in ("abort", "raise"):
            raise ValueError(f"on_timeout must be 'abort' or 'raise', got {on_timeout!r}")
        self.arrival = ArrivalCheck(comm)
        self.size = comm.size
        self.timeout, self.on_timeout = timeout, on_timeout
        self.lines: list[str] = []
        self.key = 0

    def watch(self, arrays, op: str, compression: str) -> None:
        """The list every later check compares."""
        self.lines = describe(arrays, op, compression)
        self.key = fingerprint(self.lines)

    def check(self, call: int) -> None:
        """Every rank is at `call` with the same list, or ExchangeError / the timeout path."""
        try:
            self.arrival.check(call, self.lines, self.timeout, key=self.key)
        except CollectiveTimeoutError as exc:
            self.fail(
                ExchangeTimeoutError(
                    f"exchange call {call} timed out after {self.timeout:g} s: {exc}"
                )
            )

    def expired(self, call: int, waits: list[str]) -> None:
        """Call `call` passed its deadline waiting for `waits`: find and name who is missing."""
        more = f" (+{len(waits) - 3} more)" if len(waits) > 3 else ""
        text = (
            f"exchange call {call} timed out after {self.timeout:g} s; waiting for "
            + "; ".join(waits[:3])
            + more
        )
        # The ranks that timed out meet in an arrival check; absentees are named.
        try:
            quick = min(self.timeout, max(2.0, self.timeout / 5))
            self.arrival.check(call, self.lines, quick, self.key)
            text += "; every rank reached the diagnosis, so the stall is inside MPI"
        except (CollectiveTimeoutError, ExchangeError) as diag:
            text += f". Diagnosis: {diag}"
        self.fail(ExchangeTimeoutError(text))

    def fail(self, exc: Exception) -> None:
        """Abort the job with `exc`'s text, or raise it (on_timeout="raise")."""
        if self.on_timeout == "abort":
            runtime.abort(f"{type(exc).__name__}: {exc}", exitcode=1, grace_s=1.0)
        raise exc

    def free(self) -> None:
        self.arrival.free()
