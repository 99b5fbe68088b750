"""The flat API: allreduce, grouped_allreduce (blocking and async), broadcast."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mpi4py import MPI

from .. import runtime
from ..backend import get_array_module, is_cupy, require_cupy
from ..compression import Compression
from ..errors import CollectiveTimeoutError
from .allreduce import AllreduceExchange
from .gpu import cuda_aware_mpi
from .safety import ArrivalCheck, Deadline, default_timeout, describe, signature, wait_requests

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
            self.comm, comp, op=op, check_every=0, timeout=timeout, skip_nonfinite=True
        )
        ex.check_at_attach = False  # the pool checks every call's list itself
        ex.attach(arrays)  # reads shapes, dtypes and the array module only
        return ex

    def release(self, key, ex: AllreduceExchange) -> None:
        self.free.setdefault(key, []).append(ex)
        self.free.move_to_end(key)
        while sum(len(v) for v in self.free.values()) > POOL_SIZE:
            _, old = self.free.popitem(last=False)
            for e in old:
                e.close()


_pools: list = []
_KEYVAL = MPI.Comm.Create_keyval()  # the pool hangs off its communicator as an MPI attribute


def _pool(comm: MPI.Comm | None) -> _Pool:
    """The pool of `comm`, found by attribute: a freed handle that is reused gets a new one."""
    comm = comm or runtime.world_comm()
    pool = comm.Get_attr(_KEYVAL)
    if pool is None:
        pool = _Pool(comm)
        comm.Set_attr(_KEYVAL, pool)
        _pools.append(pool)
    return pool


def clear_pools() -> None:
    """Free the shared windows the flat calls keep (collective over each communicator used)."""
    for pool in _pools:
        for exchanges in pool.free.values():
            for ex in exchanges:
                ex.close()
        pool.free.clear()


class Handle:
    """A reduction in flight; wait() returns the reduced arrays."""

    def __init__(self, pool, key, ex, arrays, single: bool):
        self._pool, self._key, self._ex, self._single = pool, key, ex, single
        self._inputs = arrays
        self._result = None

    def done(self) -> bool:
        """Advance the reduction without blocking; True once wait() would not block."""
        if self._result is None and self._ex is not None:
            self._ex._run.progress()
            return self._ex._run.done
        return True

    def wait(self):
        """Block until reduced; a list of new arrays (one array for allreduce_async)."""
        if self._result is None:
            ex = self._ex
            ex.synchronize()  # NaN/inf propagate to the results, as with MPI_Allreduce
            xp = get_array_module(self._inputs[0]) if self._inputs else np
            self._result = [xp.array(g, copy=True) for g in ex.grads]
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


def grouped_allreduce_async(
    arrays: list,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> Handle:
    """Start reducing a list of arrays (a copy is taken now); Handle.wait() gives the results."""
    arrays = _validate(list(arrays), op)
    comp = Compression.get(compression)
    pool = _pool(comm)
    timeout = default_timeout() if timeout is None else timeout
    pool.calls += 1
    sig = signature(arrays, op, comp.name)
    try:
        pool.check.check(pool.calls, lambda: describe(arrays, op, comp.name), timeout, key=sig)
    except CollectiveTimeoutError as exc:
        runtime.abort(f"{type(exc).__name__}: {exc}", grace_s=1.0)
    key = (sig, bool(arrays) and is_cupy(arrays[0]))
    ex = pool.acquire(key, arrays, op, comp, timeout)
    ex.timeout = timeout
    for g, a in zip(ex.grads, arrays, strict=True):
        g[...] = a
    ex._begin_call()
    ex._run.start_all()
    return Handle(pool, key, ex, arrays, single=False)


def grouped_allreduce(
    arrays: list,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> list:
    """Sum or average each array over comm; new arrays, same shapes and dtypes."""
    return grouped_allreduce_async(arrays, op, compression, comm, timeout).wait()


def allreduce_async(
    x,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
) -> Handle:
    """Start reducing one array; Handle.wait() returns the new array."""
    h = grouped_allreduce_async([x], op, compression, comm, timeout)
    h._single = True
    return h


def allreduce(
    x,
    op: str = "average",
    compression=Compression.none,
    comm: MPI.Comm | None = None,
    timeout: float | None = None,
):
    """Sum or average x over comm; a new array of x's shape and dtype."""
    return allreduce_async(x, op, compression, comm, timeout).wait()


def broadcast(x, root: int = 0, comm: MPI.Comm | None = None, timeout: float | None = None):
    """Root's x on every rank, as a new array (x's shape and dtype must agree)."""
    xp = get_array_module(x)
    out = xp.array(x, copy=True)
    broadcast_into([out], root, comm or runtime.world_comm(), timeout)
    return out


def broadcast_parameters(
    arrays: list, root: int = 0, comm: MPI.Comm | None = None, timeout: float | None = None
) -> None:
    """Overwrite parameters and optimizer buffers in place with root's (no optimizer step)."""
    broadcast_into(list(arrays), root, comm or runtime.world_comm(), timeout)


def broadcast_into(arrays: list, root: int, comm: MPI.Comm, timeout: float | None) -> None:
    """Broadcast `arrays` in place, fused per dtype, after checking every rank has the same list."""
    timeout = default_timeout() if timeout is None else timeout
    if not 0 <= root < comm.size:
        raise ValueError(f"root must be a rank of comm (0..{comm.size - 1}), got {root}")
    pool = _pool(comm)
    pool.calls += 1
    deadline = Deadline(timeout)
    try:
        pool.check.check(pool.calls, describe(arrays, "broadcast", str(root)), timeout)
        for dtype in sorted({np.dtype(a.dtype).str for a in arrays}):
            group = [a for a in arrays if np.dtype(a.dtype).str == dtype]
            flat = np.concatenate([_host(a).ravel() for a in group]) if group else None
            wait_requests([comm.Ibcast(flat, root=root)], deadline, f"broadcast from rank {root}")
            pos = 0
            for a in group:
                part = flat[pos : pos + a.size].reshape(a.shape)
                a[...] = require_cupy().asarray(part) if is_cupy(a) else part
                pos += a.size
    except CollectiveTimeoutError as exc:
        runtime.abort(f"{type(exc).__name__}: {exc}", grace_s=1.0)


def _host(a):
    """A host copy (staged; device pointers only go to a CUDA-aware MPI, not needed here)."""
    return a.get() if is_cupy(a) else np.asarray(a)


__all__ = [
    "allreduce",
    "allreduce_async",
    "grouped_allreduce",
    "grouped_allreduce_async",
    "broadcast",
    "broadcast_parameters",
    "Handle",
    "cuda_aware_mpi",
]
