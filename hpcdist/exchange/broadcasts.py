"""Broadcast: root's arrays on every rank, fused per dtype, after a check of the lists."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .. import runtime
from ..backend import get_array_module, is_cupy, require_cupy
from ..errors import CollectiveTimeoutError
from ..guard import Guard, check_timeout
from .percomm import PerComm
from .safety import ArrivalCheck, describe


class Broadcaster:
    """In-place broadcasts over `comm`: a list check, then one Ibcast per dtype, guarded.

    Every rank must pass the same list (shapes, dtypes, order); a mismatch
    raises ExchangeError on every rank. A rank that never comes is named
    within `timeout` seconds; then the job aborts (on_timeout="raise":
    CollectiveTimeoutError).
    """

    def __init__(self, comm: MPI.Comm, *, timeout: float | None = None, on_timeout: str = "abort"):
        self.guard = Guard(comm, timeout, name="broadcast", on_timeout=on_timeout)
        self.check = ArrivalCheck(comm)
        self.timeout = self.guard.timeout  # for calls that name none
        self.calls = 0

    def into(self, arrays: list, root: int = 0, timeout: float | None = None) -> None:
        """Overwrite `arrays` in place with root's (parameters, optimizer buffers, any dtype)."""
        arrays = list(arrays)
        size = self.guard.size
        if not 0 <= root < size:
            raise ValueError(f"root must be a rank of comm (0..{size - 1}), got {root!r}")
        self.guard.timeout = self.timeout if timeout is None else check_timeout(timeout)
        self.calls += 1
        try:
            lines = describe(arrays, "broadcast", str(root))
            self.check.check(self.calls, lines, self.guard.timeout)
        except CollectiveTimeoutError as exc:
            text = f"broadcast from rank {root}: {exc}"
            if self.guard.on_timeout == "abort":
                runtime.abort(f"CollectiveTimeoutError: {text}", exitcode=1, grace_s=1.0)
            raise CollectiveTimeoutError(text) from None
        for dtype in sorted({np.dtype(a.dtype).str for a in arrays}):
            self._one_dtype([a for a in arrays if np.dtype(a.dtype).str == dtype], root)

    def _one_dtype(self, group: list, root: int) -> None:
        flat = np.concatenate([_host(a).ravel() for a in group])
        comm = self.guard.comm
        self.guard.wait([comm.Ibcast(flat, root=root)], f"the broadcast from rank {root}")
        pos = 0
        for a in group:
            part = flat[pos : pos + a.size].reshape(a.shape)
            a[...] = require_cupy().asarray(part) if is_cupy(a) else part
            pos += a.size

    def free(self) -> None:
        """Free the communicators (collective)."""
        self.check.free()
        self.guard.free()


_broadcasters = PerComm(Broadcaster)


def broadcast_into(arrays: list, root: int = 0, comm: MPI.Comm | None = None, timeout=None):
    """Broadcast `arrays` in place over comm (None: the world) with that comm's Broadcaster."""
    _broadcasters.get(comm or runtime.world_comm()).into(arrays, root, timeout)


def broadcast(x, root: int = 0, comm: MPI.Comm | None = None, timeout: float | None = None):
    """Root's x on every rank, as a new array (x's shape and dtype must agree)."""
    out = get_array_module(x).array(x, copy=True)
    broadcast_into([out], root, comm, timeout)
    return out


def broadcast_parameters(
    arrays: list, root: int = 0, comm: MPI.Comm | None = None, timeout: float | None = None
) -> None:
    """Overwrite parameters and optimizer buffers in place with root's (no optimizer step)."""
    broadcast_into(arrays, root, comm, timeout)


def _host(a):
    """A host copy (staged: device pointers go only to a CUDA-aware MPI, not needed here)."""
    return a.get() if is_cupy(a) else np.asarray(a)
