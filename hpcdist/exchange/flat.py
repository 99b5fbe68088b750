"""The flat API: allreduce and grouped_allreduce, blocking and async (copy in, copy out)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mpi4py import MPI

from .. import runtime
from ..backend import get_array_module, is_cupy
from ..compression import Compression
from ..errors import CollectiveTimeoutError
from .allreduce import AllreduceExchange
from .dlpack import convert
from .percomm import PerComm
from .safety import ArrivalCheck, default_timeout, describe, signature

#: Exchanges kept per communicator for the flat calls (one per list layout seen lately).
POOL_SIZE = 8


class _Pool:
    """Exchanges for one communicator, keyed by (layout, op, compression); LRU-evicted."""

    def __init__(self, comm: MPI.Comm):
        self.comm = comm.Dup()  # outlives the caller's handle
        self.check = ArrivalCheck(comm)
        self.calls = 0
        self.free: OrderedDict = OrderedDict()

    def acquire(self, key, arrays, op, comp, timeout) -> AllreduceExchange:
        spares = self.free.get(key)
        if spares:
            self.free.move_to_end(key)
            return spares.pop()
        ex = AllreduceExchange(
            self.comm,
            compression=comp,
            op=op,
            check_every=0,
            check_at_attach=False,  # the pool checks every call's list itself
            timeout=timeout,
            skip_nonfinite=True,  # NaN/inf propagate to the results, as with MPI_Allreduce
        )
        ex.attach(arrays)  # reads shapes, dtypes and the array module only
        return ex

    def release(self, key, ex: AllreduceExchange) -> None:
        self.free.setdefault(key, []).append(ex)
        self.free.move_to_end(key)
        while sum(len(v) for v in self.free.values()) > POOL_SIZE:
            _, old = self.free.popitem(last=False)
            for e in old:
                e.close()

    def close(self) -> None:
        for exchanges in self.free.values():
            for ex in exchanges:
                ex.close()
        self.free.clear()


_pools = PerComm(_Pool)


def clear_pools() -> None:
    """Free the shared windows the flat calls keep (collective over each communicator used)."""
    for pool in _pools.made:
        pool.close()


class Handle:
    """A reduction in flight; wait() returns the reduced arrays."""

    def __init__(self, pool: _Pool, key, ex: AllreduceExchange, arrays, single: bool, back=None):
        self._pool, self._key, self._ex, self._single = pool, key, ex, single
        self._inputs, self._back = arrays, back
        self._result = None

    def done(self) -> bool:
        """Advance the reduction without blocking; True once wait() would not block."""
        if self._result is None and self._ex is not None:
            return self._ex.progress()
        return True

    def wait(self):
        """Block until reduced; a list of new arrays (one array for allreduce_async)."""
        if self._result is None:
            ex = self._ex
            ex.synchronize()
            xp = get_array_module(self._inputs[0]) if self._inputs else np
            self._result = [xp.array(g, copy=True) for g in ex.grads]
            if self._back is not None:  # DLPack producers get their own type back
                self._result = self._back(self._result)
            self._pool.release(self._key, ex)
            self._ex = None
        return self._result[0] if self._single else self._result


def _validate(arrays, op: str):
    if op not in ("sum", "average"):
        raise ValueError(f"op must be 'sum' or 'average', got {op!r}")
    kinds = "f" if op == "average" else "fiu"
    if all(type(a) is np.ndarray and a.dtype.kind in kinds for a in arrays):
        return arrays  # the common case, checked cheaply
    out = []
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) or is_cupy(a)):
            a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"array {i}: expected a float or integer array, got dtype {a.dtype}")
        if op == "average" and a.dtype.kind != "f":
            raise TypeError(f"array {i}: op='average' needs a floating dtype, got {a.dtype}")
        out.append(a)
    if len({is_cupy(a) for a in out}) > 1:
        raise TypeError("arrays must be all numpy or all cupy, not a mix")
    return out


def _start(arrays, op, compression, comm, timeout, single: bool) -> Handle:
    """Check the list on every rank, copy it into a pooled exchange and start every bucket."""
    arrays, back = convert(list(arrays))
    arrays = _validate(arrays, op)
    comp = Compression.get(compression)
    pool = _pools.get(comm or runtime.world_comm())
    timeout = default_timeout() if timeout is None else timeout
    pool.calls += 1
    sig = signature(arrays, op, comp.name)
    try:
        pool.check.check(pool.calls, lambda: describe(arrays, op, comp.name), timeout, key=sig)
    except CollectiveTimeoutError as exc:
        runtime.abort(f"{type(exc).__name__}: grouped_allreduce: {exc}", grace_s=1.0)
    key = (sig, bool(arrays) and is_cupy(arrays[0]))
    ex = pool.acquire(key, arrays, op, comp, timeout)
    ex.timeout = timeout
    for g, a in zip(ex.grads, arrays, strict=True):
        g[...] = a
    ex.start()
    return Handle(pool, key, ex, arrays, single, back)


def grouped_allreduce_async(
    arrays: list,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> Handle:
    """Start reducing a list of arrays (a copy is taken now); Handle.wait() gives the results."""
    return _start(arrays, op, compression, comm, timeout, single=False)


def grouped_allreduce(
    arrays: list,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> list:
    """Sum or average each array over comm; new arrays, same shapes and dtypes."""
    return _start(arrays, op, compression, comm, timeout, single=False).wait()


def allreduce_async(
    x,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> Handle:
    """Start reducing one array; Handle.wait() returns the new array."""
    return _start([x], op, compression, comm, timeout, single=True)


def allreduce(
    x,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
):
    """Sum or average x over comm; a new array of x's shape and dtype."""
    return _start([x], op, compression, comm, timeout, single=True).wait()


__all__ = [
    "allreduce",
    "allreduce_async",
    "grouped_allreduce",
    "grouped_allreduce_async",
    "Handle",
]
