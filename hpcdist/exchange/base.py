"""Exchange: the interface the training loop uses to turn local gradients into shared ones.

It speaks of parameters and gradients, not of allreduce, so the allreduce
exchange (hpcdist.exchange.allreduce) and a parameter-server exchange can
stand behind the same loop::

    ex = AllreduceExchange(comm=worker_comm, compression=Compression.none,
                           bucket_bytes=None, error_feedback=False, check_every=10,
                           timeout=None, skip_nonfinite=False)
    grads = ex.attach(params)   # one gradient array per parameter, same shape and
                                # dtype; views into the exchange's buffers. Backward
                                # writes gradients IN PLACE into them.
    for step in ...:
        ...backward...          # may call ex.gradient_ready(i) as each grads[i] is final
        info = ex.synchronize() # gradients now averaged over comm, in place
        if not info.skip:
            optimizer.step()
    ex.broadcast_parameters(params + optimizer_buffers, root=0)   # in place
    ex.state_dict() / ex.load_state_dict(d)   # residuals etc.: dict of numpy arrays
    ex.stats                    # cumulative wire bytes, seconds, calls
    ex.close()                  # or `with AllreduceExchange(...) as ex:`

Who applies the update is part of the contract (`Exchange.updates`):

- "gradients": synchronize() leaves the averaged gradients in the attached
  gradient arrays and the caller's optimizer steps (allreduce).
- "parameters": the exchange applies the update itself (a parameter server)
  and synchronize() leaves fresh parameter values in the attached parameter
  arrays; the caller's optimizer does not step.
- "sharded": this rank owns a slice of the model (model parallelism); the
  caller's optimizer steps the slice it holds, and `shards()` tells a
  checkpoint which part of each full array this rank holds.

Contract for implementers:
- attach(params) is collective over comm; every rank passes the same list
  (shapes, dtypes, order); a mismatch raises ExchangeError naming the ranks.
- gradient_ready(i) never blocks and may start work; synchronize() blocks
  until every gradient holds the average (or, for a parameter server, the
  update to apply) and returns SyncInfo.
- No call waits forever: past the deadline it names the ranks it waited for
  and aborts the job (or raises ExchangeTimeoutError with on_timeout="raise").
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass
class SyncInfo:
    """What one synchronize() did."""

    wire_bytes: int = 0  # bytes this rank put on the wire (16-bit when compressed)
    seconds: float = 0.0  # wall time inside synchronize() (and overlapped starts)
    nonfinite: bool = False  # NaN or inf in the reduced gradients
    skip: bool = False  # the step should be skipped (non-finite and skip_nonfinite)
    buckets: int = 0


@dataclass
class ExchangeStats:
    """Cumulative figures over the life of an exchange."""

    calls: int = 0
    wire_bytes: int = 0
    payload_bytes: int = 0  # the gradients' own bytes (what an uncompressed exchange sends)
    seconds: float = 0.0
    skipped: int = 0
    history: list = field(default_factory=list)  # autotune trials: (bucket_bytes, seconds)


UPDATES = ("gradients", "parameters", "sharded")


class Exchange(abc.ABC):
    """Turns each rank's gradients into the gradients every rank applies."""

    #: Who applies the update (see the module docstring): one of UPDATES.
    updates: str = "gradients"

    @classmethod
    def from_config(cls, roles, config) -> Exchange:
        """Build this exchange for `roles` (an hpcdist.Cluster) from a TrainConfig's settings."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config")

    @abc.abstractmethod
    def attach(self, params: list) -> list:
        """Register parameters; return their gradient arrays (for backward to fill in place)."""

    def gradient_ready(self, i: int) -> None:
        """Backward is done with gradient i; an exchange may start moving it."""
        return None

    @abc.abstractmethod
    def synchronize(self) -> SyncInfo:
        """Block until every attached gradient is exchanged; return what happened."""

    @abc.abstractmethod
    def broadcast_parameters(self, arrays: list, root: int = 0) -> None:
        """Overwrite `arrays` (parameters, optimizer buffers) in place with root's."""

    def state_dict(self) -> dict:
        """Exchange state worth checkpointing, as numpy arrays."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned."""
        return None

    @property
    @abc.abstractmethod
    def stats(self) -> ExchangeStats:
        """Cumulative wire bytes and seconds."""

    def close(self) -> None:
        """Free communication resources (shared windows, communicators)."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
