"""A study and testing knob: one slow rank, set by $HPCDIST_STRAGGLER ("RANK:SECONDS").

    HPCDIST_STRAGGLER=1:0.005 mpirun -n 3 python -m hpcdist.train ...

Rank RANK of the trainer's communicator (a worker's index among the workers)
sleeps SECONDS before each training step, as a slower machine would. Unset,
the trainer holds None and its step does nothing extra. `python -m
hpcdist.study --straggler` uses it to ask which exchange copes with one slow
worker (backup workers, bounded staleness).
"""

from __future__ import annotations

import os
import time

#: The environment variable read once, when a trainer is built.
ENV = "HPCDIST_STRAGGLER"


class Straggler:
    """Sleeps `seconds` per step (the caller checks the rank)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def delay(self) -> None:
        time.sleep(self.seconds)


def parse(value: str) -> tuple[int, float]:
    """'RANK:SECONDS' -> (rank, seconds); ValueError naming the variable otherwise."""
    rank, sep, seconds = value.partition(":")
    try:
        if not sep:
            raise ValueError
        r, s = int(rank), float(seconds)
    except ValueError:
        raise ValueError(f"${ENV} must be RANK:SECONDS (e.g. 1:0.005), got {value!r}") from None
    if r < 0 or not s >= 0:
        raise ValueError(f"${ENV}: rank and seconds must be >= 0, got {value!r}")
    return r, s


def from_env(rank: int, size: int, environ=None) -> Straggler | None:
    """This rank's Straggler when $HPCDIST_STRAGGLER names it, else None."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not value:
        return None
    slow, seconds = parse(value)
    if slow >= size:
        raise ValueError(f"${ENV}={value!r} names rank {slow}, but the trainer has {size} ranks")
    return Straggler(seconds) if rank == slow and seconds > 0 else None
