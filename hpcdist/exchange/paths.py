"""The way each bucket of an allreduce exchange goes: kept local, the library's, or the window."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..backend import get_array_module
from ..compression import Compression, Compressor
from .buckets import Bucket, BucketLayout
from .gpu import DeviceStaging
from .mpi import MpiSum, Turns
from .nodes import NodeGroup
from .safety import is_finite_sum
from .shm import ShmReducer


def _width(comp: Compressor, dtype: np.dtype) -> int:
    """Bytes an element of `dtype` takes on the wire under `comp`."""
    return comp.wire_itemsize if comp.wire_itemsize and dtype.kind == "f" else dtype.itemsize


class BucketPaths:
    """The gradient memory of one exchange and the path each bucket takes through it.

    "local" (one rank: nothing to send), "mpi" (buckets under `small_bytes`,
    or any bucket when device pointers may reach MPI: the library's
    Iallreduce; every bucket when `flat`) or "shm" (the node's shared window,
    then between nodes).
    Gradients live in this rank's window region (numpy) or in device slabs
    staged through it (cupy, `gpu=True`). A 16-bit `comp` applies between
    nodes only, unless `compress_within_node` (or `gpu`: casts on the device
    are cheap, and the staging copies shrink): on one node, where it would
    only add casts, buckets then travel at full width.
    """

    def __init__(
        self,
        comm: MPI.Comm,
        group: NodeGroup,
        layout: BucketLayout,
        comp: Compressor,
        slots: int,
        *,
        small_bytes: int,
        error_feedback: bool,
        gpu: bool,
        compress_within_node: bool = False,
        flat: bool = False,
    ):
        self.comm, self.group, self.layout, self.comp = comm, group, layout, comp
        self.small_bytes = small_bytes
        self.flat = flat  # every bucket through the library (topology "flat")
        within = compress_within_node or gpu
        # the library path spans every rank: 16 bits there when any of it is between nodes
        self.mpi_comp = comp if within or group.num_nodes > 1 else Compression.none
        self.reducer = ShmReducer(group, layout, comp, slots, within_node=within)
        self.staging = DeviceStaging(layout, self.reducer, comp) if gpu else None
        self.region = self.reducer.shared.regions[group.node.rank]
        self.region[...] = 0  # padding between tensors must hold zeros: it is summed too
        self.residuals: list = []
        if error_feedback and comp.wire_itemsize:
            xp = self.staging.xp if gpu else np
            self.residuals = [xp.zeros(s.size, dtype=s.dtype) for s in layout.slabs]
        self.turns = Turns()  # posting order of the "mpi" buckets on comm
        self.gather_comm = comm.Dup() if self.mpi_comp.wire_itemsize else None  # their gathers

    def views(self) -> list:
        """Each parameter's gradient: a view into the region, or into a device slab."""
        n = len(self.layout.shapes)
        if self.staging is not None:
            return [self.staging.view(i) for i in range(n)]
        return [self.layout.view(self.region, i) for i in range(n)]

    def kind(self, b: Bucket) -> str:
        if self.comm.size == 1:
            return "local"
        nbytes = b.size * self.layout.slabs[b.slab].dtype.itemsize
        cuda_aware = self.staging is not None and self.staging.cuda_aware
        return "mpi" if nbytes < self.small_bytes or cuda_aware or self.flat else "shm"

    def new_call(self) -> None:
        """A call begins: every rank will post its buckets' collectives in bucket order."""
        kinds = [(b.index, self.kind(b)) for b in self.layout.buckets]
        self.reducer.new_call([i for i, k in kinds if k == "shm"])
        self.turns.reset([i for i, k in kinds if k == "mpi"])

    def work(self, b: Bucket, call: int, inv: float):
        """The generator that exchanges bucket b in call `call`; returns True when not finite."""
        kind = self.kind(b)
        residual = self.residuals[b.slab][b.start : b.stop] if self.residuals else None
        if self.staging is not None:
            return self.staging.run(b, call, kind, inv, self.comm, residual, self.turns)
        if kind == "shm":
            res = self.residuals[b.slab] if self.residuals else None
            return self.reducer.reduce(b, call, inv, res)
        return self._library(b, kind, inv, residual)

    def _library(self, b: Bucket, kind: str, inv: float, residual):
        buf = self.reducer.grads(self.group.node.rank, b.slab)[b.start : b.stop]
        if kind == "mpi":
            op = MpiSum(self.comm, buf, self.mpi_comp, residual, self.gather_comm)
            yield from self.turns.run(b.index, op, ("mpi", b, []))
        if inv != 1.0:
            buf *= buf.dtype.type(inv)
        return not is_finite_sum(buf)

    def nonfinite(self, call: int) -> bool:
        """Some rank's slice of call `call`'s window result held NaN or inf."""
        return any(self.reducer.nonfinite(b, call) for b in self.layout.buckets)

    def drop_nonfinite_residuals(self) -> None:
        """Zero the residuals a NaN or inf got into, so one bad step does not poison the next."""
        for r in self.residuals:
            r[~get_array_module(r).isfinite(r)] = 0

    def wire_bytes(self) -> int:
        """Bytes this rank sends per call (NodeGroup.wire_bytes, bucket by bucket)."""
        total = 0.0
        for b in self.layout.buckets:
            dt = self.layout.slabs[b.slab].dtype
            lo, hi = self.reducer.my_slice(b)
            if self.kind(b) == "shm":
                width = _width(self.reducer.node_comp, dt)
                total += self.group.wire_bytes(b.size, width, True, _width(self.comp, dt), hi - lo)
            else:
                total += self.group.wire_bytes(b.size, _width(self.mpi_comp, dt), False)
        return round(total)

    def describe(self, wait) -> str:
        """What a bucket's wait (as its generator yielded it) is waiting for."""
        if wait[0] == "mpi":
            return f"bucket {wait[1].index}: the library allreduce over all {self.comm.size} ranks"
        return self.reducer.describe(wait)

    def free(self) -> None:
        if self.staging is not None:
            self.staging.free()
            self.staging = None
        self.reducer.free()
        if self.gather_comm is not None:
            self.gather_comm.Free()
            self.gather_comm = None
