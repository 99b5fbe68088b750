"""GPU gradients: device slabs, 16-bit casts on the GPU, staging through pinned host memory."""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from ..backend import require_cupy
from ..compression import Compressor
from .buckets import BucketLayout
from .mpi import MpiSum
from .safety import is_finite_sum
from .shm import FINAL, ShmReducer

#: Force (1) or forbid (0) handing device pointers to MPI; unset: ask the library.
CUDA_AWARE_ENV = "HPCDIST_CUDA_AWARE_MPI"


def cuda_aware_mpi() -> bool:
    """True only when the setting forces it or the MPI library says it is CUDA-aware."""
    env = os.environ.get(CUDA_AWARE_ENV, "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # MPIX call present but unsupported by this library
        return False


class DeviceStaging:
    """Device gradient slabs; each bucket goes through this rank's shared region.

    Without a CUDA-aware MPI no device pointer ever reaches MPI: the bucket
    (cast to 16 bits on the GPU first when compressing) is copied into the
    shared region, which is page-locked with cudaHostRegister where allowed,
    reduced on the host, and copied back.
    """

    def __init__(self, layout: BucketLayout, reducer: ShmReducer, comp: Compressor):
        self.xp = cp = require_cupy()
        self.layout, self.reducer, self.comp = layout, reducer, comp
        self.slabs = [cp.zeros(s.size, dtype=s.dtype) for s in layout.slabs]
        self.cuda_aware = cuda_aware_mpi()
        self.me = reducer.group.node.rank
        region = reducer.shared.regions[self.me]
        self.pinned = None
        try:
            cp.cuda.runtime.hostRegister(region.ctypes.data, region.nbytes, 0)
            self.pinned = region.ctypes.data
        except Exception:  # not page-aligned or not permitted: pageable copies still work
            pass

    def view(self, i: int):
        s, start = self.layout.where[i]
        return self.slabs[s][start : start + self.layout.sizes[i]].reshape(self.layout.shapes[i])

    def run(self, b, call: int, kind: str, inv: float, comm: MPI.Comm, residual, turns):
        """Generator: exchange bucket b; returns True when the result is not finite."""
        dev = self.slabs[b.slab][b.start : b.stop]
        if kind == "mpi" and self.cuda_aware:
            yield from turns.run(b.index, MpiSum(comm, dev, self.comp, residual), ("mpi", b, []))
        elif kind == "mpi":
            host = self.reducer.grads(self.me, b.slab)[b.start : b.stop]
            dev.get(out=host)
            res = residual.get() if residual is not None else None
            yield from turns.run(b.index, MpiSum(comm, host, self.comp, res), ("mpi", b, []))
            if res is not None:
                residual.set(res)
            dev.set(host)
        elif kind == "shm":
            yield from self._through_window(b, call, inv, dev, residual)
            return False  # the window's flags carry non-finite results
        if inv != 1.0:
            dev *= dev.dtype.type(inv)
        return not is_finite_sum(dev)

    def _through_window(self, b, call: int, inv: float, dev, residual):
        host = self.reducer.grads(self.me, b.slab)[b.start : b.stop]
        if self.comp.wire_itemsize and dev.dtype.kind == "f":
            if self.me == 0:  # wire area 0 holds the last result until everyone has read it
                yield from self.reducer.wait_flags(b, FINAL, call - 1)
            if residual is not None:
                dev += residual
            scale = self.comp.scale_for(dev)
            wire = self.comp.encode(
                dev, scale
            )  # cast on the GPU, then 2 bytes per element over PCIe
            if residual is not None:
                residual[...] = dev - self.comp.decode(wire, dev.dtype, scale)
            hw = self.reducer.wire(self.me, b.slab)[b.start : b.stop]
            wire.view(self.xp.uint16).get(out=hw.view(np.uint16))
            self.reducer.scales[b.index, 0, self.me] = scale
            yield from self.reducer.reduce(b, call, inv, contributed=True)
        else:
            dev.get(out=host)
            yield from self.reducer.reduce(b, call, inv)
        dev.set(host)

    def free(self) -> None:
        if self.pinned is not None:
            self.xp.cuda.runtime.hostUnregister(self.pinned)
            self.pinned = None
