"""Deadlines: the one timeout setting, a back-off poll, and a wait on MPI requests."""

from __future__ import annotations

import math
import os
import time

from mpi4py import MPI

from .errors import CollectiveTimeoutError

#: Seconds any blocking collective may wait for the other ranks.
TIMEOUT_ENV = "HPCDIST_TIMEOUT"
#: The exchange's older name for the same setting, still honoured.
EXCHANGE_TIMEOUT_ENV = "HPCDIST_EXCHANGE_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


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

    def poll_pause(self) -> None:
        """Give the CPU to any other runnable process, then come straight back (for waits on
        MPI operations that move only while this rank polls them)."""
        os.sched_yield()

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
