"""The producer interface behind InputPipeline, and the read paths that make producers.

A `Producer` is one epoch's supply of batches: its threads (`functions`,
run by a QueueRunner) read this rank's records, `take(n)` hands the next
batch to the trainer, `close` stops it, `snapshot` says where it stands for
an exact resume. A `ReadPath` makes one producer per epoch and keeps what
outlives an epoch (memory, child processes). A faster way to read is a new
ReadPath and Producer, registered in `READ_PATHS`; the epoch loop does not
change.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class Producer(ABC):
    """One epoch's batches: n rows at a time, picked by the pick-from-oldest shuffle."""

    name: str  # names the producer's threads and its error messages

    @abstractmethod
    def functions(self) -> list[Callable[[], None]]:
        """The thread bodies, each called until it raises OutOfRangeError (for a QueueRunner)."""

    @abstractmethod
    def take(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The next batch (features, labels), fewer than n rows only at the end; None after."""

    @abstractmethod
    def close(self, cancel_pending_enqueues: bool = False) -> None:
        """The threads are done (what is read may still be taken), or, with cancel, stop all."""

    @abstractmethod
    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(global ids left in the shuffle window after the last take, oldest first; RNG words)."""


@dataclass(frozen=True)
class EpochWork:
    """What one epoch's producer is to deliver, worked out by InputPipeline.

    `starts`/`stops`: this rank's record ranges [a, b) still to read, in plan
    order; `restored`: global ids put back into the shuffle window first
    (oldest first) and `rng_words` the shuffle's RNG state, when resuming
    mid-epoch (None: the epoch starts from the path's `shuffle_rng(epoch)`);
    `budget`: rows visible or being read at most (window + batch + prefetch).
    """

    epoch: int
    rank: int
    starts: np.ndarray
    stops: np.ndarray
    restored: np.ndarray
    rng_words: np.ndarray | None
    window: int
    batch: int
    budget: int
    num_threads: int
    stall_timeout: float
    stats: object  # PipelineStats: the producer adds records_read
    coord: object  # the epoch's Coordinator


class ReadPath(ABC):
    """Makes each epoch's Producer for one pipeline; holds what outlives an epoch.

    `shuffle_rng(epoch)` is the generator of this rank's shuffle in `epoch`.
    """

    def __init__(self, source, plan, rank: int, shuffle_rng: Callable[[int], np.random.Generator]):
        self.source, self.plan, self.rank, self.shuffle_rng = source, plan, rank, shuffle_rng

    @abstractmethod
    def producer(self, work: EpochWork) -> Producer | None:
        """This epoch's producer, or None when this path cannot read the epoch's files."""

    def close(self) -> None:
        """Release what the path holds across epochs (child processes, memory)."""
        return None


#: Read paths by name: module and class, imported when first asked for.
READ_PATHS = {
    "direct": ("hpcdist.data.direct", "DirectPath"),
    "ring": ("hpcdist.data.ringread", "RingPath"),
    "processes": ("hpcdist.data.procread", "ProcessPath"),
}


def read_path(name: str, source, plan, rank: int, shuffle_rng) -> ReadPath:
    """The read path called `name` (a key of READ_PATHS) for one pipeline."""
    if name not in READ_PATHS:
        raise ValueError(f"readers must be one of {sorted(READ_PATHS)}, got {name!r}")
    module, cls = READ_PATHS[name]
    return getattr(importlib.import_module(module), cls)(source, plan, rank, shuffle_rng)
