"""Exchange: the interface the training loop uses to turn local gradients into shared ones.

It speaks of parameters and gradients, not of allreduce, so the allreduce
exchange (hpcdist.exchange.allreduce) and a parameter-server exchange can
stand behind the same loop::

    ex = AllreduceExchange(comm=worker_comm, compression=Compression.none)  # options: keywords
    grads = ex.attach(model.parameters())  # Parameters (anything with .data) or arrays;
                                # one gradient array each, same shape and dtype, views
                                # into the exchange's buffers; each Parameter's .grad is
                                # bound to its view. Backward writes gradients IN PLACE.
    for step in ...:
        ...forward, backward... # may call ex.gradient_ready(i) as each grads[i] is final
        info = ex.synchronize() # gradients now averaged over comm, in place
        if not info.skip:
            optimizer.step()
    ex.broadcast_parameters(params + optimizer_buffers, root=0)   # arrays, in place
    ex.state_dict() / ex.load_state_dict(d)   # residuals etc.: dict of numpy arrays
    ex.stats                    # cumulative calls, wire bytes, seconds (ExchangeStats)
    ex.close()                  # or `with AllreduceExchange(...) as ex:`

Non-blocking use (a loop with other work to overlap)::

    ex.start()                  # every gradient is final: start moving all of them
    while not ex.progress():    # advance without blocking; True once done
        ...other work...
    info = ex.synchronize()     # finishes what is left (nothing, once ex.done)

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
  Entries are arrays or objects with a `.data` array (hpcdist.nn.Parameter);
  for the latter attach sets `.grad` to the returned gradient array
  (`parameter_arrays` and `bind_gradients` below do both halves).
- gradient_ready(i), start() and progress() never block; synchronize()
  blocks until every gradient holds the average (or, for a parameter server,
  the update is applied) and returns SyncInfo. The defaults here do all the
  work in synchronize(): start() does nothing, progress() and done say True.
- stats.seconds, stats.wire_bytes and synchronize().skip are what a training
  loop reads; anything else an algorithm reports lives in its own subclasses
  of SyncInfo and ExchangeStats.
- No call waits forever: past the deadline it names the ranks it waited for
  and aborts the job (or raises ExchangeTimeoutError with on_timeout="raise").
- from_config(roles, config) builds the exchange for the registry
  (hpcdist.exchange.registry), where `--exchange NAME` finds it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..backend import is_cupy


@dataclass
class SyncInfo:
    """What one synchronize() did."""

    wire_bytes: int = 0  # bytes this rank put on the wire (16-bit when compressed)
    seconds: float = 0.0  # wall time inside synchronize() (and overlapped starts)
    nonfinite: bool = False  # NaN or inf in the reduced gradients
    skip: bool = False  # the step should be skipped (non-finite and skip_nonfinite)


@dataclass
class ExchangeStats:
    """Cumulative figures over the life of an exchange."""

    calls: int = 0
    wire_bytes: int = 0
    payload_bytes: int = 0  # the gradients' own bytes (what an uncompressed exchange sends)
    seconds: float = 0.0
    skipped: int = 0


UPDATES = ("gradients", "parameters", "sharded")


def parameter_arrays(params) -> tuple[list, list]:
    """(arrays, owners): each entry's `.data` where it has one (a Parameter), else the entry.

    owners[i] is the Parameter whose `.grad` should be bound, or None for a bare array.
    """
    arrays, owners = [], []
    for i, p in enumerate(params):
        if isinstance(p, np.ndarray) or is_cupy(p):
            arrays.append(p)
            owners.append(None)
        elif isinstance(getattr(p, "data", None), np.ndarray) or is_cupy(getattr(p, "data", None)):
            arrays.append(p.data)
            owners.append(p)
        else:
            raise TypeError(
                f"attach: entry {i} must be a numpy/cupy array or have one as .data "
                f"(an hpcdist.nn.Parameter), got {type(p).__name__}"
            )
    return arrays, owners


def bind_gradients(owners: list, grads: list) -> None:
    """Set owner.grad = grad for every Parameter owner (bare arrays have none)."""
    for p, g in zip(owners, grads, strict=True):
        if p is not None:
            p.grad = g


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
        """Register parameters (arrays or Parameters); return their gradient arrays."""

    def gradient_ready(self, i: int) -> None:
        """Backward is done with gradient i; an exchange may start moving it."""
        return None

    def start(self) -> None:
        """Every gradient is final: start exchanging all of them (never blocks)."""
        return None

    def progress(self) -> bool:
        """Advance the exchange in flight without blocking; True once it is done."""
        return self.done

    @property
    def done(self) -> bool:
        """True when no exchange is in flight (synchronize() would finish at once)."""
        return True

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
